//! The OAuth `state` parameter: which of our users an authorization is for.
//!
//! The vendor hands `state` back unchanged to the callback, which stores the connection under
//! the user it names, so it must be unforgeable: `base64url(json) + "." + hex(HMAC-SHA256(
//! OAUTH_STATE_SECRET, base64 part))`, with the JSON `{"u": user, "v": vendor slug, "exp": unix
//! seconds, "n": random}`. It expires after [`VALIDITY`] (an authorize link left in a mail is
//! useless later), names its vendor (a state issued for Oura is refused on WHOOP's callback), and
//! the signature is compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::event::Vendor;
use crate::secret::Secret;

/// The secret that signs states (or `OAUTH_STATE_SECRET_FILE`).
pub const STATE_SECRET: &str = "OAUTH_STATE_SECRET";
/// How long a state (an authorize URL) stays usable.
pub const VALIDITY: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state is malformed")]
    Malformed,
    #[error("state signature does not match")]
    BadSignature,
    #[error("state has expired")]
    Expired,
    #[error("state was issued for another vendor")]
    WrongVendor,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    u: String,
    v: String,
    exp: i64,
    n: String,
}

/// A verified state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedState {
    pub user_id: String,
    pub vendor: Vendor,
    pub expires_at: i64,
    /// The state's random nonce: the callback records it, so a state works once.
    pub nonce: String,
}

fn mac(secret: &Secret, signed: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed);
    mac.finalize().into_bytes().into()
}

/// A state for `user_id` authorizing `vendor`, valid [`VALIDITY`] from `now` (unix seconds).
pub fn sign(secret: &Secret, user_id: &str, vendor: Vendor, now: i64) -> String {
    let claims = Claims {
        u: user_id.to_owned(),
        v: vendor.slug().to_owned(),
        exp: now + VALIDITY.num_seconds(),
        n: uuid::Uuid::new_v4().simple().to_string(),
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let signature = hex::encode(mac(secret, payload.as_bytes()));
    format!("{payload}.{signature}")
}

/// Checks a state returned to `vendor`'s callback at `now` (unix seconds). The signature is
/// checked before anything in the payload is believed.
pub fn verify(secret: &Secret, state: &str, vendor: Vendor, now: i64) -> Result<VerifiedState, StateError> {
    let (payload, signature) = state.split_once('.').ok_or(StateError::Malformed)?;
    let signature = hex::decode(signature).map_err(|_| StateError::Malformed)?;
    if signature.len() != 32 {
        return Err(StateError::Malformed);
    }
    if !bool::from(mac(secret, payload.as_bytes()).ct_eq(&signature[..])) {
        return Err(StateError::BadSignature);
    }
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| StateError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| StateError::Malformed)?;
    if now >= claims.exp {
        return Err(StateError::Expired);
    }
    let state_vendor = Vendor::from_slug(&claims.v).ok_or(StateError::Malformed)?;
    if state_vendor != vendor {
        return Err(StateError::WrongVendor);
    }
    Ok(VerifiedState { user_id: claims.u, vendor: state_vendor, expires_at: claims.exp, nonce: claims.n })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("state-secret-for-tests")
    }

    #[test]
    fn a_signed_state_verifies_until_it_expires() {
        let state = sign(&secret(), "user-1", Vendor::Oura, NOW);
        let verified = verify(&secret(), &state, Vendor::Oura, NOW + 60).unwrap();
        assert_eq!(verified.nonce.len(), 32, "a random nonce");
        let expected =
            VerifiedState { user_id: "user-1".into(), vendor: Vendor::Oura, expires_at: NOW + 900, nonce: verified.nonce.clone() };
        assert_eq!(verified, expected);
        assert_eq!(verify(&secret(), &state, Vendor::Oura, NOW + 900), Err(StateError::Expired));
        assert_ne!(state, sign(&secret(), "user-1", Vendor::Oura, NOW), "a fresh nonce per state");
    }

    #[test]
    fn a_state_for_another_vendor_is_refused() {
        let state = sign(&secret(), "user-1", Vendor::Oura, NOW);
        assert_eq!(verify(&secret(), &state, Vendor::Whoop, NOW), Err(StateError::WrongVendor));
    }

    #[test]
    fn tampered_states_are_refused() {
        let state = sign(&secret(), "user-1", Vendor::Oura, NOW);
        let (payload, signature) = state.split_once('.').unwrap();
        // Another user in the payload, keeping the old signature.
        let forged_claims = format!(r#"{{"u":"victim","v":"oura","exp":{},"n":"x"}}"#, NOW + 900);
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(forged_claims));
        assert_eq!(verify(&secret(), &forged, Vendor::Oura, NOW), Err(StateError::BadSignature));
        // One signature digit changed.
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(verify(&secret(), &flipped, Vendor::Oura, NOW), Err(StateError::BadSignature));
        // Signed with another secret.
        let other = sign(&Secret::new("another-secret"), "user-1", Vendor::Oura, NOW);
        assert_eq!(verify(&secret(), &other, Vendor::Oura, NOW), Err(StateError::BadSignature));
        for malformed in ["", "no-dot", "abc.zz", "abc.0102", &format!("{payload}.")] {
            assert_eq!(verify(&secret(), malformed, Vendor::Oura, NOW), Err(StateError::Malformed), "{malformed}");
        }
    }
}
