//! The streaming runtime of `biometric-bridge process`: a Kafka Streams-style exactly-once
//! consume-transform-produce loop, apart from the business logic it runs (`processor/`).
//!
//! - `engine.rs`: the transactional producer, the open transaction, commit / abort / rewind;
//! - `context.rs`: rebalances (commit on revoke, abort when lost, co-assigned repartition
//!   partitions, store restore on assign) and consumer-lag statistics;
//! - `eos.rs`: the loop on its own thread, with outage pauses and shutdown;
//! - `stream_loop.rs`: the loops (tasks, one per stream thread; re-key), each with its group
//!   membership, producer and thread;
//! - `gauges.rs`: each stream thread's share of the instance's gauges;
//! - `lag.rs`: consumer lag from the committed offsets;
//! - `task.rs` + `store.rs`: per-partition tasks and their changelog-backed stores;
//! - `identities.rs`: blocking PostgreSQL identity lookups for the loop's thread;
//! - `fetching.rs`: the fetch stage's concurrent vendor API calls, written back in offset order.

mod context;
mod engine;
mod eos;
mod fetching;
mod gauges;
mod identities;
mod lag;
mod sealed;
pub mod store;
mod stream_loop;
pub use stream_loop::{FETCH_QUEUE_BACKOFF_MS, QUEUED_MAX_MESSAGES_KBYTES};
mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs, RegistryArgs};
use crate::connections::OAuthArgs;
use crate::fetch::FetchArgs;
use crate::fetch::reconcile::Reconciler;
use crate::identity::IdentityMap;
use crate::processor::{Pipeline, TopicLimits};
use crate::shutdown::CancellationToken;
use crate::topology::TopologyArgs;
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

    /// Stream threads: each is its own member of the tasks' group, with its own consumer,
    /// transactional producer (thread 0: `<application_id>-<instance id>`, as before threads
    /// existed, so an upgrade fences the old producer; thread t: `…-<instance id>-<t>`), share of
    /// the tasks and their stores. One thread's abort or fence never touches another's tasks.
    /// Capped by the number of tasks (ingress partitions). The group balances tasks over threads,
    /// not instances: see the README's "Stream threads" before raising it on several instances.
    #[arg(long = "threads", env = "PROCESSOR_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,

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
    /// written); beyond it the fetch partitions pause until half are written. The instance's
    /// bound: each stream thread gets its share.
    #[arg(long, env = "FETCH_MAX_PENDING", default_value_t = 256)]
    pub fetch_max_pending: usize,

    /// Bytes of fetched bodies (Terra payloads) waiting to be written before the fetch
    /// partitions pause (the instance's bound, shared out among the stream threads).
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

/// `--threads`, capped by the number of tasks (the ingress topic's partitions, as the topology
/// declares them and `topics create` holds the broker to): a thread beyond them would hold nothing.
fn stream_threads(topology: &crate::topology::Topology, requested: u16) -> usize {
    let requested = usize::from(requested);
    let tasks = topology.topic(topology.ingress_topic()).map(|spec| usize::try_from(spec.partitions).unwrap_or(0).max(1));
    match tasks {
        Some(tasks) if tasks < requested => {
            tracing::warn!(requested, tasks, "More stream threads than tasks: running one per task.");
            tasks
        }
        _ => requested,
    }
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
    crate::metrics::init(crate::metrics::Component::Processor);
    let metrics = tokio::spawn(crate::metrics::serve(args.metrics_addr, shutdown.clone(), readiness.clone()));

    // Kafka first: a refused login or TLS handshake ends the start here with one clear line,
    // where the transactional producer would only retry and time out.
    let brokers = crate::kafka::preflight::wait_until_reachable(&args.kafka, &shutdown).await?;
    tracing::info!(brokers, bootstrap = %args.kafka.bootstrap_servers, "Kafka reachable.");

    // The registry is contacted here only: schema ids are cached for the hot path.
    readiness.set("waiting_for_schema_registry");
    let settings = args.registry.settings()?;
    let registry_http = args.registry.http()?;
    let mut schema_ids = HashMap::new();
    for topic in &topology.event_sinks {
        let subject = format!("{topic}-value");
        let id = crate::startup::wait_for("schema_registry", &crate::startup::host_of(&args.registry.registry_url), &shutdown, || async {
            // Before registering: an incompatible schema is then refused, not added.
            match crate::event::avro::set_compatibility(&registry_http, &subject).await {
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

    // Two kinds of loop, two groups (`stream_loop.rs` says why): the tasks' group subscribes to
    // the ingress topic alone, so its balance is the tasks' balance; the re-key group reads the
    // re-keyed sources (Terra's direct topic). The tasks' loop runs once per stream thread.
    let task_topics: Vec<String> = topology.task_source_topics().into_iter().map(str::to_owned).collect();
    let threads = stream_threads(&topology, args.threads);
    let tasks_specs: Vec<stream_loop::LoopSpec> = (0..threads)
        .map(|thread| stream_loop::LoopSpec {
            name: if thread == 0 { "tasks".to_owned() } else { format!("tasks-{thread}") },
            group: topology.application_id.clone(),
            member: stream_loop::thread_member(&member_id, thread),
            topics: task_topics.clone(),
        })
        .collect();
    let rekey_spec = stream_loop::LoopSpec {
        name: "rekey".to_owned(),
        group: format!("{}-rekey", topology.application_id),
        member: format!("{member_id}-rekey"),
        topics: topology.rekey_source_topics().into_iter().map(str::to_owned).collect(),
    };
    let build = |spec: &stream_loop::LoopSpec| {
        stream_loop::clients(
            &args.kafka,
            spec,
            &topology.application_id,
            args.session_timeout_ms,
            args.transaction_timeout_ms,
            PRODUCER_MAX_MESSAGE_BYTES,
        )
    };
    let tasks_clients = tasks_specs.iter().map(build).collect::<anyhow::Result<Vec<_>>>()?;
    let rekey_clients = if rekey_spec.topics.is_empty() { None } else { Some(build(&rekey_spec)?) };

    // Fences any earlier producer with these transactional ids and aborts their open transactions.
    readiness.set("initialising_transactions");
    let mut tasks_loops = Vec::with_capacity(threads);
    for (spec, clients) in tasks_specs.iter().zip(tasks_clients) {
        let producer = stream_loop::init_transactions(clients.producer, &shutdown).await?;
        tracing::info!(transactional_id = %spec.member, "Transactions initialised.");
        tasks_loops.push((spec, clients.consumer, producer, clients.restorer));
    }
    let rekey = match rekey_clients {
        Some(clients) => {
            let producer = stream_loop::init_transactions(clients.producer, &shutdown).await?;
            tracing::info!(transactional_id = %rekey_spec.member, "Transactions initialised.");
            Some((clients.consumer, producer, clients.restorer))
        }
        None => None,
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
    let cadence = Cadence { interval: Duration::from_millis(args.commit_interval_ms.max(1)), max_records: args.commit_max_records.max(1) };
    let identities = || BlockingIdentities { map: IdentityMap::new(pool.clone()), handle: tokio::runtime::Handle::current() };
    let data_keys = match crate::at_rest::Kek::from_env()? {
        Some(kek) => {
            let keys = crate::at_rest::DataKeys::new(pool.clone(), kek, Duration::from_secs(60));
            crate::at_rest::keys::refuse_a_wrong_kek(&keys).await?;
            Some(std::sync::Arc::new(keys))
        }
        None => None,
    };
    if data_keys.is_none() {
        tracing::warn!("DATA_ENCRYPTION_KEY is not set: a sealed record cannot be opened, and stops its partition until it is.");
    }
    // Each thread has its own fetch stage: a fetch-stage partition belongs to the thread whose
    // task it is, and its writes go through that thread's transaction. The bounds are the
    // instance's, shared out, so more threads never hold more fetched bodies in memory.
    let stage = || {
        let topics = [topology.pending_fetch_topic.clone(), topology.fetch.retry_topic.clone()];
        fetching::FetchStage::new(
            topics,
            fetch.fetcher.clone(),
            tokio::runtime::Handle::current(),
            args.fetch_max_pending.div_ceil(threads),
            args.fetch_max_pending_bytes.div_ceil(threads),
        )
    };
    let mut loops = Vec::new();
    for (spec, consumer, producer, restorer) in tasks_loops {
        let engine = Engine::new(
            producer,
            Pipeline::new(topology.clone(), &schema_ids),
            identities(),
            restorer,
            cadence,
            Some(stage()),
            limits.clone(),
        )
        .with_data_keys(data_keys.clone());
        loops.push(stream_loop::spawn(spec, consumer, engine, &shutdown)?);
    }
    if let Some((consumer, producer, restorer)) = rekey {
        let (kafka, from, to, topics) =
            (args.kafka.clone(), topology.application_id.clone(), rekey_spec.group.clone(), rekey_spec.topics.clone());
        tokio::task::spawn_blocking(move || stream_loop::carry_over_offsets(&kafka, &from, &to, &topics)).await??;
        let engine = Engine::new(producer, Pipeline::new(topology.clone(), &schema_ids), identities(), restorer, cadence, None, limits)
            .with_data_keys(data_keys);
        loops.push(stream_loop::spawn(&rekey_spec, consumer, engine, &shutdown)?);
    }

    readiness.set(crate::startup::Readiness::READY);
    // Each loop cancels `shutdown` when it ends, so the others follow; the first error is the
    // process's.
    let results = tokio::task::spawn_blocking(move || loops.into_iter().map(|handle| handle.join()).collect::<Vec<_>>()).await?;
    shutdown.cancel();
    if let Ok(Err(error)) = metrics.await {
        tracing::warn!(%error, "Metrics server stopped with an error.");
    }
    for result in results {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => anyhow::bail!("a transaction loop panicked"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_threads_are_capped_by_the_tasks() {
        let topology = crate::topology::Topology::parse(include_str!("../../topologies/biometric.toml"), "biometric.toml").unwrap();
        let tasks = topology.topic(topology.ingress_topic()).unwrap().partitions as usize;
        assert_eq!(super::stream_threads(&topology, 1), 1);
        assert_eq!(super::stream_threads(&topology, 2), 2);
        assert_eq!(super::stream_threads(&topology, (tasks + 5) as u16), tasks);
    }
}
