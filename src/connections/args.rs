//! The vendors' OAuth applications: settings (`OAuthArgs`), the clients built from them, and the
//! authorize URL a user is sent to.
//!
//! Client ids are flags (they are public: they appear in every authorize URL); client secrets are
//! the same `OURA_CLIENT_SECRET` / `WHOOP_CLIENT_SECRET` that verify the vendors' webhook
//! signatures, read only from the environment or `*_FILE`.

use std::time::Duration;

use super::oauth::OAuthClient;
use crate::event::Vendor;
use crate::secret::{Secret, load_secret};

/// Where a user grants us access (vendor notes §2.1, §3.1).
pub fn authorize_endpoint(vendor: Vendor) -> Option<&'static str> {
    match vendor {
        Vendor::Oura => Some("https://cloud.ouraring.com/oauth/authorize"),
        Vendor::Whoop => Some("https://api.prod.whoop.com/oauth/oauth2/auth"),
        _ => None,
    }
}

/// The scopes we ask for: what the fetch stage reads, and for WHOOP `offline` (without it WHOOP
/// gives no refresh token).
pub fn scopes(vendor: Vendor) -> Option<&'static str> {
    match vendor {
        Vendor::Oura => Some("daily heartrate personal session workout spo2Daily"),
        Vendor::Whoop => Some("offline read:recovery read:cycles read:sleep read:workout read:profile"),
        _ => None,
    }
}

/// The authorization-code request URL for `vendor`, carrying a signed `state` (see `state.rs`).
pub fn authorize_url(vendor: Vendor, client_id: &str, redirect_uri: &str, state: &str) -> Option<String> {
    let params =
        [("response_type", "code"), ("client_id", client_id), ("redirect_uri", redirect_uri), ("scope", scopes(vendor)?), ("state", state)];
    reqwest::Url::parse_with_params(authorize_endpoint(vendor)?, params).ok().map(String::from)
}

/// OAuth application settings (the ingress's callback, the processor's refreshes, the CLI).
#[derive(Debug, Clone, clap::Args)]
pub struct OAuthArgs {
    /// Oura OAuth application client id (its secret: OURA_CLIENT_SECRET or _FILE, environment only).
    #[arg(long, env = "OURA_CLIENT_ID")]
    pub oura_client_id: Option<String>,

    /// WHOOP OAuth application client id (its secret: WHOOP_CLIENT_SECRET or _FILE, environment only).
    #[arg(long, env = "WHOOP_CLIENT_ID")]
    pub whoop_client_id: Option<String>,

    /// Oura token endpoint.
    #[arg(long, env = "OURA_TOKEN_URL", default_value = "https://api.ouraring.com/oauth/token")]
    pub oura_token_url: String,

    /// WHOOP token endpoint.
    #[arg(long, env = "WHOOP_TOKEN_URL", default_value = "https://api.prod.whoop.com/oauth/oauth2/token")]
    pub whoop_token_url: String,

    /// Oura API base URL.
    #[arg(long, env = "OURA_API_BASE", default_value = "https://api.ouraring.com")]
    pub oura_api_base: String,

    /// WHOOP API base URL.
    #[arg(long, env = "WHOOP_API_BASE", default_value = "https://api.prod.whoop.com/developer")]
    pub whoop_api_base: String,

    /// Time limit of one call to a token endpoint or profile API, milliseconds.
    #[arg(long, env = "OAUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub oauth_timeout_ms: u64,
}

impl OAuthArgs {
    /// The configured clients, secrets read from `OURA_CLIENT_SECRET` / `WHOOP_CLIENT_SECRET`
    /// (or `*_FILE`). A vendor without both its id and its secret is absent.
    pub fn clients(&self) -> anyhow::Result<OAuthClients> {
        self.clients_with_secrets(load_secret("OURA_CLIENT_SECRET")?, load_secret("WHOOP_CLIENT_SECRET")?)
    }

    /// [`OAuthArgs::clients`] with secrets already loaded (the ingress has them for signatures).
    pub fn clients_with_secrets(&self, oura_secret: Option<Secret>, whoop_secret: Option<Secret>) -> anyhow::Result<OAuthClients> {
        let timeout = Duration::from_millis(self.oauth_timeout_ms.max(1));
        let mut clients = OAuthClients::default();
        let configured = [
            (Vendor::Oura, &self.oura_client_id, oura_secret, &self.oura_token_url, &self.oura_api_base),
            (Vendor::Whoop, &self.whoop_client_id, whoop_secret, &self.whoop_token_url, &self.whoop_api_base),
        ];
        for (vendor, id, secret, token_url, api_base) in configured {
            let id = id.as_deref().map(str::trim).filter(|id| !id.is_empty());
            if let (Some(id), Some(secret)) = (id, secret) {
                clients.insert(OAuthClient::new(vendor, id, secret, token_url.as_str(), api_base.as_str(), timeout)?);
            }
        }
        Ok(clients)
    }

    /// The client id configured for `vendor`.
    pub fn client_id(&self, vendor: Vendor) -> Option<&str> {
        let id = match vendor {
            Vendor::Oura => self.oura_client_id.as_deref(),
            Vendor::Whoop => self.whoop_client_id.as_deref(),
            _ => None,
        };
        id.map(str::trim).filter(|id| !id.is_empty())
    }
}

/// The OAuth clients of the configured vendors.
#[derive(Debug, Clone, Default)]
pub struct OAuthClients {
    oura: Option<OAuthClient>,
    whoop: Option<OAuthClient>,
}

impl OAuthClients {
    pub fn get(&self, vendor: Vendor) -> Option<&OAuthClient> {
        match vendor {
            Vendor::Oura => self.oura.as_ref(),
            Vendor::Whoop => self.whoop.as_ref(),
            _ => None,
        }
    }

    /// Adds (or replaces) the client of its vendor.
    pub fn insert(&mut self, client: OAuthClient) {
        match client.vendor() {
            Vendor::Oura => self.oura = Some(client),
            Vendor::Whoop => self.whoop = Some(client),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_urls_carry_the_scopes_and_state() {
        let url = authorize_url(Vendor::Whoop, "client-1", "https://bridge.example/oauth/whoop/callback", "abc.def").unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("api.prod.whoop.com"));
        let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(query["scope"], "offline read:recovery read:cycles read:sleep read:workout read:profile");
        assert_eq!(query["state"], "abc.def");
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["redirect_uri"], "https://bridge.example/oauth/whoop/callback");
        assert!(authorize_url(Vendor::Oura, "c", "https://x/cb", "s").unwrap().starts_with("https://cloud.ouraring.com/oauth/authorize?"));
        assert!(authorize_url(Vendor::Terra, "c", "https://x/cb", "s").is_none());
    }

    #[test]
    fn a_vendor_needs_both_id_and_secret() {
        let args = OAuthArgs {
            oura_client_id: Some("oura-id".into()),
            whoop_client_id: None,
            oura_token_url: "http://127.0.0.1:1/token".into(),
            whoop_token_url: "http://127.0.0.1:1/token".into(),
            oura_api_base: "http://127.0.0.1:1".into(),
            whoop_api_base: "http://127.0.0.1:1".into(),
            oauth_timeout_ms: 1000,
        };
        let clients = args.clients_with_secrets(Some(Secret::new("s")), Some(Secret::new("s"))).unwrap();
        assert_eq!(clients.get(Vendor::Oura).map(OAuthClient::client_id), Some("oura-id"));
        assert!(clients.get(Vendor::Whoop).is_none(), "no WHOOP client id");
        assert!(args.clients_with_secrets(None, None).unwrap().get(Vendor::Oura).is_none(), "no Oura secret");
    }
}
