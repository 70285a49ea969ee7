//! `biometric-bridge`: parses the command line, sets up logging and runs one subcommand.

use anyhow::Context;
use biometric_bridge::cli::{Cli, Command, EventsCommand, SinkCommand, TokensCommand, TopicsCommand, TopologyCommand};
use biometric_bridge::kafka::admin::{TopicStatus, ensure_topics};
use biometric_bridge::shutdown::{CancellationToken, cancel_on_signal};
use biometric_bridge::{connections, dlq, events_tail, ingress, runtime, sink, telemetry, topology};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    connections::http::install_tls_provider();
    let cli = Cli::parse();
    let log_guard = telemetry::init(cli.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let json_logs = cli.log_format == telemetry::LogFormat::Json;
    let result = run(cli.command, shutdown).await;
    // Said once: as a JSON log line where logs are JSON (a collector parses every line), else as
    // one `error:` line after the logs are flushed.
    let message = result.as_ref().err().map(telemetry::describe_error);
    if let (Some(message), true) = (&message, json_logs) {
        tracing::error!(error = %message, "Exiting with an error.");
    }
    drop(log_guard); // flush buffered log lines before the final message
    match message {
        None => std::process::ExitCode::SUCCESS,
        Some(message) => {
            if !json_logs {
                eprintln!("error: {message}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Ingress(args) => ingress::run(args, shutdown).await,
        Command::Process(args) => runtime::run(args, shutdown).await,
        Command::Topics { command: TopicsCommand::Create { apply_configs, kafka, topology } } => {
            let topology = topology.load()?;
            let mut report = ensure_topics(&kafka, &topology.topics).await.context("creating topics")?;
            if apply_configs {
                let drifted: Vec<topology::TopicSpec> = report
                    .topics
                    .iter()
                    .filter(|(_, status)| matches!(status, TopicStatus::Drift(_)))
                    .filter_map(|(name, _)| topology.topic(name).cloned())
                    .collect();
                if !drifted.is_empty() {
                    biometric_bridge::kafka::admin::apply_configs(&kafka, &drifted).await?;
                    report = ensure_topics(&kafka, &topology.topics).await.context("checking topics")?;
                }
            }
            println!("cluster  {} broker(s)", report.brokers);
            let mut drifted = 0;
            for (name, status) in report.topics {
                match status {
                    TopicStatus::Created => println!("created  {name}"),
                    TopicStatus::Exists => println!("ok       {name}"),
                    TopicStatus::Drift(problems) => {
                        drifted += 1;
                        for problem in problems {
                            println!("DRIFT    {name}: {problem}");
                        }
                    }
                }
            }
            for warning in &report.warnings {
                println!("WARNING  {warning}");
            }
            if drifted > 0 {
                anyhow::bail!("{drifted} topic(s) differ from the topology; fix them by hand (partition counts cannot shrink)");
            }
            Ok(())
        }
        Command::Topology { command: TopologyCommand::Describe { topology, format } } => {
            print!("{}", topology::describe::describe(&topology.load()?, format));
            Ok(())
        }
        Command::Tokens { command } => tokens(command).await,
        Command::Sink { command: SinkCommand::Postgres(args) } => sink::postgres::run(args, shutdown).await,
        Command::Dlq { command } => dlq::run(command, shutdown).await,
        Command::Reconcile(args) => biometric_bridge::fetch::command::run(args, shutdown).await,
        Command::Evaluate(args) => biometric_bridge::signal::run(args),
        Command::Users { command } => biometric_bridge::signal::users::run(command).await,
        Command::Connections { command } => connections::cli::run(command).await,
        Command::Subscriptions { command } => connections::subscriptions_cli::run(command).await,
        Command::Audit { command } => biometric_bridge::audit::cli::run(command).await,
        Command::Keys { command } => biometric_bridge::at_rest::cli::run(command).await,
        Command::Events {
            command: EventsCommand::Tail { topics, from_beginning, max, idle_timeout_secs, since_ms, kafka, registry, topology },
        } => {
            let options = events_tail::TailOptions { from_beginning, max, idle_timeout_secs, since_ms };
            // The topology's event topics, namespaced as the processor that writes them is.
            let topics = if topics.is_empty() { topology.load()?.event_sinks } else { topics };
            events_tail::tail(&kafka, &registry, &topics, options, shutdown).await
        }
    }
}

async fn tokens(command: TokensCommand) -> anyhow::Result<()> {
    use biometric_bridge::audit::{self, Action, Actor, Entry, Pseudonymizer};
    use biometric_bridge::ingress::tokens;
    match command {
        TokensCommand::Issue { user, database } => {
            let pool = database.migrated_pool().await?;
            let pseudonyms = Pseudonymizer::from_env()?;
            let issued = tokens::issue(&pool, &user).await?;
            let entry =
                Entry::new(Actor::operator(), Action::TokenIssue).about(pseudonyms.as_ref(), &user).target(issued.token_id.to_string());
            audit::record_or_warn(&pool, &entry).await?;
            println!("token_id: {}", issued.token_id);
            println!("token:    {}", issued.token.expose());
            eprintln!("Store the token in the user's app now: it is not shown again.");
        }
        TokensCommand::Revoke { user, token_id, database } => {
            let pool = database.migrated_pool().await?;
            let pseudonyms = Pseudonymizer::from_env()?;
            let revoked = tokens::revoke(&pool, &user, token_id).await?;
            let entry = Entry::new(Actor::operator(), Action::TokenRevoke)
                .about(pseudonyms.as_ref(), &user)
                .target(token_id.map_or("all".to_owned(), |id| id.to_string()))
                .detail("revoked", revoked);
            audit::record_or_warn(&pool, &entry).await?;
            println!("revoked {revoked} token(s) of {user}");
        }
        TokensCommand::List { user, database } => {
            let pool = database.migrated_pool().await?;
            for token in tokens::list(&pool, &user).await? {
                let state = token.revoked_at.map_or("active".to_owned(), |at| format!("revoked {at}"));
                println!("{}  {}  created {}  {state}", token.token_id, token.user_id, token.created_at);
            }
        }
    }
    Ok(())
}
