//! `biometric-bridge sink postgres`: the exactly-once history sink. Reads the output event topics
//! (`topology.event_sinks`) read_committed and keeps table `biometric_events` (one row per event
//! id) in step with them.
//!
//! Exactly once without Kafka transactions on this side: each batch's rows *and* the consumer
//! offsets that produced them are written in one PostgreSQL transaction (table `sink_offsets`),
//! and at start the consumer is positioned from that table, never from Kafka's committed offsets.
//! A crash therefore leaves either the whole batch with its offsets or neither; the rows are
//! upserts on `event_id`, so even a record read twice would not double a row.
//!
//! - `consumer.rs`: the Kafka consumer and its manual assignment (and why not a subscription);
//! - `decode.rs`: value -> row, and which failures skip a record vs. wait for the registry;
//! - `rows.rs`: the event -> row mapping; `batch.rs`: the open batch and its offsets;
//! - `write.rs` + `offsets.rs`: the database transaction and the fencing of a second writer;
//! - `worker.rs`: the loop — batches, outage pauses, shutdown.

mod batch;
mod consumer;
mod decode;
mod offsets;
pub mod retention;
pub mod rows;
mod worker;
mod write;

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{DatabaseArgs, KafkaArgs, RegistryArgs};
use crate::shutdown::CancellationToken;
use crate::topology::TopologyArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,

    /// The sink's name: its key in `sink_offsets` and its Kafka group / client id. Two sinks
    /// with different names each get every event; one name must be run by one instance at a time
    /// (a second one is fenced, not trusted). Default: `<application_id>-postgres-sink`.
    #[arg(long, env = "SINK_NAME")]
    pub sink_name: Option<String>,

    /// Write a batch once it holds this many records...
    #[arg(long, env = "SINK_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// ...or once its first record is this old, milliseconds, whichever comes first.
    #[arg(long, env = "SINK_BATCH_MS", default_value_t = 200)]
    pub batch_ms: u64,

    /// Where to serve `GET /metrics`.
    #[arg(long, env = "SINK_METRICS_ADDR", default_value = "0.0.0.0:9465")]
    pub metrics_addr: SocketAddr,

    /// Delete history rows measured longer ago than this (`365d`, `36h`), hourly, each sweep
    /// audited. Off unless set: how long history is kept is the operator's decision.
    #[arg(long, env = "SINK_RETENTION", value_parser = retention::parse_retention)]
    pub retention: Option<Duration>,
}

/// Retry delays for an unavailable dependency: 250 ms, doubling, at most 30 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: Duration::from_millis(250) }
    }

    /// Counts the retry, waits the next delay; `false` when shut down meanwhile.
    async fn wait(&mut self, dependency: &str, shutdown: &CancellationToken) -> bool {
        crate::metrics::INFRA_RETRIES.with_label_values(&[dependency]).inc();
        let delay = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    fn delay_ms(&self) -> u64 {
        self.next.as_millis() as u64
    }
}

/// `biometric-bridge sink postgres`: runs until shutdown (exit 0) or a startup error.
pub async fn run(args: SinkArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = args.topology.load()?;
    let sink = args.sink_name.clone().unwrap_or_else(|| format!("{}-postgres-sink", topology.application_id));
    tracing::info!(sink = %sink, topics = ?topology.event_sinks, "Starting the PostgreSQL sink.");
    crate::metrics::init(crate::metrics::Component::Sink);
    let readiness = crate::startup::Readiness::new(crate::startup::Readiness::READY);
    let metrics = tokio::spawn(crate::metrics::serve(args.metrics_addr, shutdown.clone(), readiness));

    let settings = worker::Settings {
        sink,
        topics: topology.event_sinks.clone(),
        batch_size: args.batch_size as usize,
        batch_wait: Duration::from_millis(args.batch_ms.max(1)),
    };
    let name = settings.sink.clone();
    let mut retention = None;
    let result = match worker::Worker::start(&args, settings, &shutdown).await? {
        Some(worker) => {
            // Started once the worker has migrated the table it deletes from.
            if let Some(keep) = args.retention {
                retention = Some(tokio::spawn(retention::run(args.database.pool()?, keep, name, shutdown.clone())));
            }
            worker.run(&shutdown).await
        }
        None => Ok(()), // shut down while starting
    };
    shutdown.cancel();
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    if let Ok(Err(error)) = metrics.await {
        tracing::warn!(%error, "Metrics server stopped with an error.");
    }
    result
}
