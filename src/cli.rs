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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP ingress: verify vendor webhooks, write them durably to `raw-webhooks`.
    Ingress(IngressArgs),
    /// Run the exactly-once stream processor.
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
        #[arg(long)]
        user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a user's tokens (all, or one with --token-id).
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        token_id: Option<uuid::Uuid>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a user's tokens (ids and dates; never the tokens).
    List {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print committed events of a topic (read_committed), decoded, one JSON object per line.
    Tail {
        /// Topics to read.
        #[arg(long = "topic", default_values_t = ["terra-biometric-events".to_owned(), "biometric-events".to_owned()])]
        topics: Vec<String>,
        /// Start from the beginning of the topics (else only new events).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds without a new event.
        #[arg(long)]
        idle_timeout_secs: Option<u64>,
        /// Skip records older than this (Kafka timestamp, ms since the epoch).
        #[arg(long)]
        since_ms: Option<i64>,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
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
