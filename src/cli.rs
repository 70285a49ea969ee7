//! The command line: one binary, `biometric-bridge`, with a subcommand per job.

use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, KafkaArgs, RegistryArgs};
use crate::ingress::IngressArgs;
use crate::runtime::ProcessArgs;
use crate::telemetry::LogFormat;
use crate::topology::TopologyArgs;
use crate::topology::describe::Format;

/// Wearable webhooks in, clean exactly-once Kafka biometric event streams out.
#[derive(Debug, Parser)]
#[command(name = "biometric-bridge", version, about, long_about = None)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Secrets are never flags (a flag shows in `ps` and shell history): each comes from its variable
/// or from the file its `_FILE` variable names.
macro_rules! kafka_secrets {
    () => {
        "  KAFKA_SASL_PASSWORD[_FILE]        SASL password of KAFKA_SASL_USERNAME
  KAFKA_SSL_KEY_PASSWORD[_FILE]     passphrase of KAFKA_SSL_KEY_LOCATION"
    };
}

const INGRESS_SECRETS: &str = concat!(
    "Secrets (environment only; NAME or NAME_FILE):
  TERRA_SIGNING_SECRET[_FILE]       Terra webhook signing secret
  OURA_CLIENT_SECRET[_FILE]         Oura webhook signatures and OAuth
  OURA_VERIFICATION_TOKEN[_FILE]    Oura subscription verification
  WHOOP_CLIENT_SECRET[_FILE]        WHOOP webhook signatures and OAuth
  TOKEN_ENCRYPTION_KEY[_FILE]       encrypts stored OAuth tokens (64 hex characters)
  OAUTH_STATE_SECRET[_FILE]         signs the OAuth callback's state
  PSEUDONYM_KEY[_FILE]              names people in the audit log by keyed pseudonym (64 hex)
  DATA_ENCRYPTION_KEY[_FILE]        wraps the per-user keys sealing webhooks at rest (64 hex)
",
    kafka_secrets!()
);

const PROCESS_SECRETS: &str = concat!(
    "Secrets (environment only; NAME or NAME_FILE):
  TOKEN_ENCRYPTION_KEY[_FILE]       decrypts stored OAuth tokens for the fetch stage
  TOKEN_ENCRYPTION_KEY_PREVIOUS[_FILE]  during a key rotation: the old key, read only
  DATA_ENCRYPTION_KEY[_FILE]        opens sealed records (and _PREVIOUS during a rotation)
  OURA_CLIENT_SECRET[_FILE]         Oura token refresh
  WHOOP_CLIENT_SECRET[_FILE]        WHOOP token refresh
  TERRA_API_KEY[_FILE]              Terra API (large requests, reconciliation)
  SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO[_FILE]  <key>:<secret> for the registry
",
    kafka_secrets!()
);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP ingress: verify vendor webhooks, write them durably to `raw-webhooks`.
    #[command(after_long_help = INGRESS_SECRETS)]
    Ingress(IngressArgs),
    /// Run the exactly-once stream processor.
    #[command(after_long_help = PROCESS_SECRETS)]
    Process(ProcessArgs),
    /// Manage the topics the topology needs.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Inspect the topology.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Manage Apple Health upload tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Read output events, decoded through the schema registry, as JSON lines.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Run a sink that copies output events elsewhere, exactly once.
    Sink {
        #[command(subcommand)]
        command: SinkCommand,
    },
    /// List Oura / WHOOP records of a recent window and fetch those whose webhook never came.
    Reconcile(crate::fetch::command::ReconcileArgs),
    /// Inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        command: crate::dlq::DlqCommand,
    },
    /// Manage users' OAuth connections to Oura and WHOOP.
    Connections {
        #[command(subcommand)]
        command: crate::connections::cli::ConnectionsCommand,
    },
    /// Run the HRV triggers over synthetic cohorts with known episodes and score each rule
    /// (recall, false alarms per user-month, precision, delay). Needs no broker.
    Evaluate(crate::signal::EvaluateArgs),
    /// One person's data: `users chart` draws their nights and triggers; `users erase` removes it.
    Users {
        #[command(subcommand)]
        command: crate::signal::users::UsersCommand,
    },
    /// Read the audit log: who did what to whose data, when, and the outcome.
    Audit {
        #[command(subcommand)]
        command: crate::audit::cli::AuditCommand,
    },
    /// Manage the per-user data keys that seal health data at rest in Kafka.
    Keys {
        #[command(subcommand)]
        command: crate::at_rest::cli::KeysCommand,
    },
    /// Manage the app's Oura webhook subscriptions (run `subscriptions ensure` daily from cron).
    Subscriptions {
        #[command(subcommand)]
        command: crate::connections::subscriptions_cli::SubscriptionsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Write output events to the PostgreSQL table `biometric_events`, exactly once.
    Postgres(crate::sink::postgres::SinkArgs),
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every topic the topology needs; report drift of existing ones as an error.
    Create {
        /// Set the topology's topic configs on existing topics that differ (AlterConfigs).
        /// Partition-count drift is still an error.
        #[arg(long)]
        apply_configs: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topology: TopologyArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Print the topology's DAG: sub-topologies, processors, stores, sinks.
    Describe {
        #[command(flatten)]
        topology: TopologyArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token for a user; it is printed once and only its hash is stored.
    Issue {
        /// Our user id the token uploads for.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a user's tokens (all, or one with --token-id).
    Revoke {
        /// Our user id whose tokens are revoked.
        #[arg(long)]
        user: String,
        /// Revoke only this token (its id, from `tokens issue` or `tokens list`); default: all.
        #[arg(long)]
        token_id: Option<uuid::Uuid>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a user's tokens (ids and dates; never the tokens).
    List {
        /// Our user id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print committed events of a topic (read_committed), decoded, one JSON object per line.
    ///
    /// Runs until interrupted unless --max or --idle-timeout-secs is given.
    Tail {
        /// Topics to read (repeatable). Default: the topology's event topics
        /// (terra-biometric-events, biometric-events, with TOPOLOGY_NAMESPACE's suffix).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Start from the beginning of the topics (else only new events).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds without a new event (default: never).
        #[arg(long)]
        idle_timeout_secs: Option<u64>,
        /// Skip records older than this (Kafka timestamp, ms since the epoch).
        #[arg(long)]
        since_ms: Option<i64>,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        topology: TopologyArgs,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every flag of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "biometric-bridge", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }

    #[test]
    fn the_secret_variables_are_named_in_help() {
        let mut command = super::Cli::command();
        let ingress = command.find_subcommand_mut("ingress").unwrap().render_long_help().to_string();
        for name in ["TERRA_SIGNING_SECRET", "OURA_CLIENT_SECRET", "WHOOP_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEY", "KAFKA_SASL_PASSWORD"] {
            assert!(ingress.contains(name), "ingress --help names {name}");
        }
        let process = command.find_subcommand_mut("process").unwrap().render_long_help().to_string();
        for name in ["TOKEN_ENCRYPTION_KEY", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "KAFKA_SASL_PASSWORD"] {
            assert!(process.contains(name), "process --help names {name}");
        }
    }

    #[test]
    fn help_never_shows_secret_values() {
        // SAFETY: tests in this module do not read these variables concurrently.
        unsafe {
            std::env::set_var("DATABASE_URL", "postgres://u:topsecretpw@h/db");
            std::env::set_var("REDIS_URL", "redis://:topsecretpw@h");
        }
        let mut command = super::Cli::command();
        for sub in ["ingress", "process"] {
            let help = command.find_subcommand_mut(sub).unwrap().render_long_help().to_string();
            assert!(!help.contains("topsecretpw"), "{sub} --help leaks: {help}");
            assert!(help.contains("DATABASE_URL"), "{sub} --help documents DATABASE_URL");
        }
    }
}
