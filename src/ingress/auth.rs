//! Who may write to which webhook route: the vendors' secrets and the check dispatch.
//!
//! A vendor without its secret is disabled (its route answers 404) unless
//! `--insecure-skip-signatures` is set, which is refused nowhere but logged loudly at every start.

use axum::http::HeaderMap;

use super::error::IngressError;
use crate::event::Vendor;
use crate::secret::{Secret, load_secret};
use crate::vendors::signature::{SignatureError, VerifyContext};
use crate::vendors::{oura, terra, whoop};

/// The secrets the ingress verifies with (environment or `*_FILE`).
#[derive(Debug, Clone, Default)]
pub struct VendorSecrets {
    pub terra: Option<Secret>,
    pub oura: Option<Secret>,
    pub whoop: Option<Secret>,
    /// Oura's subscription handshake token.
    pub oura_verification_token: Option<Secret>,
}

impl VendorSecrets {
    pub fn load() -> anyhow::Result<VendorSecrets> {
        Ok(VendorSecrets {
            terra: load_secret("TERRA_SIGNING_SECRET")?,
            oura: load_secret("OURA_CLIENT_SECRET")?,
            whoop: load_secret("WHOOP_CLIENT_SECRET")?,
            oura_verification_token: load_secret("OURA_VERIFICATION_TOKEN")?,
        })
    }
}

/// Each signing vendor's replay window, seconds: its documented retry horizon (see
/// ARCHITECTURE.md, "Replay windows"), so a retry that keeps its original timestamp is never
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerances {
    pub terra: u64,
    pub oura: u64,
    pub whoop: u64,
}

impl Tolerances {
    fn of(&self, vendor: Vendor) -> u64 {
        match vendor {
            Vendor::Terra => self.terra,
            Vendor::Oura => self.oura,
            Vendor::Whoop => self.whoop,
            Vendor::AppleHealth => 0,
        }
    }
}

/// How the ingress authenticates each vendor.
#[derive(Debug, Clone)]
pub struct Authenticator {
    secrets: VendorSecrets,
    tolerances: Tolerances,
    insecure: bool,
    apple_enabled: bool,
}

impl Authenticator {
    pub fn new(secrets: VendorSecrets, tolerances: Tolerances, insecure: bool, apple_enabled: bool) -> Self {
        Authenticator { secrets, tolerances, insecure, apple_enabled }
    }

    fn secret(&self, vendor: Vendor) -> Option<&Secret> {
        match vendor {
            Vendor::Terra => self.secrets.terra.as_ref(),
            Vendor::Oura => self.secrets.oura.as_ref(),
            Vendor::Whoop => self.secrets.whoop.as_ref(),
            Vendor::AppleHealth => None,
        }
    }

    /// Whether the vendor's route is served.
    pub fn enabled(&self, vendor: Vendor) -> bool {
        match vendor {
            Vendor::AppleHealth => self.apple_enabled,
            _ => self.insecure || self.secret(vendor).is_some(),
        }
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Logs, once at start, which vendors are served and why the others are not.
    pub fn log_startup(&self) {
        if self.insecure {
            tracing::warn!("--insecure-skip-signatures is set: webhook signatures are NOT verified. Never run this in production.");
        }
        for vendor in Vendor::ALL {
            let enabled = self.enabled(vendor);
            let reason = match (vendor, enabled) {
                (Vendor::AppleHealth, true) => "bearer tokens from PostgreSQL",
                (Vendor::AppleHealth, false) => "disabled",
                (_, true) if self.secret(vendor).is_some() => "signature verified",
                (_, true) => "INSECURE: signature not verified",
                (Vendor::Terra, false) => "disabled: TERRA_SIGNING_SECRET is not set",
                (Vendor::Oura, false) => "disabled: OURA_CLIENT_SECRET is not set",
                (Vendor::Whoop, false) => "disabled: WHOOP_CLIENT_SECRET is not set",
            };
            if enabled {
                tracing::info!(
                    vendor = vendor.slug(),
                    route = format!("/webhooks/{}", vendor.slug()),
                    mode = reason,
                    "Webhook route enabled."
                );
            } else {
                tracing::warn!(vendor = vendor.slug(), reason, "Webhook route disabled (answers 404).");
            }
        }
    }

    /// Checks a signed vendor's request over the raw body. Apple Health is authenticated by
    /// bearer token elsewhere.
    pub fn verify(&self, vendor: Vendor, headers: &HeaderMap, body: &[u8]) -> Result<(), IngressError> {
        self.check(vendor, |ctx| match vendor {
            Vendor::Terra => terra::verify_signature(headers, body, ctx),
            Vendor::Oura => oura::verify_signature(headers, body, ctx),
            Vendor::Whoop => whoop::verify_signature(headers, body, ctx),
            Vendor::AppleHealth => Ok(()),
        })
    }

    /// The checks of [`Authenticator::verify`] that need no body (signature headers present,
    /// well-formed, fresh): a request failing them is refused before its body is read.
    pub fn check_headers(&self, vendor: Vendor, headers: &HeaderMap) -> Result<(), IngressError> {
        self.check(vendor, |ctx| match vendor {
            Vendor::Terra => terra::check_headers(headers, ctx),
            Vendor::Oura => oura::check_headers(headers, ctx),
            Vendor::Whoop => whoop::check_headers(headers, ctx),
            Vendor::AppleHealth => Ok(()),
        })
    }

    fn check(&self, vendor: Vendor, check: impl FnOnce(&VerifyContext<'_>) -> Result<(), SignatureError>) -> Result<(), IngressError> {
        let Some(secret) = self.secret(vendor) else {
            return if self.insecure { Ok(()) } else { Err(IngressError::VendorDisabled(vendor.slug())) };
        };
        let tolerance_secs = self.tolerances.of(vendor);
        let ctx = VerifyContext { secret: secret.expose().as_bytes(), now_unix_secs: chrono::Utc::now().timestamp(), tolerance_secs };
        let result = check(&ctx);
        if result == Err(SignatureError::Stale) {
            // A refused retry is data lost for good if the vendor keeps its timestamp: loud.
            crate::metrics::STALE_SIGNATURES.with_label_values(&[vendor.slug()]).inc();
            tracing::warn!(vendor = vendor.slug(), tolerance_secs, "Signature timestamp outside the replay window; refused.");
        }
        result.map_err(IngressError::from)
    }

    /// Oura's subscription handshake: the `verification_token` query parameter must match.
    pub fn verify_oura_handshake(&self, token: Option<&str>) -> Result<(), IngressError> {
        let expected = self.secrets.oura_verification_token.as_ref().ok_or(IngressError::VerificationFailed)?;
        let given = token.ok_or(IngressError::VerificationFailed)?;
        let equal: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.expose().as_bytes()).into();
        if equal { Ok(()) } else { Err(IngressError::VerificationFailed) }
    }

    /// The header names whose values are copied to Kafka for audit.
    pub fn signature_headers(vendor: Vendor) -> &'static [&'static str] {
        match vendor {
            Vendor::Terra => terra::SIGNATURE_HEADERS,
            Vendor::Oura => oura::SIGNATURE_HEADERS,
            Vendor::Whoop => whoop::SIGNATURE_HEADERS,
            Vendor::AppleHealth => &[],
        }
    }
}
