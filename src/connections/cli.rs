//! `biometric-bridge connections add|list|revoke|authorize-url`: operators' view of connections.
//!
//! Tokens are never flags (flags show up in `ps` and shell history): `add` reads the token
//! endpoint's JSON answer on stdin, and no command prints a token.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::Subcommand;

use super::cipher::TokenCipher;
use super::oauth::{OAuthArgs, TokenSet, authorize_url};
use super::state;
use super::store::{self, ConnectionStatus, ConnectionStore, ConnectionSummary};
use crate::audit::{self, Action, Actor, Entry, Pseudonymizer};
use crate::config::DatabaseArgs;
use crate::event::Vendor;
use crate::secret::load_secret;

/// The largest token answer `add` reads: they are a few hundred bytes.
const MAX_STDIN_BYTES: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Store a connection: reads the token JSON (`access_token`, `refresh_token`, `expires_in`,
    /// `scope`) on stdin, never as flags. Also links the vendor user to our user.
    Add {
        /// oura or whoop.
        #[arg(long, value_parser = parse_vendor)]
        vendor: Vendor,
        /// Our user id.
        #[arg(long)]
        user: String,
        /// The vendor's id of the user.
        #[arg(long)]
        vendor_user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List connections (never their tokens).
    List {
        /// Only this vendor (oura or whoop).
        #[arg(long, value_parser = parse_vendor)]
        vendor: Option<Vendor>,
        /// Only this status (active, revoked, needs_reauth).
        #[arg(long, value_parser = parse_status)]
        status: Option<ConnectionStatus>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a connection: here at once (its tokens are no longer used; the identity link
    /// stays), then at the vendor (WHOOP `DELETE /v2/user/access`, Oura `/oauth/revoke`), which
    /// needs TOKEN_ENCRYPTION_KEY and the vendor's OAuth client. Exits non-zero while the vendor
    /// has not confirmed; `--retry-pending` tries every unconfirmed revocation again.
    Revoke {
        /// oura or whoop (with --vendor-user).
        #[arg(long, value_parser = parse_vendor, required_unless_present = "retry_pending")]
        vendor: Option<Vendor>,
        /// The vendor's id of the user.
        #[arg(long, required_unless_present = "retry_pending")]
        vendor_user: Option<String>,
        /// Why (shown by `list`).
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
        /// Retry every revocation the vendor has not confirmed yet.
        #[arg(long, conflicts_with_all = ["vendor", "vendor_user"])]
        retry_pending: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        oauth: crate::connections::OAuthArgs,
        #[command(flatten)]
        revoke: crate::connections::revoke::RevokeArgs,
    },
    /// Re-encrypt every stored token under TOKEN_ENCRYPTION_KEY, reading each under it or
    /// TOKEN_ENCRYPTION_KEY_PREVIOUS (give every process both keys first; drop the previous one
    /// after this reports none left under it).
    RotateKey {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print the URL that asks a user to connect their account, with a signed `state` valid 15
    /// minutes (needs OAUTH_STATE_SECRET and the vendor's client id).
    AuthorizeUrl {
        /// oura or whoop.
        #[arg(long, value_parser = parse_vendor)]
        vendor: Vendor,
        /// Our user id the connection will belong to.
        #[arg(long)]
        user: String,
        /// The callback URL registered with the vendor: `<OAUTH_REDIRECT_BASE>/oauth/<vendor>/callback`.
        #[arg(long)]
        redirect_uri: String,
        #[command(flatten)]
        oauth: OAuthArgs,
    },
}

pub(crate) fn parse_vendor(text: &str) -> Result<Vendor, String> {
    match Vendor::from_slug(text.trim()) {
        Some(vendor @ (Vendor::Oura | Vendor::Whoop)) => Ok(vendor),
        _ => Err("expected oura or whoop".to_owned()),
    }
}

fn parse_status(text: &str) -> Result<ConnectionStatus, String> {
    ConnectionStatus::parse(text).ok_or_else(|| "expected active, revoked or needs_reauth".to_owned())
}

pub async fn run(command: ConnectionsCommand) -> anyhow::Result<()> {
    match command {
        ConnectionsCommand::Add { vendor, user, vendor_user, database } => {
            let cipher = TokenCipher::from_env()?;
            let pseudonyms = Pseudonymizer::from_env()?;
            let tokens = read_tokens()?;
            let pool = database.migrated_pool().await?;
            let store = ConnectionStore::new(pool.clone(), cipher);
            store.upsert(vendor, &vendor_user, &user, &tokens).await.context("storing the connection")?;
            let entry = Entry::new(Actor::operator(), Action::ConnectionAdd).about(pseudonyms.as_ref(), &user).target(vendor.slug());
            audit::record_or_warn(&pool, &entry).await?;
            let expires = tokens.expires_at.map_or("unknown".to_owned(), |at| at.to_rfc3339());
            let refresh = if tokens.refresh_token.is_some() { "with" } else { "without" };
            println!("connected {} user {vendor_user} to {user} ({refresh} refresh token, expires {expires})", vendor.slug());
        }
        ConnectionsCommand::List { vendor, status, database } => {
            let pool = database.migrated_pool().await?;
            print!("{}", table(&store::list(&pool, vendor, status).await?));
        }
        ConnectionsCommand::Revoke { vendor, vendor_user, reason, retry_pending, database, oauth, revoke } => {
            use crate::connections::revoke::{self, Revoked, Revoker};
            let pool = database.migrated_pool().await?;
            let pseudonyms = Pseudonymizer::from_env()?;
            let mut user = None;
            if !retry_pending {
                // Here first, whatever else is missing: from now on no token of this connection is
                // used, even if the vendor cannot be told yet.
                let (vendor, vendor_user) = (vendor.expect("required by clap"), vendor_user.as_deref().expect("required by clap"));
                let Some(user_id) = revoke::mark_revoked(&pool, vendor, vendor_user, &reason).await? else {
                    anyhow::bail!("no {} connection for vendor user {vendor_user}", vendor.slug());
                };
                let entry = Entry::new(Actor::operator(), Action::ConnectionRevoke)
                    .about(pseudonyms.as_ref(), &user_id)
                    .target(vendor.slug())
                    .detail("step", "revoked_here");
                audit::record_or_warn(&pool, &entry).await?;
                user = Some(user_id);
            }
            let cipher = TokenCipher::from_env().context(
                "revoking at the vendor needs the connection's token; the vendor revocation stays pending and is retried by the \
                 processor's scheduled reconciliation",
            )?;
            let store = ConnectionStore::new(pool.clone(), cipher);
            let revoker = Revoker::new(&revoke, &oauth.whoop_api_base, oauth.clients()?)?;
            if retry_pending {
                let (confirmed, still) = revoke::retry_pending(&revoker, &store, &pool).await?;
                let entry = Entry::new(Actor::operator(), Action::ConnectionRevoke)
                    .target("retry-pending")
                    .detail("confirmed", confirmed)
                    .detail("still_pending", still.len());
                let entry = if still.is_empty() { entry } else { entry.failed("vendor_unconfirmed") };
                audit::record_or_warn(&pool, &entry).await?;
                println!("{confirmed} vendor revocation(s) confirmed, {} still pending", still.len());
                for (vendor, user, reason) in &still {
                    println!("pending {} user {user}: {reason}", vendor.slug());
                }
                anyhow::ensure!(still.is_empty(), "{} vendor revocation(s) still pending; they are retried later", still.len());
                return Ok(());
            }
            let (vendor, vendor_user) = (vendor.expect("required by clap"), vendor_user.expect("required by clap"));
            let outcome = revoker.revoke(&store, vendor, &vendor_user).await?;
            revoke::record(&pool, vendor, &vendor_user, &outcome).await?;
            let entry = Entry::new(Actor::operator(), Action::ConnectionRevoke)
                .about(pseudonyms.as_ref(), user.as_deref().expect("set above"))
                .target(vendor.slug())
                .detail("step", "revoked_at_vendor");
            let entry = if matches!(outcome, Revoked::Confirmed) { entry } else { entry.failed("vendor_unconfirmed") };
            audit::record_or_warn(&pool, &entry).await?;
            match outcome {
                Revoked::Confirmed => println!("revoked {} user {vendor_user} here and at {}", vendor.slug(), vendor.slug()),
                Revoked::Pending(reason) => anyhow::bail!(
                    "revoked {} user {vendor_user} here, but {} did not confirm ({reason}): the authorization is still granted there. \
                     It is retried by `connections revoke --retry-pending` and the processor's scheduled reconciliation.",
                    vendor.slug(),
                    vendor.slug()
                ),
            }
        }
        ConnectionsCommand::RotateKey { database } => {
            let cipher = TokenCipher::from_env()?;
            let pool = database.migrated_pool().await?;
            let result = super::rotate::rotate(&pool, &cipher).await;
            let entry = Entry::new(Actor::operator(), Action::KeyRotate).target("TOKEN_ENCRYPTION_KEY");
            let entry = match &result {
                Ok(rotation) => {
                    let entry = entry.detail("rewrapped", rotation.rewrapped).detail("current", rotation.current);
                    let entry = entry.detail("unreadable", rotation.unreadable.len());
                    if rotation.unreadable.is_empty() { entry } else { entry.failed("unreadable_tokens") }
                }
                Err(_) => entry.failed("rotation_failed"),
            };
            audit::record_or_warn(&pool, &entry).await?;
            let rotation = result?;
            println!("{} connection(s) re-encrypted under the current key, {} already were", rotation.rewrapped, rotation.current);
            for row in &rotation.unreadable {
                println!("unreadable under either key: {row} (reconnect it)");
            }
            anyhow::ensure!(rotation.unreadable.is_empty(), "{} connection(s) open under neither key", rotation.unreadable.len());
        }
        ConnectionsCommand::AuthorizeUrl { vendor, user, redirect_uri, oauth } => {
            let secret = load_secret(state::STATE_SECRET)?.context("OAUTH_STATE_SECRET (or OAUTH_STATE_SECRET_FILE) is not set")?;
            let client_id = oauth.client_id(vendor).with_context(|| format!("--{}-client-id is not set", vendor.slug()))?;
            let state = state::sign(&secret, &user, vendor, chrono::Utc::now().timestamp());
            let url = authorize_url(vendor, client_id, &redirect_uri, &state).context("building the authorize URL")?;
            println!("{url}");
            eprintln!("Valid for {} minutes.", state::VALIDITY.num_minutes());
        }
    }
    Ok(())
}

/// The token JSON on stdin.
fn read_tokens() -> anyhow::Result<TokenSet> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Paste the token JSON, then Ctrl-D:");
    }
    let mut body = Vec::new();
    stdin.lock().take(MAX_STDIN_BYTES).read_to_end(&mut body).context("reading the token JSON on stdin")?;
    TokenSet::from_response(&body, chrono::Utc::now()).context("the token JSON on stdin")
}

/// Connections as an aligned table.
pub fn table(connections: &[ConnectionSummary]) -> String {
    let header = ["VENDOR", "VENDOR_USER", "USER", "STATUS", "EXPIRES", "UPDATED", "SCOPES", "REASON"].map(str::to_owned);
    let rows: Vec<[String; 8]> = std::iter::once(header)
        .chain(connections.iter().map(|connection| {
            [
                connection.vendor.slug().to_owned(),
                connection.vendor_user_id.clone(),
                connection.user_id.clone(),
                connection.status.to_string(),
                connection.expires_at.map_or("-".to_owned(), time),
                time(connection.updated_at),
                connection.scopes.clone().unwrap_or_else(|| "-".to_owned()),
                connection.status_reason.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        }))
        .collect();
    aligned(&rows)
}

/// A time as the operator tables show it.
pub(crate) fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Rows of cells as left-aligned columns two spaces apart, one line a row.
pub(crate) fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oauth_vendors_are_accepted() {
        assert_eq!(parse_vendor("oura"), Ok(Vendor::Oura));
        assert_eq!(parse_vendor("whoop"), Ok(Vendor::Whoop));
        assert!(parse_vendor("terra").is_err());
        assert_eq!(parse_status("needs_reauth"), Ok(ConnectionStatus::NeedsReauth));
    }

    #[test]
    fn the_table_is_aligned() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let summary = ConnectionSummary {
            vendor: Vendor::Oura,
            vendor_user_id: "oura-1".into(),
            user_id: "user-1".into(),
            expires_at: Some(at),
            scopes: Some("daily".into()),
            status: ConnectionStatus::Active,
            status_reason: None,
            updated_at: at,
        };
        let text = table(&[summary]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("VENDOR  VENDOR_USER  USER    STATUS"), "{text}");
        assert!(lines[1].starts_with("oura    oura-1       user-1  active"), "{text}");
        assert!(lines[1].contains("2027-01-15 08:00:00Z"), "{text}");
    }
}
