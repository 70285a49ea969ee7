//! OAuth 2.0 clients for the vendors whose webhooks are only pointers (Oura §2.1, WHOOP §3.1 of
//! the vendor notes): exchange an authorization code, refresh a token, and ask the vendor whose
//! token it is.
//!
//! Errors are classified for the caller's decision, not for display: [`OAuthError::InvalidGrant`]
//! means the user must authorize again (Oura refresh tokens are single-use, so a used or revoked
//! one stays refused), [`OAuthError::Unavailable`] is worth a retry later. No error text ever
//! holds a response body — a token endpoint may echo the refresh token or the client secret it
//! was sent — only the status and the OAuth `error` code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use super::args::{OAuthArgs, OAuthClients, authorize_url};
use crate::event::Vendor;
use crate::secret::Secret;

/// What a token endpoint grants.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    /// None when the vendor gave none (WHOOP without the `offline` scope).
    pub refresh_token: Option<Secret>,
    /// None when the answer had no `expires_in`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Space-separated, as granted.
    pub scopes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// 400/401 `invalid_grant`: the code or refresh token is used, expired or revoked. The user
    /// must authorize again.
    #[error("the vendor refused the grant ({0}); the user must authorize again")]
    InvalidGrant(String),
    /// Our client id or secret was refused: a deployment error, not the user's.
    #[error("the vendor refused our client credentials ({0}); check the client id and secret")]
    InvalidClient(String),
    /// Network failure, timeout, 5xx or 429: transient.
    #[error("the vendor is unavailable: {0}")]
    Unavailable(String),
    /// An answer we do not understand, or a refusal other than the above.
    #[error("unexpected answer from the vendor: {0}")]
    Malformed(String),
}

impl OAuthError {
    /// A stable, bounded label (metrics, logs).
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::Unavailable(_) => "unavailable",
            OAuthError::Malformed(_) => "malformed",
        }
    }
}

impl TokenSet {
    /// Parses a token endpoint's JSON answer (`access_token`, `refresh_token`, `expires_in`,
    /// `scope`); `connections add` reads the same shape from stdin. Field values never appear in
    /// the error.
    pub fn from_response(body: &[u8], now: DateTime<Utc>) -> Result<TokenSet, OAuthError> {
        let json: Value = serde_json::from_slice(body).map_err(|_| OAuthError::Malformed("token answer is not JSON".into()))?;
        let string = |field: &str| json.get(field).and_then(Value::as_str).map(str::trim).filter(|value| !value.is_empty());
        let access_token = string("access_token").ok_or_else(|| OAuthError::Malformed("token answer has no access_token".into()))?;
        let expires_in = match json.get("expires_in") {
            None | Some(Value::Null) => None,
            Some(Value::Number(number)) => number.as_f64(),
            Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        let expires_at = match (json.get("expires_in"), expires_in) {
            (None | Some(Value::Null), _) => None,
            (Some(_), Some(seconds)) if seconds.is_finite() && (0.0..=10.0 * 365.0 * 86_400.0).contains(&seconds) => {
                Some(now + chrono::Duration::milliseconds((seconds * 1000.0) as i64))
            }
            (Some(_), _) => return Err(OAuthError::Malformed("token answer has an invalid expires_in".into())),
        };
        Ok(TokenSet {
            access_token: Secret::new(access_token),
            refresh_token: string("refresh_token").map(Secret::new),
            expires_at,
            scopes: string("scope").map(str::to_owned),
        })
    }
}

/// The OAuth `error` code of an error answer, if it is a plain code (never free text, which
/// might quote the request).
fn error_code(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let code = json.get("error")?.as_str()?;
    let plain = !code.is_empty() && code.len() <= 64 && code.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte));
    plain.then(|| code.to_owned())
}

/// Classifies a token endpoint's non-2xx answer.
pub fn classify_token_error(status: u16, body: &[u8]) -> OAuthError {
    let code = error_code(body);
    let described = match &code {
        Some(code) => format!("HTTP {status} {code}"),
        None => format!("HTTP {status}"),
    };
    match (status, code.as_deref()) {
        (400 | 401, Some("invalid_grant")) => OAuthError::InvalidGrant(code.unwrap_or_default()),
        (_, Some("invalid_client" | "unauthorized_client")) | (401, _) => OAuthError::InvalidClient(described),
        (408 | 429 | 500..=599, _) => OAuthError::Unavailable(described),
        _ => OAuthError::Malformed(described),
    }
}

/// Classifies a vendor API's non-2xx answer to a call made with a user's access token.
pub fn classify_api_error(status: u16) -> OAuthError {
    match status {
        // 403 from Oura can also mean a lapsed membership: either way the user must act.
        401 | 403 => OAuthError::InvalidGrant(format!("access token refused (HTTP {status})")),
        408 | 429 | 500..=599 => OAuthError::Unavailable(format!("HTTP {status}")),
        _ => OAuthError::Malformed(format!("HTTP {status}")),
    }
}

/// A transport failure, described without the request (its body holds secrets).
fn transport(what: &str, error: &reqwest::Error) -> OAuthError {
    OAuthError::Unavailable(format!("{what}: {}", transport_kind(error)))
}

/// What went wrong with a call that got no usable answer, in words that never quote the request
/// (reqwest's own text may hold the URL, and callers' requests hold secrets).
pub(crate) fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "answer unreadable"
    } else {
        "request failed"
    }
}

/// One vendor's OAuth application.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    vendor: Vendor,
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    /// Base of the vendor's REST API (`https://api.ouraring.com`, `https://api.prod.whoop.com/developer`).
    api_base: String,
}

impl OAuthClient {
    /// A client of `vendor` (Oura or WHOOP); every HTTP call is bounded by `timeout`.
    pub fn new(
        vendor: Vendor,
        client_id: impl Into<String>,
        client_secret: Secret,
        token_url: impl Into<String>,
        api_base: impl Into<String>,
        timeout: Duration,
    ) -> anyhow::Result<OAuthClient> {
        anyhow::ensure!(matches!(vendor, Vendor::Oura | Vendor::Whoop), "{} has no OAuth connections", vendor.slug());
        let http = super::http::client(timeout).map_err(|error| anyhow::anyhow!("building the HTTP client: {error}"))?;
        Ok(OAuthClient {
            vendor,
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            api_base: api_base.into().trim_end_matches('/').to_owned(),
        })
    }

    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Trades an authorization code for tokens.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<TokenSet, OAuthError> {
        self.token_request(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]).await
    }

    /// Trades a refresh token for new tokens. Oura's refresh tokens are single-use: the caller
    /// must make sure nobody else spends the same one (see `tokens.rs`).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, OAuthError> {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
        if self.vendor == Vendor::Whoop {
            // WHOOP returns a new refresh token only when `offline` is asked for again (§3.1).
            form.push(("scope", "offline"));
        }
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenSet, OAuthError> {
        let mut form = form.to_vec();
        form.push(("client_id", &self.client_id));
        form.push(("client_secret", self.client_secret.expose()));
        let response = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| transport("token endpoint", &error))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| transport("token endpoint", &error))?;
        if !(200..300).contains(&status) {
            return Err(classify_token_error(status, &body));
        }
        TokenSet::from_response(&body, Utc::now())
    }

    /// The vendor's id of the user a token belongs to: Oura `personal_info.id`, WHOOP
    /// `profile/basic.user_id` (an integer, returned as its decimal string).
    pub async fn vendor_user_id(&self, access_token: &Secret) -> Result<String, OAuthError> {
        let (path, field) = match self.vendor {
            Vendor::Whoop => ("/v2/user/profile/basic", "user_id"),
            _ => ("/v2/usercollection/personal_info", "id"),
        };
        let response = self
            .http
            .get(format!("{}{path}", self.api_base))
            .bearer_auth(access_token.expose())
            .send()
            .await
            .map_err(|error| transport("user profile", &error))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(classify_api_error(status));
        }
        let json: Value = response.json().await.map_err(|error| transport("user profile", &error))?;
        match json.get(field) {
            Some(Value::String(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            Some(Value::Number(id)) => Ok(id.to_string()),
            _ => Err(OAuthError::Malformed(format!("user profile has no {field}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_token_answer_parses() {
        let body = br#"{"access_token":"at-1","refresh_token":"rt-1","expires_in":86400,"scope":"daily heartrate","token_type":"bearer"}"#;
        let tokens = TokenSet::from_response(body, now()).unwrap();
        assert_eq!(tokens.access_token.expose(), "at-1");
        assert_eq!(tokens.refresh_token.unwrap().expose(), "rt-1");
        assert_eq!(tokens.expires_at, Some(now() + chrono::Duration::seconds(86_400)));
        assert_eq!(tokens.scopes.as_deref(), Some("daily heartrate"));
    }

    #[test]
    fn optional_fields_may_be_missing_and_expires_in_may_be_a_string() {
        let tokens = TokenSet::from_response(br#"{"access_token":"at"}"#, now()).unwrap();
        assert!(tokens.refresh_token.is_none() && tokens.expires_at.is_none() && tokens.scopes.is_none());
        let tokens = TokenSet::from_response(br#"{"access_token":"at","expires_in":"3600","refresh_token":""}"#, now()).unwrap();
        assert_eq!(tokens.expires_at, Some(now() + chrono::Duration::seconds(3600)));
        assert!(tokens.refresh_token.is_none(), "an empty refresh token is none");
    }

    #[test]
    fn bad_answers_are_malformed_without_echoing_values() {
        for body in [
            &br#"{"refresh_token":"SECRET-rt"}"#[..],
            br#"{"access_token":"SECRET-at","expires_in":"SECRET-x"}"#,
            br#"{"access_token":"SECRET-at","expires_in":-5}"#,
            br#"{"access_token":42}"#,
            b"SECRET not json",
        ] {
            let error = TokenSet::from_response(body, now()).unwrap_err();
            assert!(matches!(error, OAuthError::Malformed(_)), "{error:?}");
            assert!(!format!("{error} {error:?}").contains("SECRET"), "{error}");
        }
    }

    #[test]
    fn token_errors_are_classified_by_status_and_code() {
        let grant = br#"{"error":"invalid_grant","error_description":"refresh token SECRET-rt already used"}"#;
        assert_eq!(classify_token_error(400, grant), OAuthError::InvalidGrant("invalid_grant".into()));
        assert_eq!(classify_token_error(401, grant), OAuthError::InvalidGrant("invalid_grant".into()));
        assert!(matches!(classify_token_error(401, br#"{"error":"invalid_client"}"#), OAuthError::InvalidClient(_)));
        assert!(matches!(classify_token_error(400, br#"{"error":"unauthorized_client"}"#), OAuthError::InvalidClient(_)));
        assert!(matches!(classify_token_error(401, b"nope"), OAuthError::InvalidClient(_)));
        for status in [429, 500, 502, 503, 504, 408] {
            assert!(matches!(classify_token_error(status, b"<html>"), OAuthError::Unavailable(_)), "{status}");
        }
        assert!(matches!(classify_token_error(400, br#"{"error":"invalid_request"}"#), OAuthError::Malformed(_)));
        assert!(matches!(classify_token_error(404, b""), OAuthError::Malformed(_)));
        // A 5xx that says invalid_grant is still transient: do not give up a connection on it.
        assert!(matches!(classify_token_error(503, grant), OAuthError::Unavailable(_)));
    }

    #[test]
    fn error_texts_hold_only_plain_codes() {
        let echo = br#"{"error":"client_secret=SECRET-cs is wrong","error_description":"SECRET-rt"}"#;
        for status in [400, 401, 500] {
            let error = classify_token_error(status, echo);
            assert!(!format!("{error} {error:?}").contains("SECRET"), "{error}");
        }
        assert_eq!(
            classify_token_error(500, br#"{"error":"server_error"}"#).to_string(),
            "the vendor is unavailable: HTTP 500 server_error"
        );
    }

    #[test]
    fn api_errors_are_classified() {
        assert!(matches!(classify_api_error(401), OAuthError::InvalidGrant(_)));
        assert!(matches!(classify_api_error(403), OAuthError::InvalidGrant(_)));
        assert!(matches!(classify_api_error(429), OAuthError::Unavailable(_)));
        assert!(matches!(classify_api_error(502), OAuthError::Unavailable(_)));
        assert!(matches!(classify_api_error(404), OAuthError::Malformed(_)));
    }
}
