//! The audit log (table `audit_log`, append-only): who did what to whose data, when, and how it
//! went: erasures, key rotations, token issue and revoke, connection add and revoke, OAuth
//! callbacks, DLQ replays and retention deletes. An action that cannot be audited is refused where that is possible (the
//! database is checked before a DLQ replay), and reported as a failure where it already happened.
//!
//! What goes in is ids only: the person as a keyed pseudonym ([`pseudonym`]), the target as a
//! token id, a vendor or a topic, the detail as counts and error classes. Never a token, a
//! vendor user id, or a value measured on a person.
//!
//! - `pseudonym.rs`: the keyed pseudonym of a user id;
//! - `cli.rs`: `audit list`.

pub mod cli;
pub mod pseudonym;

use sqlx::PgPool;

pub use pseudonym::Pseudonymizer;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person running a command: their OS user (`$USER` / `$LOGNAME`).
    Operator(String),
    /// A request to our HTTP API, by route.
    Api(&'static str),
    /// One of our services acting on its own (e.g. the sink's retention job).
    Service(String),
}

impl Actor {
    /// The operator running this process.
    pub fn operator() -> Actor {
        let name = ["USER", "LOGNAME"].iter().find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()));
        Actor::Operator(name.unwrap_or_else(|| "unknown".to_owned()))
    }

    fn kind(&self) -> &'static str {
        match self {
            Actor::Operator(_) => "operator",
            Actor::Api(_) => "api",
            Actor::Service(_) => "service",
        }
    }

    fn name(&self) -> &str {
        match self {
            Actor::Operator(name) | Actor::Service(name) => name,
            Actor::Api(route) => route,
        }
    }
}

/// What was done. The codes are stable: dashboards and auditors filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    #[value(name = "token.issue")]
    TokenIssue,
    #[value(name = "token.revoke")]
    TokenRevoke,
    #[value(name = "connection.add")]
    ConnectionAdd,
    #[value(name = "connection.revoke")]
    ConnectionRevoke,
    #[value(name = "oauth.callback")]
    OAuthCallback,
    #[value(name = "dlq.replay")]
    DlqReplay,
    #[value(name = "retention.delete")]
    RetentionDelete,
    #[value(name = "user.erase")]
    Erase,
    #[value(name = "key.rotate")]
    KeyRotate,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::TokenIssue => "token.issue",
            Action::TokenRevoke => "token.revoke",
            Action::ConnectionAdd => "connection.add",
            Action::ConnectionRevoke => "connection.revoke",
            Action::OAuthCallback => "oauth.callback",
            Action::DlqReplay => "dlq.replay",
            Action::RetentionDelete => "retention.delete",
            Action::Erase => "user.erase",
            Action::KeyRotate => "key.rotate",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    /// The person, already pseudonymized ([`Entry::about`]).
    pub subject: Option<String>,
    pub target: Option<String>,
    pub ok: bool,
    /// Counts and error classes only.
    pub detail: serde_json::Value,
}

impl Entry {
    pub fn new(actor: Actor, action: Action) -> Entry {
        Entry { actor, action, subject: None, target: None, ok: true, detail: serde_json::json!({}) }
    }

    /// The person acted on, as `pseudonyms` makes them (none without a key: then the entry says
    /// so, rather than holding the raw id).
    pub fn about(mut self, pseudonyms: Option<&Pseudonymizer>, user_id: &str) -> Entry {
        match pseudonyms {
            Some(pseudonyms) => self.subject = Some(pseudonyms.user(user_id)),
            None => self.detail["subject"] = "not recorded: PSEUDONYM_KEY is not set".into(),
        }
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Entry {
        self.target = Some(target.into());
        self
    }

    pub fn failed(mut self, class: &str) -> Entry {
        self.ok = false;
        self.detail["error"] = class.into();
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Entry {
        self.detail[key] = value.into();
        self
    }
}

/// Appends `entry`.
pub async fn record(pool: &PgPool, entry: &Entry) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO audit_log (actor_kind, actor, action, subject, target, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(entry.actor.kind())
        .bind(entry.actor.name())
        .bind(entry.action.code())
        .bind(&entry.subject)
        .bind(&entry.target)
        .bind(if entry.ok { "ok" } else { "failed" })
        .bind(&entry.detail)
        .execute(pool)
        .await?;
    Ok(())
}

/// [`record`] for an action that already happened: a failure to audit is logged loudly and
/// returned, so the command exits non-zero and its operator knows the trail has a gap.
pub async fn record_or_warn(pool: &PgPool, entry: &Entry) -> anyhow::Result<()> {
    record(pool, entry).await.map_err(|error| {
        tracing::error!(%error, action = entry.action.code(), "Writing the audit record failed; the action was done.");
        anyhow::anyhow!("the action was done, but its audit record could not be written: {error}")
    })
}

/// One row of the log, as read back.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Row {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor_kind: String,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: serde_json::Value,
}

/// Which rows `audit list` reads.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subject: Option<String>,
    pub action: Option<Action>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub failed_only: bool,
    pub limit: i64,
}

/// The newest `filter.limit` rows that match, oldest first.
pub async fn list(pool: &PgPool, filter: &Filter) -> sqlx::Result<Vec<Row>> {
    let mut rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, actor_kind, actor, action, subject, target, outcome, detail FROM audit_log
         WHERE ($1::text IS NULL OR subject = $1)
           AND ($2::text IS NULL OR action = $2)
           AND ($3::timestamptz IS NULL OR at >= $3)
           AND (NOT $4 OR outcome = 'failed')
         ORDER BY id DESC LIMIT $5",
    )
    .bind(&filter.subject)
    .bind(filter.action.map(Action::code))
    .bind(filter.since)
    .bind(filter.failed_only)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_code_is_its_command_line_name() {
        use clap::ValueEnum;
        for action in Action::value_variants() {
            assert_eq!(action.to_possible_value().unwrap().get_name(), action.code());
        }
    }

    #[test]
    fn without_a_key_an_entry_holds_no_subject_and_says_why() {
        let entry = Entry::new(Actor::Api("oauth.callback"), Action::OAuthCallback).about(None, "user-42");
        assert_eq!(entry.subject, None);
        assert!(!entry.detail.to_string().contains("user-42"));
        assert!(entry.detail["subject"].as_str().unwrap().contains("PSEUDONYM_KEY"));
        let key = Pseudonymizer::from_secret(&crate::secret::Secret::new("33".repeat(32))).unwrap();
        let entry = Entry::new(Actor::operator(), Action::TokenIssue).about(Some(&key), "user-42").failed("database");
        assert_eq!(entry.subject.as_deref(), Some(key.user("user-42").as_str()));
        assert!(!entry.ok && entry.detail["error"] == "database");
    }
}
