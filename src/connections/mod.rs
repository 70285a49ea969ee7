//! Vendor connections: users link their Oura / WHOOP accounts by OAuth, and the processor's fetch
//! stage reads their records with those tokens.
//!
//! - `oauth.rs`: the vendors' token endpoints (code exchange, refresh, whose token it is) and the
//!   classification of their errors; `args.rs`: OAuth settings, clients and the authorize URL;
//! - `state.rs`: the signed OAuth `state` naming our user; `callback.rs`: the ingress's
//!   `GET /oauth/{vendor}/callback`;
//! - `store.rs`: the `vendor_connections` table (also links `identity_links`); `cipher.rs`: tokens
//!   encrypted at rest;
//! - `tokens.rs`: usable access tokens for the fetch stage, refreshed under an in-process and a
//!   Redis lock (Oura refresh tokens are single-use);
//! - `cli.rs`: `biometric-bridge connections add|list|revoke|authorize-url`; `http.rs`: HTTPS
//!   client setup (rustls on `ring`);
//! - `subscriptions.rs`: the app's Oura webhook subscriptions (created, renewed before they
//!   expire); `subscriptions_cli.rs`: `biometric-bridge subscriptions list|ensure`.

pub mod args;
pub mod callback;
pub mod cipher;
pub mod cli;
pub mod http;
pub mod oauth;
pub mod revoke;
pub mod rotate;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod subscriptions_cli;
pub mod tokens;

pub use cipher::{CipherError, TokenCipher};
pub use oauth::{OAuthArgs, OAuthClient, OAuthClients, OAuthError, TokenSet};
pub use store::{Connection, ConnectionStatus, ConnectionStore, ConnectionSummary, StoreError};
pub use tokens::{AccessToken, AccessTokens, TokenError};
