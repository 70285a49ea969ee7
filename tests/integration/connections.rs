//! Vendor connections against the real PostgreSQL and Redis and the vendor simulator: the CLI
//! never shows or stores a token in clear, two processors racing on one expired Oura token spend
//! its single-use refresh token once, a revoked user ends `needs_reauth`, and the ingress's OAuth
//! callback stores a connection and its identity link from a state made by `authorize-url`.
//! Every test uses its own vendor user ids (the database is shared).

use std::collections::HashMap;
use std::time::Duration;

use biometric_bridge::config::DatabaseArgs;
use biometric_bridge::connections::callback::OAuthSecrets;
use biometric_bridge::connections::{
    AccessTokens, ConnectionStatus, ConnectionStore, OAuthClient, OAuthClients, TokenCipher, TokenError, TokenSet,
};
use biometric_bridge::event::Vendor;
use biometric_bridge::ingress::auth::VendorSecrets;
use biometric_bridge::ingress::{Ingress, IngressArgs};
use biometric_bridge::secret::Secret;
use biometric_bridge::shutdown::CancellationToken;
use chrono::Utc;
use clap::Parser;

use super::helpers;
use super::ingress_harness::{assert_error, raw_topic};
use super::vendor_sim::{SimVendor, VendorSim};

const STATE_SECRET: &str = "state-secret-for-connection-tests";

async fn pool() -> sqlx::PgPool {
    helpers::require_stack();
    let database = DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 4 };
    database.migrated_pool().await.expect("PostgreSQL")
}

async fn store(key: &str) -> ConnectionStore {
    ConnectionStore::new(pool().await, TokenCipher::from_secret(&Secret::new(key)).unwrap())
}

async fn redis() -> redis::aio::ConnectionManager {
    redis::Client::open(helpers::redis_url()).unwrap().get_connection_manager().await.expect("Redis")
}

fn oura_clients(sim: &VendorSim) -> OAuthClients {
    let client = OAuthClient::new(
        Vendor::Oura,
        sim.client_id(SimVendor::Oura),
        Secret::new(sim.client_secret(SimVendor::Oura)),
        sim.oura_token_url(),
        sim.oura_base(),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut clients = OAuthClients::default();
    clients.insert(client);
    clients
}

/// A token set as the simulator issued it, expiring `expires_in` from now.
fn tokens(access: &str, refresh: &str, expires_in: chrono::Duration) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(refresh)),
        expires_at: Some(Utc::now() + expires_in),
        scopes: Some("daily heartrate".into()),
    }
}

/// An Oura user of the simulator, connected to our `user` with tokens expiring in `expires_in_secs`
/// (negative: already expired); returns (vendor user id, access token, refresh token).
async fn connected_user(sim: &VendorSim, key: &str, user: &str, expires_in_secs: i64) -> (String, String, String) {
    let vendor_user = helpers::unique("oura-user");
    let (access, refresh) = sim.add_user(SimVendor::Oura, &vendor_user, expires_in_secs);
    let granted = tokens(&access, &refresh, chrono::Duration::seconds(expires_in_secs));
    store(key).await.upsert(Vendor::Oura, &vendor_user, user, &granted).await.unwrap();
    (vendor_user, access, refresh)
}

/// Runs `biometric-bridge connections <args>` with `stdin`; returns (success, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    helpers::run_cli(&[&["connections"], args].concat(), env, stdin)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_and_revokes_without_ever_showing_a_token() {
    let pool = pool().await;
    let key = helpers::random_key();
    let (user, vendor_user) = (helpers::unique("user"), helpers::unique("oura-cli"));
    let (access, refresh) = (format!("at-{}", uuid::Uuid::new_v4()), format!("rt-{}", uuid::Uuid::new_v4()));
    let json = format!(r#"{{"access_token":"{access}","refresh_token":"{refresh}","expires_in":86400,"scope":"daily personal"}}"#);
    let env = [("TOKEN_ENCRYPTION_KEY", key.as_str())];

    let (ok, out, err) = cli(&["add", "--vendor", "oura", "--user", &user, "--vendor-user", &vendor_user], &env, &json);
    assert!(ok, "add: {err}");
    assert!(out.contains(&vendor_user) && out.contains(&user), "{out}");
    for text in [&out, &err] {
        assert!(!text.contains(&access) && !text.contains(&refresh), "add prints a token: {text}");
    }

    let (ok, out, err) = cli(&["list", "--vendor", "oura"], &[], "");
    assert!(ok, "list: {err}");
    let line = out.lines().find(|line| line.contains(&vendor_user)).unwrap_or_else(|| panic!("listed: {out}"));
    assert!(line.contains(&user) && line.contains("active") && line.contains("daily personal"), "{line}");
    assert!(!out.contains(&access) && !out.contains(&refresh), "list prints a token");

    // At rest: neither token's bytes are in the row, and they decrypt with the key.
    let (access_sealed, refresh_sealed): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT access_token, refresh_token FROM vendor_connections WHERE vendor = 'OURA' AND vendor_user_id = $1")
            .bind(&vendor_user)
            .fetch_one(&pool)
            .await
            .unwrap();
    for sealed in [&access_sealed, &refresh_sealed] {
        assert!(!contains(sealed, access.as_bytes()) && !contains(sealed, refresh.as_bytes()), "a token in clear in the table");
        assert_eq!(sealed[0], 0x01, "format version");
    }
    let connection = store(&key).await.get(Vendor::Oura, &vendor_user).await.unwrap().unwrap();
    assert_eq!(connection.access_token.expose(), access);
    assert_eq!(connection.refresh_token.unwrap().expose(), refresh);
    assert_eq!((connection.user_id.as_str(), connection.status), (user.as_str(), ConnectionStatus::Active));
    let linked: (String, bool) = sqlx::query_as("SELECT user_id, active FROM identity_links WHERE vendor = 'OURA' AND vendor_user_id = $1")
        .bind(&vendor_user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(linked, (user.clone(), true), "the vendor user maps to our user");

    // Without the token key the vendor cannot be told, but the connection is revoked here at once
    // and the vendor revocation left pending (retried by the processor), which the exit status says.
    let (ok, _, err) = cli(&["revoke", "--vendor", "oura", "--vendor-user", &vendor_user], &[], "");
    assert!(!ok && err.contains("stays pending") && err.contains("TOKEN_ENCRYPTION_KEY"), "revoke: {err}");
    assert!(!err.contains(&access) && !err.contains(&refresh), "{err}");
    let pending: bool =
        sqlx::query_scalar("SELECT vendor_revoke_pending FROM vendor_connections WHERE vendor = 'OURA' AND vendor_user_id = $1")
            .bind(&vendor_user)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(pending, "the vendor revocation is pending");
    let (_, out, _) = cli(&["list", "--vendor", "oura", "--status", "revoked"], &[], "");
    assert!(out.lines().any(|line| line.contains(&vendor_user) && line.contains("revoked")), "{out}");
    let (_, out, _) = cli(&["list", "--status", "active"], &[], "");
    assert!(!out.contains(&vendor_user), "no longer active: {out}");
    let active: bool = sqlx::query_scalar("SELECT active FROM identity_links WHERE vendor = 'OURA' AND vendor_user_id = $1")
        .bind(&vendor_user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(active, "revoking the connection keeps the identity link");

    let (ok, _, err) = cli(&["revoke", "--vendor", "oura", "--vendor-user", &helpers::unique("nobody")], &[], "");
    assert!(!ok && err.contains("no oura connection"), "{err}");
    let (ok, _, err) = cli(&["add", "--vendor", "oura", "--user", &user, "--vendor-user", &vendor_user], &[], &json);
    assert!(!ok && err.contains("TOKEN_ENCRYPTION_KEY"), "add needs the key: {err}");
    let bad = format!(r#"{{"refresh_token":"{refresh}"}}"#);
    let (ok, out, err) = cli(&["add", "--vendor", "oura", "--user", &user, "--vendor-user", &vendor_user], &env, &bad);
    assert!(!ok && err.contains("access_token") && !err.contains(&refresh) && !out.contains(&refresh), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_racing_on_an_expired_oura_token_refresh_it_once() {
    let sim = VendorSim::start();
    let key = helpers::random_key();
    let user = helpers::unique("user");
    let (vendor_user, old_access, old_refresh) = connected_user(&sim, &key, &user, -10).await;
    let before = store(&key).await.get(Vendor::Oura, &vendor_user).await.unwrap().unwrap().token_version;
    // Slow token answers, so the second processor asks while the first one's refresh is in flight.
    sim.set_token_delay(SimVendor::Oura, Duration::from_millis(700));

    // Two processors: separate stores (pools), separate Redis connections, separate lock tables.
    let first = AccessTokens::new(store(&key).await, oura_clients(&sim), redis().await, Duration::from_secs(15));
    let second = AccessTokens::new(store(&key).await, oura_clients(&sim), redis().await, Duration::from_secs(15));
    let mut tasks = Vec::new();
    for index in 0..6 {
        let tokens = if index % 2 == 0 { first.clone() } else { second.clone() };
        let vendor_user = vendor_user.clone();
        tasks.push(tokio::spawn(async move { tokens.access_token(Vendor::Oura, &vendor_user).await }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().expect("every task gets a token"));
    }

    assert_eq!(sim.refreshes(SimVendor::Oura, &vendor_user), 1, "exactly one refresh reached the vendor");
    assert_eq!(sim.failed_refreshes(SimVendor::Oura, &vendor_user), 0, "the single-use refresh token was never spent twice");
    let new = &results[0];
    assert!(results.iter().all(|token| token == new), "everybody got the same new token");
    assert_ne!(new.token.expose(), old_access);
    assert_eq!((new.user_id.as_str(), new.version), (user.as_str(), before + 1));
    // The new token works, and the stored refresh token is the new one.
    let clients = oura_clients(&sim);
    assert_eq!(clients.get(Vendor::Oura).unwrap().vendor_user_id(&new.token).await.unwrap(), vendor_user);
    let stored = store(&key).await.get(Vendor::Oura, &vendor_user).await.unwrap().unwrap();
    assert_ne!(stored.refresh_token.unwrap().expose(), old_refresh);
    assert!(stored.expires_at.unwrap() > Utc::now() + chrono::Duration::hours(23));
    let lock: Option<String> =
        redis::cmd("GET").arg(format!("bb:oauth-refresh:OURA:{vendor_user}")).query_async(&mut redis().await).await.unwrap();
    assert_eq!(lock, None, "the lock was released");

    // A fresh token is handed out without another refresh.
    assert_eq!(&second.access_token(Vendor::Oura, &vendor_user).await.unwrap(), new);
    assert_eq!(sim.refreshes(SimVendor::Oura, &vendor_user), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_401_the_token_is_refreshed_once_for_all_callers() {
    let sim = VendorSim::start();
    let key = helpers::random_key();
    let (vendor_user, access, _) = connected_user(&sim, &key, "user-401", 3600).await;
    let tokens = AccessTokens::new(store(&key).await, oura_clients(&sim), redis().await, Duration::from_secs(15));
    let rejected = tokens.access_token(Vendor::Oura, &vendor_user).await.unwrap();
    assert_eq!(rejected.token.expose(), access, "not expiring: no refresh");
    sim.expire_access_tokens(SimVendor::Oura, &vendor_user);

    let renewed = tokens.after_unauthorized(Vendor::Oura, &vendor_user, &rejected).await.unwrap();
    assert_ne!(renewed.token, rejected.token);
    assert_eq!(renewed.version, rejected.version + 1);
    // A second caller that held the same rejected token gets the new one without a refresh.
    let again = tokens.after_unauthorized(Vendor::Oura, &vendor_user, &rejected).await.unwrap();
    assert_eq!(again, renewed);
    assert_eq!(sim.refreshes(SimVendor::Oura, &vendor_user), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_ends_needs_reauth() {
    let sim = VendorSim::start();
    let key = helpers::random_key();
    let (vendor_user, _, refresh) = connected_user(&sim, &key, "user-r", -10).await;
    let store = store(&key).await;
    sim.revoke_user(SimVendor::Oura, &vendor_user);

    let tokens = AccessTokens::new(store.clone(), oura_clients(&sim), redis().await, Duration::from_secs(15));
    let error = tokens.access_token(Vendor::Oura, &vendor_user).await.unwrap_err();
    assert!(matches!(&error, TokenError::NeedsReauth(reason) if reason.contains("invalid_grant")), "{error:?}");
    assert!(!format!("{error} {error:?}").contains(&refresh), "the error names no token");
    let connection = store.get(Vendor::Oura, &vendor_user).await.unwrap().unwrap();
    assert_eq!(connection.status, ConnectionStatus::NeedsReauth);
    assert!(connection.status_reason.unwrap().contains("invalid_grant"));
    assert_eq!(sim.failed_refreshes(SimVendor::Oura, &vendor_user), 1);

    // From now on nothing is sent to the vendor.
    assert_eq!(tokens.access_token(Vendor::Oura, &vendor_user).await, Err(TokenError::Inactive(ConnectionStatus::NeedsReauth)));
    assert_eq!(sim.failed_refreshes(SimVendor::Oura, &vendor_user), 1);
    assert_eq!(tokens.access_token(Vendor::Oura, &helpers::unique("nobody")).await, Err(TokenError::NoConnection));
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: IngressArgs,
}

/// An ingress whose Oura OAuth client points at the simulator (WHOOP has no client id: its
/// callback stays off).
async fn oauth_ingress(sim: &VendorSim, key: &str) -> (std::net::SocketAddr, CancellationToken) {
    let topic = raw_topic(1).await;
    let (token_url, api_base) = (sim.oura_token_url(), sim.oura_base());
    let argv = [
        "ingress",
        "--http-addr",
        "127.0.0.1:0",
        "--raw-topic",
        &topic,
        "--no-dedup",
        "--insecure-plaintext-at-rest",
        "--oura-client-id",
        sim.client_id(SimVendor::Oura),
        "--oura-token-url",
        &token_url,
        "--oura-api-base",
        &api_base,
        "--oauth-redirect-base",
        "https://bridge.example",
    ];
    let args = Wrapper::parse_from(argv).args;
    let vendors = VendorSecrets { oura: Some(Secret::new(sim.client_secret(SimVendor::Oura))), ..VendorSecrets::default() };
    let oauth = OAuthSecrets {
        token_encryption_key: Some(Secret::new(key)),
        state_secret: Some(Secret::new(STATE_SECRET)),
        // The token key's value serves as this test's pseudonym key too: both are 32 random bytes.
        pseudonym_key: Some(Secret::new(key)),
    };
    let ingress = Ingress::build_with_oauth(&args, vendors, oauth).await.expect("ingress builds");
    let addr = ingress.local_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(ingress.run_until_stopped(shutdown.clone()));
    (addr, shutdown)
}

/// The `state` of the URL `connections authorize-url` prints.
fn authorize_state(user: &str) -> String {
    let args = [
        "authorize-url",
        "--vendor",
        "oura",
        "--user",
        user,
        "--redirect-uri",
        "https://bridge.example/oauth/oura/callback",
        "--oura-client-id",
        "oura-client",
    ];
    let (ok, out, err) = cli(&args, &[("OAUTH_STATE_SECRET", STATE_SECRET)], "");
    assert!(ok, "authorize-url: {err}");
    let url = reqwest::Url::parse(out.trim()).expect("a URL");
    assert_eq!(url.host_str(), Some("cloud.ouraring.com"));
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "daily heartrate personal session workout spo2Daily");
    assert_eq!(query["redirect_uri"], "https://bridge.example/oauth/oura/callback");
    query["state"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_callback_stores_the_connection_and_its_identity_link() {
    biometric_bridge::connections::http::install_tls_provider();
    let sim = VendorSim::start();
    let key = helpers::random_key();
    let (addr, shutdown) = oauth_ingress(&sim, &key).await;
    let http = reqwest::Client::new();
    let callback = |vendor: &str, query: &[(&str, &str)]| {
        let request = http.get(format!("http://{addr}/oauth/{vendor}/callback")).query(query);
        async move { request.send().await.expect("the ingress answers") }
    };
    let (user, vendor_user, code) = (helpers::unique("user"), helpers::unique("oura-cb"), helpers::unique("code"));
    sim.add_auth_code(SimVendor::Oura, &code, &vendor_user);
    let state = authorize_state(&user);

    let response = callback("oura", &[("code", &code), ("state", &state)]).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "connected", "vendor": "oura", "user_id": user }));

    let connection = store(&key).await.get(Vendor::Oura, &vendor_user).await.unwrap().expect("connection stored");
    assert_eq!((connection.user_id.as_str(), connection.status), (user.as_str(), ConnectionStatus::Active));
    assert!(connection.refresh_token.is_some() && connection.expires_at.is_some());
    let clients = oura_clients(&sim);
    assert_eq!(clients.get(Vendor::Oura).unwrap().vendor_user_id(&connection.access_token).await.unwrap(), vendor_user);
    let linked: (String, bool) = sqlx::query_as("SELECT user_id, active FROM identity_links WHERE vendor = 'OURA' AND vendor_user_id = $1")
        .bind(&vendor_user)
        .fetch_one(&pool().await)
        .await
        .unwrap();
    assert_eq!(linked, (user.clone(), true));

    // The state is single use: replaying the callback URL, or pairing the state with another
    // code (another vendor account), is refused before any exchange.
    assert_error(callback("oura", &[("code", &code), ("state", &state)]).await, 401, "state_reused").await;
    let other_account = helpers::unique("oura-other");
    sim.add_auth_code(SimVendor::Oura, "code-other", &other_account);
    assert_error(callback("oura", &[("code", "code-other"), ("state", &state)]).await, 401, "state_reused").await;
    assert!(store(&key).await.get(Vendor::Oura, &other_account).await.unwrap().is_none());
    // The code is single use at the vendor: a fresh state with the used code is refused there.
    assert_error(callback("oura", &[("code", &code), ("state", &authorize_state(&user))]).await, 400, "invalid_grant").await;
    // A state whose payload was changed (another user), keeping the signature.
    let (payload, signature) = state.split_once('.').unwrap();
    let mut forged = payload.to_owned();
    forged.replace_range(..1, if forged.starts_with('e') { "f" } else { "e" });
    let tampered = format!("{forged}.{signature}");
    sim.add_auth_code(SimVendor::Oura, "code-2", &vendor_user);
    assert_error(callback("oura", &[("code", "code-2"), ("state", &tampered)]).await, 401, "invalid_state").await;
    assert_error(callback("oura", &[("code", "code-2")]).await, 401, "invalid_state").await;
    assert_error(callback("oura", &[("error", "access_denied"), ("state", &state)]).await, 400, "authorization_denied").await;
    assert_error(callback("oura", &[("state", &state)]).await, 400, "invalid_request").await;
    assert_error(callback("whoop", &[("code", "c"), ("state", &state)]).await, 404, "oauth_not_configured").await;
    assert_error(callback("fitbit", &[("code", "c"), ("state", &state)]).await, 404, "not_found").await;
    assert_eq!(sim.refreshes(SimVendor::Oura, &vendor_user), 0);

    // Every callback whose state verified is audited, by the user's pseudonym; forged or missing
    // states name nobody and are not.
    let pseudonym = biometric_bridge::audit::Pseudonymizer::from_secret(&Secret::new(key.clone())).unwrap().user(&user);
    let audited: Vec<(String, String, String, serde_json::Value)> =
        sqlx::query_as("SELECT actor, action, outcome, detail FROM audit_log WHERE subject = $1 ORDER BY id")
            .bind(&pseudonym)
            .fetch_all(&pool().await)
            .await
            .unwrap();
    let outcomes: Vec<(&str, &str, Option<&str>)> =
        audited.iter().map(|(actor, _, outcome, detail)| (actor.as_str(), outcome.as_str(), detail["error"].as_str())).collect();
    assert_eq!(
        outcomes,
        [
            ("oauth.callback", "ok", None),
            ("oauth.callback", "failed", Some("state_reused")),
            ("oauth.callback", "failed", Some("state_reused")),
            ("oauth.callback", "failed", Some("invalid_grant")),
        ],
        "{audited:?}"
    );
    assert!(audited.iter().all(|(_, action, _, _)| action == "oauth.callback"));
    shutdown.cancel();
}

/// Key rotation: tokens sealed under the old key are re-encrypted under the new one while both
/// are given, a refreshing process with both keys reads either, and afterwards the new key alone
/// opens them. (The database is shared: other tests' connections, under keys this test does not
/// have, are reported unreadable and left as they are.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_token_key_re_encrypts_every_token_readable_under_the_old_one() {
    let (old_key, new_key) = (helpers::random_key(), helpers::random_key());
    let (first, second) = (helpers::unique("rot-a"), helpers::unique("rot-b"));
    for vendor_user in [&first, &second] {
        let granted = tokens(&format!("at-{vendor_user}"), &format!("rt-{vendor_user}"), chrono::Duration::hours(1));
        store(&old_key).await.upsert(Vendor::Oura, vendor_user, "rot-user", &granted).await.unwrap();
    }
    // While rotating, a process given both keys reads the old tokens.
    let both = TokenCipher::from_secret(&Secret::new(new_key.clone())).unwrap().with_previous(&Secret::new(old_key.clone())).unwrap();
    let rotating = ConnectionStore::new(pool().await, both);
    assert_eq!(rotating.get(Vendor::Oura, &first).await.unwrap().unwrap().access_token.expose(), format!("at-{first}"));

    let env = [("TOKEN_ENCRYPTION_KEY", new_key.as_str()), ("TOKEN_ENCRYPTION_KEY_PREVIOUS", old_key.as_str())];
    let (_, out, err) = cli(&["rotate-key"], &env, "");
    assert!(out.contains("re-encrypted under the current key"), "{out}{err}");
    assert!(!out.contains(&first) && !out.contains(&second), "this test's rows are readable: {out}");
    for vendor_user in [&first, &second] {
        let connection = store(&new_key).await.get(Vendor::Oura, vendor_user).await.unwrap().expect("opens under the new key alone");
        assert_eq!(connection.access_token.expose(), format!("at-{vendor_user}"));
        assert_eq!(connection.refresh_token.unwrap().expose(), format!("rt-{vendor_user}"));
        assert!(store(&old_key).await.get(Vendor::Oura, vendor_user).await.is_err(), "no longer under the old key");
    }
    let audited: (String, serde_json::Value) =
        sqlx::query_as("SELECT actor, detail FROM audit_log WHERE action = 'key.rotate' ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool().await)
            .await
            .unwrap();
    assert!(audited.1["rewrapped"].as_u64().unwrap() >= 2, "{audited:?}");
    for vendor_user in [&first, &second] {
        sqlx::query("DELETE FROM vendor_connections WHERE vendor_user_id = $1").bind(vendor_user).execute(&pool().await).await.unwrap();
    }
}
