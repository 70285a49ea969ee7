//! Building the fetch stage from the configuration.
//!
//! Terra payload downloads need nothing but the network, so the stage always runs. Fetching from
//! Oura and WHOOP needs their OAuth clients and `TOKEN_ENCRYPTION_KEY` (the users' tokens are
//! encrypted with it); a vendor without them has no client, and its notifications are retried,
//! then dead-lettered (`fetch_failed`, `vendor_not_configured`), to be replayed once configured.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{FetchArgs, Fetcher, TokenSource};
use crate::config::RedisArgs;
use crate::connections::{AccessToken, AccessTokens, ConnectionStore, OAuthArgs, TokenCipher, TokenError};
use crate::event::Vendor;
use crate::shutdown::CancellationToken;

/// The fetch stage's parts.
pub struct FetchSetup {
    pub fetcher: Arc<Fetcher>,
    /// The OAuth side, when at least one vendor's OAuth client and `TOKEN_ENCRYPTION_KEY` are set.
    pub oauth: Option<OAuthSetup>,
}

/// Users' OAuth connections and the vendors they can be used with.
pub struct OAuthSetup {
    pub tokens: AccessTokens,
    pub store: ConnectionStore,
    /// Vendor -> API base URL, for the vendors with an OAuth client.
    pub bases: Vec<(Vendor, String)>,
}

/// The token source when no OAuth vendor is configured: no connection exists (never asked, as
/// such a fetcher has no OAuth vendor client).
struct NoTokens;

impl TokenSource for NoTokens {
    fn token<'a>(&'a self, _: Vendor, _: &'a str) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async { Err(TokenError::NoConnection) })
    }
    fn after_unauthorized<'a>(&'a self, _: Vendor, _: &'a str, _: &'a AccessToken) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async { Err(TokenError::NoConnection) })
    }
    fn mark_needs_reauth<'a>(&'a self, _: Vendor, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(async { Err(TokenError::NoConnection) })
    }
}

/// Builds the fetch stage's parts (logging which vendors it can fetch from).
pub async fn fetch_setup(
    oauth: &OAuthArgs,
    fetch: &FetchArgs,
    redis: &RedisArgs,
    pool: &sqlx::PgPool,
    shutdown: &CancellationToken,
) -> anyhow::Result<FetchSetup> {
    let oauth = oauth_setup(oauth, redis, pool, shutdown).await?;
    let (bases, tokens): (&[(Vendor, String)], Arc<dyn TokenSource>) = match &oauth {
        Some(setup) => (&setup.bases, Arc::new(setup.tokens.clone())),
        None => (&[], Arc::new(NoTokens)),
    };
    let fetcher = Arc::new(Fetcher::new(fetch, bases, tokens)?);
    tracing::info!(
        vendors = ?bases.iter().map(|(v, _)| v.slug()).chain(["terra (payload downloads)"]).collect::<Vec<_>>(),
        "Fetch stage enabled."
    );
    Ok(FetchSetup { fetcher, oauth })
}

async fn oauth_setup(
    oauth: &OAuthArgs,
    redis: &RedisArgs,
    pool: &sqlx::PgPool,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<OAuthSetup>> {
    let Some(key) = crate::secret::load_secret("TOKEN_ENCRYPTION_KEY")? else {
        tracing::warn!("No Oura/WHOOP fetching: TOKEN_ENCRYPTION_KEY is not set. Their notifications are retried, then dead-lettered.");
        return Ok(None);
    };
    let cipher = TokenCipher::with_env_previous(TokenCipher::from_secret(&key)?)?;
    let clients = oauth.clients()?;
    let mut bases = Vec::new();
    for (vendor, base) in [(Vendor::Oura, &oauth.oura_api_base), (Vendor::Whoop, &oauth.whoop_api_base)] {
        if clients.get(vendor).is_some() {
            bases.push((vendor, base.clone()));
        } else {
            tracing::warn!(
                vendor = vendor.slug(),
                "No OAuth client id / secret for this vendor: its notifications are retried, then dead-lettered."
            );
        }
    }
    if bases.is_empty() {
        return Ok(None);
    }
    let redis_client = redis::Client::open(redis.redis_url.as_str())
        .map_err(|error| anyhow::anyhow!("{}", crate::config::redact_url_error(&error.to_string(), &redis.redis_url)))?;
    let connection = crate::startup::wait_for("redis", &crate::startup::host_of(&redis.redis_url), shutdown, || async {
        tokio::time::timeout(Duration::from_secs(5), redis::aio::ConnectionManager::new(redis_client.clone()))
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))?
            .map_err(|error| anyhow::anyhow!("{}", crate::config::redact_url_error(&error.to_string(), &redis.redis_url)))
    })
    .await?;
    let store = ConnectionStore::new(pool.clone(), cipher);
    let tokens = AccessTokens::new(store.clone(), clients, connection, Duration::from_secs(15));
    Ok(Some(OAuthSetup { tokens, store, bases }))
}
