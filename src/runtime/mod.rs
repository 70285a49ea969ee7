//! The streaming runtime of `biometric-bridge process`: a Kafka Streams-style exactly-once
//! consume-transform-produce loop, apart from the business logic it runs (`processor/`).
//!
//! - `engine.rs`: the transactional producer, the open transaction, commit / abort / rewind;
//! - `context.rs`: rebalances (commit on revoke, abort when lost, co-assigned repartition
//!   partitions, store restore on assign) and consumer-lag statistics;
//! - `eos.rs`: the loop on its own thread, with outage pauses and shutdown;
//! - `task.rs` + `store.rs`: per-partition tasks and their changelog-backed stores;
//! - `identities.rs`: blocking PostgreSQL identity lookups for the loop's thread;
//! - `fetching.rs`: the fetch stage's concurrent vendor API calls, written back in offset order.

mod context;
mod engine;
mod eos;
mod fetching;
mod identities;
mod lag;
pub mod store;
mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs, RegistryArgs};
use crate::connections::OAuthArgs;
use crate::fetch::FetchArgs;
use crate::fetch::reconcile::Reconciler;
use crate::identity::IdentityMap;
use crate::processor::{Pipeline, TopicLimits};
use crate::shutdown::CancellationToken;
use crate::topology::TopologyArgs;
use context::RuntimeContext;
use engine::{Cadence, Engine};
use identities::BlockingIdentities;

#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,

    /// This instance's stable id: its transactional.id and static group membership are
    /// `<application_id>-<instance id>`. A restarted instance must keep its id, so it fences its
    /// crashed predecessor at once; two live instances must not share one. Default: the host name.
    #[arg(long, env = "PROCESSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Commit the open transaction at least this often, milliseconds.
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 100)]
    pub commit_interval_ms: u64,

    /// ...or after this many input records, whichever comes first. (A commit costs a few broker
    /// round trips whatever its size; under load the interval, not this, should set the pace.)
    #[arg(long, env = "COMMIT_MAX_RECORDS", default_value_t = 5_000)]
    pub commit_max_records: usize,

    /// Producer `transaction.timeout.ms`: the broker aborts a transaction left open this long
    /// (a crashed instance's last one).
    #[arg(long, env = "TRANSACTION_TIMEOUT_MS", default_value_t = 30_000)]
    pub transaction_timeout_ms: u64,

    /// Consumer `session.timeout.ms`: how long the group waits for a silent (crashed) instance
    /// before giving its partitions to others. A restarted instance with the same id takes its
    /// partitions back at once (static membership), whatever this is.
    #[arg(long, env = "SESSION_TIMEOUT_MS", default_value_t = 30_000)]
    pub session_timeout_ms: u64,

    /// Where to serve `GET /metrics`.
    #[arg(long, env = "PROCESSOR_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub fetch: FetchArgs,

    #[command(flatten)]
    pub oauth: OAuthArgs,

    /// Redis: the lock that keeps two instances from refreshing one OAuth token at once.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Fetch-stage records in progress at once (fetching, or fetched and waiting to be
    /// written); beyond it the fetch partitions pause until half are written.
    #[arg(long, env = "FETCH_MAX_PENDING", default_value_t = 256)]
    pub fetch_max_pending: usize,

    /// Bytes of fetched bodies (Terra payloads) waiting to be written before the fetch
    /// partitions pause.
    #[arg(long, env = "FETCH_MAX_PENDING_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub fetch_max_pending_bytes: usize,

    /// Reconcile every active Oura / WHOOP connection this often (e.g. `6h`; off when unset):
    /// records whose webhook never came are fetched through the same path.
    #[arg(long, env = "RECONCILE_EVERY", value_parser = crate::fetch::reconcile::parse_span)]
    pub reconcile_every: Option<Duration>,

    /// Vendor revocation endpoints: the scheduled reconciliation retries pending revocations.
    #[command(flatten)]
    pub revoke: crate::connections::revoke::RevokeArgs,

    /// Terra's REST API, for the scheduled reconciliation of Terra users.
    #[command(flatten)]
    pub terra: crate::fetch::terra_api::TerraApiArgs,

    /// How far back each scheduled reconciliation looks (e.g. `2d`).
    #[arg(long, env = "RECONCILE_WINDOW", value_parser = crate::fetch::reconcile::parse_span, default_value = "2d")]
    pub reconcile_window: Duration,
}

/// The transactional producer's `message.max.bytes`: the largest raw record, since dead letters,
/// pending fetches and downloaded Terra payloads carry raw bytes.
const PRODUCER_MAX_MESSAGE_BYTES: usize = crate::kafka::MAX_RAW_RECORD_BYTES;

/// The largest record every output topic takes, as the broker reports it (`max.message.bytes`,
/// defaults included), else as the topology sets it.
async fn output_limits(kafka: &KafkaArgs, topology: &crate::topology::Topology) -> TopicLimits {
    let mut outputs: Vec<&str> = topology.event_sinks.iter().map(String::as_str).collect();
    outputs.extend([topology.dlq_topic.as_str(), topology.pending_fetch_topic.as_str(), topology.fetch.retry_topic.as_str()]);
    outputs.extend(topology.sources.iter().filter_map(|source| source.repartition_topic.as_deref()));
    // One try: without an answer (a broker that does not describe configs, such as librdkafka's
    // mock cluster) the topology's settings are the best knowledge there is.
    let found = match crate::kafka::admin::topic_config(kafka, &outputs, "max.message.bytes").await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "Could not read the output topics' max.message.bytes; using the topology's.");
            Default::default()
        }
    };
    let mut limits = HashMap::new();
    for topic in outputs {
        let configured = topology.topic(topic).and_then(|spec| spec.configs.get("max.message.bytes"));
        if let Some(bytes) = found.get(topic).or(configured).and_then(|value| value.parse::<usize>().ok()) {
            limits.insert(topic.to_owned(), bytes);
        }
    }
    tracing::debug!(?limits, "Output topics' maximum record sizes.");
    TopicLimits::new(limits, PRODUCER_MAX_MESSAGE_BYTES)
}

fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "0".to_owned())
}

/// `biometric-bridge process`.
pub async fn run(args: ProcessArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = args.topology.load()?;
    let instance = args.instance_id.clone().unwrap_or_else(default_instance_id);
    let member_id = format!("{}-{instance}", topology.application_id);
    tracing::info!(application_id = %topology.application_id, instance = %instance, "Starting the processor.");

    // /metrics, /health and /ready from the first second: a processor waiting for a dependency
    // says so (`/ready` names the phase), and its retry counters can be scraped meanwhile.
    let readiness = crate::startup::Readiness::new("waiting_for_kafka");
    crate::metrics::init("processor");
    let metrics = tokio::spawn(crate::metrics::serve(args.metrics_addr, shutdown.clone(), readiness.clone()));

    // Kafka first: a refused login or TLS handshake ends the start here with one clear line,
    // where the transactional producer would only retry and time out.
    let brokers = crate::kafka::preflight::wait_until_reachable(&args.kafka, &shutdown).await?;
    tracing::info!(brokers, bootstrap = %args.kafka.bootstrap_servers, "Kafka reachable.");

    // The registry is contacted here only: schema ids are cached for the hot path.
    readiness.set("waiting_for_schema_registry");
    let settings = args.registry.settings()?;
    let mut schema_ids = HashMap::new();
    for topic in &topology.event_sinks {
        let subject = format!("{topic}-value");
        let id = crate::startup::wait_for("schema_registry", &crate::startup::host_of(&args.registry.registry_url), &shutdown, || async {
            // Before registering: an incompatible schema is then refused, not added.
            match crate::event::avro::set_compatibility(&args.registry, &subject).await {
                Ok(()) => {}
                // A managed registry may not let this key change the config: the subject keeps
                // whatever its owner set.
                Err(refused @ crate::event::avro::CodecError::Refused { .. }) => tracing::warn!(
                    subject = %subject,
                    error = %refused,
                    "Could not set the subject's compatibility to BACKWARD; set it in the registry."
                ),
                Err(other) => return Err(anyhow::Error::from(other)),
            }
            crate::event::avro::register(&settings, &subject).await.map_err(|error| match error {
                refused @ crate::event::avro::CodecError::Refused { .. } => crate::startup::Misconfigured(refused.to_string()).into(),
                other => anyhow::Error::from(other),
            })
        })
        .await?;
        tracing::info!(subject = %subject, schema_id = id, "Event schema registered.");
        schema_ids.insert(topic.clone(), id);
    }
    readiness.set("waiting_for_postgresql");
    let pool = crate::startup::wait_for("postgresql", &crate::startup::host_of(&args.database.database_url), &shutdown, || {
        args.database.migrated_pool()
    })
    .await?;
    readiness.set("waiting_for_redis");
    let fetch = crate::fetch::setup::fetch_setup(&args.oauth, &args.fetch, &args.redis, &pool, &shutdown).await?;

    let kafka = &args.kafka;
    let transaction_timeout = args.transaction_timeout_ms.to_string();
    let session_timeout = args.session_timeout_ms.to_string();
    let consumer: BaseConsumer<RuntimeContext> = kafka
        .config_with(&[
            ("group.id", &topology.application_id),
            ("group.instance.id", &member_id),
            ("client.id", &member_id),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", &session_timeout),
            ("statistics.interval.ms", "5000"),
        ])?
        .create_with_context(RuntimeContext { engine: Arc::new(Mutex::new(None)) })?;
    let producer: BaseProducer = kafka
        .config_with(&[
            ("transactional.id", &member_id),
            ("client.id", &member_id),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("transaction.timeout.ms", &transaction_timeout),
            ("linger.ms", "5"),
            ("compression.type", "snappy"),
            ("message.max.bytes", &PRODUCER_MAX_MESSAGE_BYTES.to_string()),
        ])?
        .create()?;
    let restorer: BaseConsumer<store::RestoreContext> = kafka
        .config_with(&[
            ("group.id", &format!("{}-restore", topology.application_id)),
            ("client.id", &format!("{member_id}-restore")),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "50"),
        ])?
        .create_with_context(store::RestoreContext)?;

    // Fences any earlier producer with this transactional.id and aborts its open transaction.
    readiness.set("initialising_transactions");
    let init_shutdown = shutdown.clone();
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<BaseProducer> {
        let mut delay = Duration::from_millis(250);
        loop {
            match producer.init_transactions(Duration::from_secs(30)) {
                Ok(()) => return Ok(producer),
                Err(error) if init_shutdown.is_cancelled() => return Err(error.into()),
                Err(error) => {
                    crate::metrics::INFRA_RETRIES.with_label_values(&["kafka"]).inc();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Could not initialise transactions; retrying.");
                    std::thread::sleep(delay);
                    delay = crate::startup::next_delay(delay);
                }
            }
        }
    })
    .await??;
    tracing::info!(transactional_id = %member_id, "Transactions initialised.");

    let stage = {
        let topics = [topology.pending_fetch_topic.clone(), topology.fetch.retry_topic.clone()];
        Some(fetching::FetchStage::new(
            topics,
            fetch.fetcher.clone(),
            tokio::runtime::Handle::current(),
            args.fetch_max_pending,
            args.fetch_max_pending_bytes,
        ))
    };
    if let (Some(every), Some(oauth)) = (args.reconcile_every, fetch.oauth.as_ref()) {
        let reconciler = Reconciler::new(fetch.fetcher.clone(), oauth.store.clone(), pool.clone(), &args.kafka, topology.ingress_topic())?;
        let schedule = crate::fetch::reconcile::Schedule { every, window: args.reconcile_window };
        tracing::info!(every_secs = every.as_secs(), window_secs = args.reconcile_window.as_secs(), "Scheduled reconciliation enabled.");
        tokio::spawn(crate::fetch::reconcile::run_scheduled(schedule, reconciler, shutdown.clone()));
        let revoker = crate::connections::revoke::Revoker::new(&args.revoke, &args.oauth.whoop_api_base, args.oauth.clients()?)?;
        tokio::spawn(crate::connections::revoke::retry_scheduled(revoker, oauth.store.clone(), pool.clone(), every, shutdown.clone()));
    }
    if let (Some(every), Some(terra)) = (args.reconcile_every, crate::fetch::terra_api::TerraApi::from_args(&args.terra)?) {
        tracing::info!(every_secs = every.as_secs(), "Scheduled Terra reconciliation enabled.");
        tokio::spawn(crate::fetch::terra_api::run_scheduled(terra, pool.clone(), every, args.reconcile_window, shutdown.clone()));
    }
    let limits = output_limits(&args.kafka, &topology).await;
    let engine = Engine::new(
        producer,
        Pipeline::new(topology.clone(), &schema_ids),
        BlockingIdentities { map: IdentityMap::new(pool), handle: tokio::runtime::Handle::current() },
        restorer,
        Cadence { interval: Duration::from_millis(args.commit_interval_ms.max(1)), max_records: args.commit_max_records.max(1) },
        stage,
        limits,
    );
    let shared = consumer.context().engine.clone();
    *shared.lock().expect("engine lock") = Some(engine);
    consumer.subscribe(&topology.source_topics())?;
    tracing::info!(topics = ?topology.source_topics(), "Subscribed.");

    readiness.set(crate::startup::Readiness::READY);
    let loop_shutdown = shutdown.clone();
    let worker = std::thread::Builder::new().name("eos-loop".into()).spawn(move || {
        let result = eos::run_loop(&consumer, &shared, &loop_shutdown);
        drop(consumer);
        result
    })?;
    let result = tokio::task::spawn_blocking(move || worker.join()).await?;
    shutdown.cancel();
    if let Ok(Err(error)) = metrics.await {
        tracing::warn!(%error, "Metrics server stopped with an error.");
    }
    match result {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the transaction loop panicked"),
    }
}
