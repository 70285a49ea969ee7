//! Terra's connection lifecycle (`auth`, `deauth`, `user_reauth`, …) to identity-mapping changes
//! (vendors.md §1.2). Terra's `user_id` names a *connection*; `reference_id` is the id of our user
//! that the widget session was opened for, so it is the join key.

use serde::Deserialize;

use super::TerraUser;
use crate::event::Vendor;
use crate::vendors::{IdentityChange, NormalizeError, Outcome};

#[derive(Deserialize)]
struct Auth {
    status: Option<String>,
    user: Option<TerraUser>,
    /// Top-level copy of `user.reference_id` on auth events.
    reference_id: Option<String>,
}

#[derive(Deserialize)]
struct Deauth {
    user: TerraUser,
}

#[derive(Deserialize)]
struct Reauth {
    old_user: TerraUser,
    new_user: TerraUser,
}

/// The outcome of a lifecycle event of type `kind`.
pub(super) fn normalize(kind: &str, body: &[u8]) -> Result<Outcome, NormalizeError> {
    match kind {
        "auth" => auth(serde_json::from_slice(body)?),
        "deauth" | "access_revoked" => {
            let Deauth { user } = serde_json::from_slice(body)?;
            Ok(Outcome::Identity(IdentityChange::Unlink { vendor: Vendor::Terra, vendor_user_id: user.user_id }))
        }
        "user_reauth" => reauth(serde_json::from_slice(body)?),
        // `auth_cancelled` is the failure arm of `auth`: the user closed the widget, nothing to link.
        _ => Ok(notice(kind, "authentication did not complete; nothing to link")),
    }
}

fn notice(kind: &str, detail: &str) -> Outcome {
    Outcome::Notice { kind: kind.to_owned(), detail: detail.to_owned() }
}

/// A successful auth links the connection to our user. Without a `reference_id` there is no one
/// to link to, which is a broken integration, not a notice: it goes to the dead letters.
fn auth(event: Auth) -> Result<Outcome, NormalizeError> {
    if event.status.as_deref() != Some("success") {
        return Ok(notice("auth", "auth status is not success; nothing to link"));
    }
    let user = event.user.ok_or_else(|| NormalizeError::InvalidShape("terra auth success without user".to_owned()))?;
    let user_id = event
        .reference_id
        .filter(|id| !id.is_empty())
        .or_else(|| user.reference_id().map(str::to_owned))
        .ok_or_else(|| NormalizeError::InvalidShape("terra auth success without reference_id".to_owned()))?;
    Ok(Outcome::Identity(IdentityChange::Link { vendor: Vendor::Terra, vendor_user_id: user.user_id, user_id, provider: user.provider }))
}

/// Terra replaced the connection id; all later data uses the new one (§1.2, T3-reauth).
fn reauth(event: Reauth) -> Result<Outcome, NormalizeError> {
    let user_id = event
        .new_user
        .reference_id()
        .or(event.old_user.reference_id())
        .map(str::to_owned)
        .ok_or_else(|| NormalizeError::InvalidShape("terra user_reauth without reference_id".to_owned()))?;
    Ok(Outcome::Identity(IdentityChange::Rekey {
        vendor: Vendor::Terra,
        old_vendor_user_id: event.old_user.user_id,
        new_vendor_user_id: event.new_user.user_id,
        user_id,
        provider: event.new_user.provider,
    }))
}
