//! `GET /oauth/{vendor}/callback?code=..&state=..`: where the vendor sends the user back after
//! they granted us access (served by the ingress).
//!
//! Steps: vendor known (404 `not_found`) and configured (404 `oauth_not_configured`) -> the user
//! did not refuse (`?error=access_denied`: 400 `authorization_denied`) -> `state` signed by us,
//! unexpired, for this vendor (401 `invalid_state`) -> the code exchanged for tokens (400
//! `invalid_grant` when the vendor refuses the code, 502 `oauth_exchange_failed` when it fails)
//! -> the vendor's id of the user -> connection and identity link stored (503 when PostgreSQL is
//! down) -> 200 `{"status":"connected","vendor":..,"user_id":..}`.
//!
//! A vendor is served only when `TOKEN_ENCRYPTION_KEY`, `OAUTH_STATE_SECRET`,
//! `OAUTH_REDIRECT_BASE` and its client id and secret are all set; which ones are is logged once
//! at start. The code, the tokens and the state never reach a log line or an error body.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use super::cipher::{self, TokenCipher};
use super::oauth::{OAuthArgs, OAuthClient, OAuthClients, OAuthError};
use super::state::{self, StateError};
use super::store::ConnectionStore;
use crate::audit::{Action, Actor, Entry, Pseudonymizer};
use crate::event::Vendor;
use crate::ingress::IngressState;
use crate::ingress::auth::VendorSecrets;
use crate::ingress::error::json_error;
use crate::secret::{Secret, load_secret};

/// The vendors users can connect.
const OAUTH_VENDORS: [Vendor; 2] = [Vendor::Oura, Vendor::Whoop];

/// The callback's own secrets (the client secrets are the webhook ones, in `VendorSecrets`).
#[derive(Debug, Clone, Default)]
pub struct OAuthSecrets {
    pub token_encryption_key: Option<Secret>,
    pub state_secret: Option<Secret>,
    /// `PSEUDONYM_KEY`: names the person in the callback's audit records.
    pub pseudonym_key: Option<Secret>,
}

impl OAuthSecrets {
    /// `TOKEN_ENCRYPTION_KEY`, `OAUTH_STATE_SECRET` and `PSEUDONYM_KEY` (or their `*_FILE`), if set.
    pub fn load() -> anyhow::Result<OAuthSecrets> {
        Ok(OAuthSecrets {
            token_encryption_key: load_secret(cipher::KEY_SECRET)?,
            state_secret: load_secret(state::STATE_SECRET)?,
            pseudonym_key: load_secret(crate::audit::pseudonym::KEY_SECRET)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("no OAuth callback for this path")]
    NotFound,
    #[error("OAuth connections are not configured for {0} on this ingress")]
    NotConfigured(&'static str),
    #[error("the user did not grant access")]
    Denied,
    #[error("the vendor reported an authorization error")]
    AuthorizationFailed,
    #[error("missing query parameter: {0}")]
    MissingParameter(&'static str),
    #[error("{0}")]
    InvalidState(StateError),
    #[error("this authorization link was already used; start the authorization again")]
    StateReused,
    #[error("the vendor refused the authorization code (used or expired); start the authorization again")]
    InvalidGrant,
    #[error("the vendor's token endpoint or API failed; try again")]
    ExchangeFailed,
    #[error("connection store unavailable; try again")]
    StoreUnavailable,
}

impl CallbackError {
    pub fn status(&self) -> StatusCode {
        match self {
            CallbackError::NotFound | CallbackError::NotConfigured(_) => StatusCode::NOT_FOUND,
            CallbackError::Denied
            | CallbackError::AuthorizationFailed
            | CallbackError::MissingParameter(_)
            | CallbackError::InvalidGrant => StatusCode::BAD_REQUEST,
            CallbackError::InvalidState(_) | CallbackError::StateReused => StatusCode::UNAUTHORIZED,
            CallbackError::ExchangeFailed => StatusCode::BAD_GATEWAY,
            CallbackError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::NotFound => "not_found",
            CallbackError::NotConfigured(_) => "oauth_not_configured",
            CallbackError::Denied => "authorization_denied",
            CallbackError::AuthorizationFailed => "authorization_failed",
            CallbackError::MissingParameter(_) => "invalid_request",
            CallbackError::InvalidState(_) => "invalid_state",
            CallbackError::StateReused => "state_reused",
            CallbackError::InvalidGrant => "invalid_grant",
            CallbackError::ExchangeFailed => "oauth_exchange_failed",
            CallbackError::StoreUnavailable => "connection_store_unavailable",
        }
    }
}

impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        crate::metrics::ERRORS.with_label_values(&["oauth_callback", self.code()]).inc();
        let retry_after = matches!(self, CallbackError::StoreUnavailable).then_some(5);
        json_error(self.status(), self.code(), &self.to_string(), retry_after)
    }
}

/// What the callback needs; every part optional, each vendor served only when all of its are set.
#[derive(Debug, Default)]
pub struct OAuthCallback {
    store: Option<ConnectionStore>,
    state_secret: Option<Secret>,
    clients: OAuthClients,
    /// Public base URL of this ingress, as registered with the vendors (`OAUTH_REDIRECT_BASE`).
    redirect_base: Option<String>,
    /// Names the person in audit records (none without `PSEUDONYM_KEY`).
    pseudonyms: Option<Pseudonymizer>,
}

impl OAuthCallback {
    pub fn new(store: Option<ConnectionStore>, state_secret: Option<Secret>, clients: OAuthClients, redirect_base: Option<String>) -> Self {
        let redirect_base = redirect_base.map(|base| base.trim().trim_end_matches('/').to_owned()).filter(|base| !base.is_empty());
        OAuthCallback { store, state_secret, clients, redirect_base, pseudonyms: None }
    }

    /// From the ingress settings: the client ids of `oauth`, the client secrets of `vendors`. An
    /// invalid (not missing) encryption key is an error: better no start than a broken callback.
    pub fn build(
        oauth: &OAuthArgs,
        redirect_base: Option<&str>,
        pool: PgPool,
        secrets: OAuthSecrets,
        vendors: &VendorSecrets,
    ) -> anyhow::Result<OAuthCallback> {
        let store = match &secrets.token_encryption_key {
            Some(key) => Some(ConnectionStore::new(pool, TokenCipher::from_secret(key)?)),
            None => None,
        };
        let clients = oauth.clients_with_secrets(vendors.oura.clone(), vendors.whoop.clone())?;
        let pseudonyms = secrets.pseudonym_key.as_ref().map(Pseudonymizer::from_secret).transpose()?;
        let mut callback = OAuthCallback::new(store, secrets.state_secret, clients, redirect_base.map(str::to_owned));
        callback.pseudonyms = pseudonyms;
        Ok(callback)
    }

    /// Whether `vendor`'s callback is served.
    pub fn enabled(&self, vendor: Vendor) -> bool {
        self.missing(vendor).is_empty()
    }

    /// What `vendor`'s callback lacks.
    fn missing(&self, vendor: Vendor) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.store.is_none() {
            missing.push("TOKEN_ENCRYPTION_KEY");
        }
        if self.state_secret.is_none() {
            missing.push("OAUTH_STATE_SECRET");
        }
        if self.redirect_base.is_none() {
            missing.push("OAUTH_REDIRECT_BASE");
        }
        if self.clients.get(vendor).is_none() {
            missing.push(match vendor {
                Vendor::Whoop => "WHOOP_CLIENT_ID and WHOOP_CLIENT_SECRET",
                _ => "OURA_CLIENT_ID and OURA_CLIENT_SECRET",
            });
        }
        missing
    }

    /// Logs, once at start, which vendors' callbacks are served and what the others lack.
    pub fn log_startup(&self) {
        for vendor in OAUTH_VENDORS {
            let missing = self.missing(vendor);
            if missing.is_empty() {
                tracing::info!(vendor = vendor.slug(), redirect_uri = self.redirect_uri(vendor), "OAuth callback enabled.");
            } else {
                let missing = missing.join(", ");
                tracing::info!(vendor = vendor.slug(), %missing, "OAuth callback disabled (answers 404 oauth_not_configured).");
            }
        }
    }

    /// The redirect URI registered with the vendor; the code exchange must send the same one.
    pub fn redirect_uri(&self, vendor: Vendor) -> String {
        format!("{}/oauth/{}/callback", self.redirect_base.as_deref().unwrap_or_default(), vendor.slug())
    }

    /// Handles one callback request (`slug` from the path, `query` its parameters).
    pub async fn handle(&self, slug: &str, query: &HashMap<String, String>) -> Result<Response, CallbackError> {
        let vendor = Vendor::from_slug(slug).filter(|vendor| OAUTH_VENDORS.contains(vendor)).ok_or(CallbackError::NotFound)?;
        let (Some(store), Some(state_secret), Some(client)) = (&self.store, &self.state_secret, self.clients.get(vendor)) else {
            return Err(CallbackError::NotConfigured(vendor.slug()));
        };
        if self.redirect_base.is_none() {
            return Err(CallbackError::NotConfigured(vendor.slug()));
        }
        let param = |name: &str| query.get(name).map(|value| value.trim()).filter(|value| !value.is_empty());
        if let Some(error) = param("error") {
            if error == "access_denied" {
                return Err(CallbackError::Denied);
            }
            return Err(CallbackError::AuthorizationFailed);
        }
        let state = param("state").ok_or(CallbackError::InvalidState(StateError::Malformed))?;
        let verified = state::verify(state_secret, state, vendor, chrono::Utc::now().timestamp()).map_err(CallbackError::InvalidState)?;
        let code = param("code").ok_or(CallbackError::MissingParameter("code"))?;
        // From here on the request names a person (the state was ours): whatever happens is audited.
        let result = self.connect(store, client, vendor, code, &verified).await;
        let entry = Entry::new(Actor::Api("oauth.callback"), Action::OAuthCallback)
            .about(self.pseudonyms.as_ref(), &verified.user_id)
            .target(vendor.slug());
        let entry = match &result {
            Ok(_) => entry,
            Err(error) => entry.failed(error.code()),
        };
        if let Err(error) = crate::audit::record(store.pool(), &entry).await {
            tracing::error!(%error, "Writing the OAuth callback's audit record failed.");
        }
        result
    }

    /// The rest of a callback whose state verified: single use, code exchange, storing the tokens.
    async fn connect(
        &self,
        store: &ConnectionStore,
        client: &OAuthClient,
        vendor: Vendor,
        code: &str,
        verified: &state::VerifiedState,
    ) -> Result<Response, CallbackError> {
        // Single use, recorded before the exchange: a replayed callback URL cannot attach another
        // vendor account to this user, even within the state's 15 minutes.
        match store.use_state_nonce(&verified.nonce).await {
            Ok(true) => {}
            Ok(false) => return Err(CallbackError::StateReused),
            Err(error) => {
                tracing::warn!(%error, "Recording the OAuth state's use failed.");
                return Err(CallbackError::StoreUnavailable);
            }
        }

        let tokens = client.exchange_code(code, &self.redirect_uri(vendor)).await.map_err(|error| exchange_error(vendor, &error))?;
        let vendor_user_id = client.vendor_user_id(&tokens.access_token).await.map_err(|error| {
            // Even a refusal here is the vendor's failure: the token was issued a moment ago.
            tracing::warn!(vendor = vendor.slug(), code = error.code(), %error, "Reading the vendor's user id failed.");
            CallbackError::ExchangeFailed
        })?;
        store.upsert(vendor, &vendor_user_id, &verified.user_id, &tokens).await.map_err(|error| {
            tracing::warn!(%error, vendor = vendor.slug(), "Storing an OAuth connection failed.");
            CallbackError::StoreUnavailable
        })?;
        tracing::info!(vendor = vendor.slug(), user_id = %verified.user_id, "OAuth connection stored.");
        let body = serde_json::json!({ "status": "connected", "vendor": vendor.slug(), "user_id": verified.user_id });
        Ok(axum::Json(body).into_response())
    }
}

/// A failed exchange or profile call, logged by class (the error texts hold no secrets).
fn exchange_error(vendor: Vendor, error: &OAuthError) -> CallbackError {
    tracing::warn!(vendor = vendor.slug(), code = error.code(), %error, "OAuth code exchange failed.");
    match error {
        OAuthError::InvalidGrant(_) => CallbackError::InvalidGrant,
        _ => CallbackError::ExchangeFailed,
    }
}

/// The axum handler on the ingress router.
pub async fn oauth_callback(
    State(state): State<Arc<IngressState>>,
    vendor: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    // Rejections are answered with our JSON errors, not axum's text, which may quote the input.
    let Ok(Path(slug)) = vendor else { return CallbackError::NotFound.into_response() };
    let query = query.map(|Query(query)| query).unwrap_or_default();
    match state.oauth.handle(&slug, &query).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(code = error.code(), status = error.status().as_u16(), "OAuth callback refused.");
            error.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_and_unconfigured_vendors_are_json_404s() {
        let callback = OAuthCallback::default();
        let query = HashMap::new();
        assert!(matches!(callback.handle("terra", &query).await, Err(CallbackError::NotFound)));
        assert!(matches!(callback.handle("nope", &query).await, Err(CallbackError::NotFound)));
        let error = callback.handle("oura", &query).await.unwrap_err();
        assert_eq!((error.status(), error.code()), (StatusCode::NOT_FOUND, "oauth_not_configured"));
        let response = error.into_response();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "oauth_not_configured");
        assert!(!callback.enabled(Vendor::Whoop));
    }

    #[test]
    fn codes_and_statuses_are_stable() {
        let cases = [
            (CallbackError::Denied, 400, "authorization_denied"),
            (CallbackError::InvalidState(StateError::Expired), 401, "invalid_state"),
            (CallbackError::InvalidGrant, 400, "invalid_grant"),
            (CallbackError::ExchangeFailed, 502, "oauth_exchange_failed"),
            (CallbackError::StoreUnavailable, 503, "connection_store_unavailable"),
            (CallbackError::MissingParameter("code"), 400, "invalid_request"),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status().as_u16(), error.code()), (status, code));
        }
    }

    #[test]
    fn the_redirect_uri_is_the_base_plus_the_callback_path() {
        let callback = OAuthCallback::new(None, None, OAuthClients::default(), Some("https://bridge.example/ ".into()));
        assert_eq!(callback.redirect_uri(Vendor::Whoop), "https://bridge.example/oauth/whoop/callback");
    }
}
