//! The topology: what the processor reads, does, keeps and writes — declared in a TOML file
//! (`topologies/biometric.toml`), loaded and validated at start.
//!
//! - `spec.rs` is the file format as written (serde, unknown fields rejected);
//! - this module validates it into a [`Topology`] the runtime can trust (every reference
//!   resolves, parameters are in range, internal topic names derived), with errors that name the
//!   line and the field;
//! - `describe.rs` prints it as text, Mermaid or Graphviz, like Kafka Streams'
//!   `Topology#describe()`.

mod args;
pub mod describe;
mod plausibility;
pub mod spec;

pub use args::{DEFAULT_TOPOLOGY, TopologyArgs, without_dedup_store};
pub use plausibility::{Plausibility, Range};

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub use spec::SourceFormat;
use spec::{CountOrAuto, ProcessorSpec, TopicSettings, TopologySpec};

/// A count below one (`auto` is fine).
fn below_one(setting: Option<CountOrAuto>) -> bool {
    matches!(setting, Some(CountOrAuto::Count(count)) if count < 1)
}
use toml::Spanned;

use crate::event::Vendor;

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub application_id: String,
    pub sources: Vec<Source>,
    /// Processor names and types in order, for `describe`.
    pub processors: Vec<(String, &'static str, Option<String>)>,
    pub dedup: Option<DedupParams>,
    pub backfill: Option<BackfillParams>,
    pub thresholds: ThresholdParams,
    pub baseline: Option<BaselineParams>,
    /// What a measurement must lie within to be used at all.
    pub plausibility: Plausibility,
    pub stores: Vec<Store>,
    pub routes: Vec<Route>,
    pub event_sinks: Vec<String>,
    pub pending_fetch_topic: String,
    pub fetch: FetchParams,
    pub dlq_topic: String,
    /// Every topic the topology needs, with the settings `topics create` applies.
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub topic: String,
    pub format: SourceFormat,
    /// The internal topic this source is re-keyed through, if any.
    pub repartition_topic: Option<String>,
}

/// The fetch stage: `pending-fetch` and the retry topic are read as tasks' partitions (partition
/// p with the ingress source's partition p), so fetched events meet the same stores.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchParams {
    /// `<application_id>-fetch-retry`: notifications waiting for another fetch pass.
    pub retry_topic: String,
    pub max_retries: u32,
    pub retry_delay_ms: u64,
    pub max_retry_delay_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DedupParams {
    pub window_ms: i64,
}

/// Terra large historical requests: how long a backfill may go without progress before its
/// missing chunks are reported (`processor::backfill`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackfillParams {
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdParams {
    pub rmssd_critical_below_ms: f64,
    pub rmssd_high_below_ms: f64,
    pub sdnn_enabled: bool,
    pub sdnn_critical_below_ms: f64,
    pub sdnn_high_below_ms: f64,
}

impl Default for ThresholdParams {
    /// The existing system's limits; SDNN judging off.
    fn default() -> Self {
        ThresholdParams {
            rmssd_critical_below_ms: 25.0,
            rmssd_high_below_ms: 40.0,
            sdnn_enabled: false,
            sdnn_critical_below_ms: 15.0,
            sdnn_high_below_ms: 20.0,
        }
    }
}

/// The personal HRV baseline's rule (see `processor::baseline` and SIGNAL.md for how the
/// defaults were chosen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineParams {
    pub recent_days: u32,
    pub baseline_days: u32,
    pub band_sd: f64,
    pub min_recent_readings: u32,
    pub min_history_days: u32,
    /// How many consecutive days' recent means must lie below the band before the trigger fires
    /// (1: the day's own).
    pub confirm_days: u32,
    /// Widen the band while the history or the recent window is short (see
    /// `processor::baseline::widened_band`), so judging can start early.
    pub widen_short_history: bool,
    /// The severity of `HRV_BELOW_BASELINE`: MEDIUM since v2 (a recovery signal for the coach;
    /// the multi-signal `ILLNESS_RISK` is the alarm), HIGH in v1.
    pub severity: crate::event::Severity,
    /// What sets the `priority` header once the person has a baseline.
    pub priority_policy: PriorityPolicy,
    /// The multi-signal `ILLNESS_RISK` rule; `None`: off.
    pub illness: Option<IllnessParams>,
}

/// `ILLNESS_RISK` (see `processor::illness`): how many signals must deviate, and how far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IllnessParams {
    /// Days in the recent mean of each signal.
    pub recent_days: u32,
    /// Days of history each signal needs before it is judged.
    pub min_history_days: u32,
    /// z-score (in the illness direction) at which a signal counts as deviating.
    pub signal_z: f64,
    /// How many signals must deviate together.
    pub min_signals: u32,
}

impl Default for IllnessParams {
    fn default() -> Self {
        IllnessParams { recent_days: 3, min_history_days: 14, signal_z: 0.75, min_signals: 3 }
    }
}

impl BaselineParams {
    /// The first release's rule: 0.5 SD band, 14 days of history, no confirmation, fixed-limit
    /// priority. Kept so `evaluate` can show what the current defaults changed.
    pub const V1: BaselineParams = BaselineParams {
        recent_days: 7,
        baseline_days: 60,
        band_sd: 0.5,
        min_recent_readings: 3,
        min_history_days: 14,
        confirm_days: 1,
        widen_short_history: false,
        severity: crate::event::Severity::High,
        priority_policy: PriorityPolicy::Fixed,
        illness: None,
    };
}

impl Default for BaselineParams {
    /// 7-day rolling mean against a 60-day baseline; band, history and confirmation chosen by
    /// `biometric-bridge evaluate` (SIGNAL.md); see ARCHITECTURE.md for the method's sources.
    fn default() -> Self {
        BaselineParams {
            band_sd: 0.5,
            min_history_days: 7,
            confirm_days: 2,
            widen_short_history: true,
            severity: crate::event::Severity::Medium,
            priority_policy: PriorityPolicy::Personal,
            illness: Some(IllnessParams::default()),
            ..BaselineParams::V1
        }
    }
}

/// What the `priority` header follows. The triggers themselves are the same under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PriorityPolicy {
    /// Every trigger raises the header: the fixed rMSSD limits included, whoever the person is.
    Fixed,
    /// The fixed limits raise the header only while the person has no baseline yet; once they
    /// have one, the personal rules (and device observations) alone do.
    #[default]
    Personal,
}

impl PriorityPolicy {
    pub fn parse(text: &str) -> Option<PriorityPolicy> {
        match text {
            "fixed" => Some(PriorityPolicy::Fixed),
            "personal" => Some(PriorityPolicy::Personal),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PriorityPolicy::Fixed => "fixed",
            PriorityPolicy::Personal => "personal",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    pub changelog_topic: String,
}

/// Source vendor -> output topic; `vendor: None` matches every vendor.
#[derive(Debug, Clone)]
pub struct Route {
    pub vendor: Option<Vendor>,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: Replicas,
    /// `min.insync.replicas`; `Auto` is 2 when the replication factor is 3 or more.
    pub min_insync_replicas: Replicas,
    /// Topic-level configs (`compression.type`, `retention.ms`, `cleanup.policy`, ...), without
    /// `min.insync.replicas`, which depends on the cluster (see [`TopicSpec::on_cluster`]).
    pub configs: BTreeMap<String, String>,
}

/// A replica count fixed in the topology, or derived from the cluster's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    Auto,
    Fixed(i32),
}

/// The replication factor a topic with `Replicas::Auto` gets: one copy per broker up to three,
/// the usual production choice (two brokers can fail in turn, or one during a rolling restart,
/// and acks=all writes go on with `min.insync.replicas` 2).
pub const AUTO_REPLICATION_MAX: i32 = 3;

impl TopicSpec {
    /// A topic with fixed settings (tools and tests that make their own topics).
    pub fn fixed(name: impl Into<String>, partitions: i32, replication_factor: i32, configs: BTreeMap<String, String>) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: Replicas::Fixed(replication_factor),
            min_insync_replicas: Replicas::Auto,
            configs,
        }
    }

    /// The replication factor and full topic configs on a cluster of `brokers` brokers.
    pub fn on_cluster(&self, brokers: i32) -> (i32, BTreeMap<String, String>) {
        let replication_factor = match self.replication_factor {
            Replicas::Auto => brokers.clamp(1, AUTO_REPLICATION_MAX),
            Replicas::Fixed(count) => count,
        };
        let min_insync = match self.min_insync_replicas {
            Replicas::Fixed(count) => Some(count),
            Replicas::Auto => (replication_factor >= 3).then_some(2),
        };
        let mut configs = self.configs.clone();
        if let Some(count) = min_insync {
            configs.insert("min.insync.replicas".to_owned(), count.to_string());
        }
        (replication_factor, configs)
    }
}

/// A topology file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid { path: String, line: usize, field: String, message: String },
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read { path: path.display().to_string(), source })?;
        Topology::parse(&text, &path.display().to_string())
    }

    /// Parses and validates topology text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        Topology::parse_namespaced(text, origin, None)
    }

    /// Like [`Topology::parse`], with every topic name and the application id suffixed by
    /// `-<namespace>`: several independent copies of the pipeline (a demo run, a test, a staging
    /// tenant) can then share one cluster without seeing each other's records or state.
    pub fn parse_namespaced(text: &str, origin: &str, namespace: Option<&str>) -> Result<Topology, TopologyError> {
        let mut spec: TopologySpec =
            toml::from_str(text).map_err(|error| TopologyError::Parse { path: origin.to_owned(), message: error.to_string() })?;
        if let Some(namespace) = namespace.filter(|ns| !ns.is_empty()) {
            let rename = |name: &mut String| *name = format!("{name}-{namespace}");
            rename(&mut spec.application_id);
            spec.sources.iter_mut().for_each(|source| rename(&mut source.topic));
            spec.sinks.iter_mut().for_each(|sink| rename(&mut sink.topic));
            rename(&mut spec.dlq.topic);
            spec.topics =
                std::mem::take(&mut spec.topics).into_iter().map(|(name, settings)| (format!("{name}-{namespace}"), settings)).collect();
        }
        Validator { text, origin }.validate(spec)
    }

    /// The topic events of `vendor` are written to.
    pub fn route(&self, vendor: Vendor) -> &str {
        self.routes
            .iter()
            .find(|route| route.vendor.is_none_or(|v| v == vendor))
            .map(|route| route.topic.as_str())
            .expect("validation guarantees a catch-all route")
    }

    /// The topic the ingress writes raw webhooks to: the (first) ingress-format source's.
    pub fn ingress_topic(&self) -> &str {
        &self.sources.iter().find(|source| source.format == SourceFormat::Ingress).expect("validation requires an ingress source").topic
    }

    /// Topics the processor's consumer group subscribes to (sources, not repartition topics).
    pub fn source_topics(&self) -> Vec<&str> {
        self.sources.iter().map(|source| source.topic.as_str()).collect()
    }

    /// The sources whose partitions are tasks (read by the tasks' group): those not re-keyed.
    pub fn task_source_topics(&self) -> Vec<&str> {
        self.sources.iter().filter(|source| source.repartition_topic.is_none()).map(|source| source.topic.as_str()).collect()
    }

    /// The sources re-keyed into a repartition topic (read by the stateless re-key group).
    pub fn rekey_source_topics(&self) -> Vec<&str> {
        self.sources.iter().filter(|source| source.repartition_topic.is_some()).map(|source| source.topic.as_str()).collect()
    }

    pub fn changelog_topic(&self, store: &str) -> Option<&str> {
        self.stores.iter().find(|s| s.name == store).map(|s| s.changelog_topic.as_str())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|topic| topic.name == name)
    }
}

struct Validator<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Validator<'_> {
    fn error<T>(&self, at: &Spanned<T>, field: &str, message: impl Into<String>) -> TopologyError {
        self.error_at(at.span(), field, message)
    }

    fn error_at(&self, span: std::ops::Range<usize>, field: &str, message: impl Into<String>) -> TopologyError {
        let offset = span.start.min(self.text.len());
        let line = self.text[..offset].matches('\n').count() + 1;
        TopologyError::Invalid { path: self.origin.to_owned(), line, field: field.to_owned(), message: message.into() }
    }

    fn unique<'s>(&self, names: impl Iterator<Item = &'s Spanned<String>>, what: &str) -> Result<(), TopologyError> {
        let mut seen = HashSet::new();
        for name in names {
            if name.get_ref().trim().is_empty() {
                return Err(self.error(name, &format!("{what}.name"), "must not be empty"));
            }
            if !seen.insert(name.get_ref().clone()) {
                return Err(self.error(name, &format!("{what}.name"), format!("duplicate {what} name {:?}", name.get_ref())));
            }
        }
        Ok(())
    }

    fn validate(&self, spec: TopologySpec) -> Result<Topology, TopologyError> {
        let app = spec.application_id.trim().to_owned();
        if app.is_empty() || !app.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "application_id".to_owned(),
                message: "must be non-empty and use only letters, digits, '-', '_' or '.'".to_owned(),
            });
        }
        self.unique(spec.sources.iter().map(|s| &s.name), "sources")?;
        self.unique(spec.processors.iter().map(|p| &p.name), "processors")?;
        self.unique(spec.stores.iter().map(|s| &s.name), "stores")?;
        self.unique(spec.sinks.iter().map(|s| &s.name), "sinks")?;

        let sources: Vec<Source> = spec
            .sources
            .iter()
            .map(|s| Source {
                name: s.name.get_ref().clone(),
                topic: s.topic.clone(),
                format: s.format,
                repartition_topic: s.repartition.then(|| format!("{app}-{}-repartition", s.name.get_ref())),
            })
            .collect();
        if !sources.iter().any(|s| s.format == SourceFormat::Ingress) {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "sources".to_owned(),
                message: "at least one source with format = \"ingress\" is required".to_owned(),
            });
        }

        let stores: Vec<spec::StoreSpec> = spec.stores;
        let store_names: HashSet<&str> = stores.iter().map(|s| s.name.get_ref().as_str()).collect();
        let mut used_stores = HashSet::new();
        let mut dedup = None;
        let mut backfill = None;
        let mut thresholds = None;
        let mut baseline = None;
        let mut order = Vec::new();
        let count = spec.processors.len();
        for (index, processor) in spec.processors.iter().enumerate() {
            let kind = self.processor_kind(processor, index, count)?;
            if let Some(store) = &processor.store {
                if !store_names.contains(store.get_ref().as_str()) {
                    return Err(self.error(store, "processors.store", format!("no store named {:?} is declared", store.get_ref())));
                }
                if !used_stores.insert(store.get_ref().clone()) {
                    return Err(self.error(store, "processors.store", format!("store {:?} is used by two processors", store.get_ref())));
                }
            }
            match kind {
                "dedup" => dedup = Some(self.dedup(processor)?),
                "terra-backfill" => backfill = Some(self.backfill(processor)?),
                "hrv-thresholds" => thresholds = Some(self.thresholds(processor)?),
                "hrv-baseline" => baseline = Some(self.baseline(processor)?),
                _ => {}
            }
            order.push((processor.name.get_ref().clone(), kind, processor.store.as_ref().map(|s| s.get_ref().clone())));
        }
        if count < 2 {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "processors".to_owned(),
                message: "processors must start with normalize and end with route".to_owned(),
            });
        }
        if let Some(unused) = stores.iter().find(|s| !used_stores.contains(s.name.get_ref())) {
            return Err(self.error(&unused.name, "stores.name", format!("store {:?} is not used by any processor", unused.name.get_ref())));
        }

        // Sinks and routes.
        let sink_topic = |name: &Spanned<String>| -> Result<String, TopologyError> {
            spec.sinks
                .iter()
                .find(|s| s.name.get_ref() == name.get_ref())
                .map(|s| s.topic.clone())
                .ok_or_else(|| self.error(name, "routes.sink", format!("no sink named {:?} is declared", name.get_ref())))
        };
        let mut routes = Vec::new();
        for route in &spec.routes {
            let vendor = match route.vendor.get_ref().as_str() {
                "*" => None,
                slug => Some(Vendor::from_slug(slug).ok_or_else(|| {
                    self.error(&route.vendor, "routes.vendor", format!("unknown vendor {slug:?} (terra, oura, whoop, apple-health or *)"))
                })?),
            };
            routes.push(Route { vendor, topic: sink_topic(&route.sink)? });
        }
        if !routes.iter().any(|r| r.vendor.is_none()) {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "routes".to_owned(),
                message: "a catch-all route (vendor = \"*\") is required so no event is left without a sink".to_owned(),
            });
        }
        let pending_fetch = spec.sinks.iter().find(|s| s.name.get_ref() == "pending-fetch").ok_or_else(|| TopologyError::Invalid {
            path: self.origin.to_owned(),
            line: 1,
            field: "sinks".to_owned(),
            message: "a sink named \"pending-fetch\" is required (Oura/WHOOP notifications go there)".to_owned(),
        })?;
        let mut event_sinks: Vec<String> = routes.iter().map(|r| r.topic.clone()).collect();
        event_sinks.dedup();

        let stores: Vec<Store> = stores
            .iter()
            .map(|s| Store { name: s.name.get_ref().clone(), changelog_topic: format!("{app}-{}-changelog", s.name.get_ref()) })
            .collect();

        let fetch = self.fetch(&app, spec.fetch.as_ref())?;
        let plausibility = self.plausibility(&spec.plausibility)?;
        let mut topics = self.topics(&spec.topic_defaults, &spec.topics, &sources, &stores, &spec.sinks, &spec.dlq.topic)?;
        let ingress_topic = &sources.iter().find(|s| s.format == SourceFormat::Ingress).expect("checked above").topic;
        let pending_spec = topics.iter().find(|t| t.name == pending_fetch.topic).expect("every sink has a topic spec").clone();
        if Some(pending_spec.partitions) != topics.iter().find(|t| &t.name == ingress_topic).map(|t| t.partitions) {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "topics.partitions".to_owned(),
                message: format!(
                    "{:?} must have as many partitions as {ingress_topic:?}: its partition p is fetched by the task of partition p",
                    pending_fetch.topic
                ),
            });
        }
        // The retry topic is pending-fetch's twin (same partitions and settings).
        topics.push(TopicSpec { name: fetch.retry_topic.clone(), ..pending_spec });

        Ok(Topology {
            application_id: app,
            sources,
            processors: order,
            dedup,
            backfill,
            thresholds: thresholds.unwrap_or_default(),
            baseline,
            plausibility,
            stores,
            routes,
            event_sinks,
            pending_fetch_topic: pending_fetch.topic.clone(),
            fetch,
            dlq_topic: spec.dlq.topic.clone(),
            topics,
        })
    }

    fn fetch(&self, app: &str, spec: Option<&Spanned<spec::FetchSpec>>) -> Result<FetchParams, TopologyError> {
        let given = spec.map(|s| s.get_ref().clone()).unwrap_or_default();
        let seconds = |value: Option<f64>, default: f64| value.unwrap_or(default);
        let (first, max) = (seconds(given.retry_delay_secs, 30.0), seconds(given.max_retry_delay_secs, 3600.0));
        if !(first.is_finite() && max.is_finite() && first > 0.0 && max >= first) {
            let span = spec.map_or(0..0, Spanned::span);
            return Err(self.error_at(
                span,
                "fetch.retry_delay_secs",
                "delays must be positive, and max_retry_delay_secs at least retry_delay_secs",
            ));
        }
        Ok(FetchParams {
            retry_topic: format!("{app}-fetch-retry"),
            max_retries: given.max_retries.unwrap_or(6),
            retry_delay_ms: (first * 1000.0) as u64,
            max_retry_delay_ms: (max * 1000.0) as u64,
        })
    }

    /// The processor's type, checked against its position and its parameters.
    fn processor_kind(&self, p: &ProcessorSpec, index: usize, count: usize) -> Result<&'static str, TopologyError> {
        const TYPES: &[(&str, &[&str])] = &[
            ("normalize", &[]),
            ("dedup", &["store", "window_days"]),
            ("terra-backfill", &["store", "timeout_secs"]),
            (
                "hrv-thresholds",
                &["rmssd_critical_below_ms", "rmssd_high_below_ms", "sdnn_enabled", "sdnn_critical_below_ms", "sdnn_high_below_ms"],
            ),
            (
                "hrv-baseline",
                &[
                    "store",
                    "recent_days",
                    "baseline_days",
                    "band_sd",
                    "min_recent_readings",
                    "min_history_days",
                    "confirm_days",
                    "widen_short_history",
                    "severity",
                    "priority_policy",
                    "illness_risk",
                    "illness_recent_days",
                    "illness_signal_z",
                    "illness_min_signals",
                ],
            ),
            ("route", &[]),
        ];
        let Some((kind, allowed)) = TYPES.iter().find(|(name, _)| *name == p.kind.get_ref().as_str()) else {
            let known: Vec<&str> = TYPES.iter().map(|(name, _)| *name).collect();
            return Err(self.error(
                &p.kind,
                "processors.type",
                format!("unknown type {:?} (one of {})", p.kind.get_ref(), known.join(", ")),
            ));
        };
        if (*kind == "normalize") != (index == 0) {
            return Err(self.error(&p.kind, "processors.type", "normalize must be the first processor, and only the first"));
        }
        if (*kind == "route") != (index + 1 == count) {
            return Err(self.error(&p.kind, "processors.type", "route must be the last processor, and only the last"));
        }
        for (field, span) in p.parameters() {
            if !allowed.contains(&field) {
                return Err(self.error_at(span, &format!("processors.{field}"), format!("not a parameter of type {kind:?}")));
            }
        }
        if allowed.contains(&"store") && p.store.is_none() {
            return Err(self.error(&p.name, "processors.store", format!("type {kind:?} needs a store")));
        }
        Ok(kind)
    }

    fn dedup(&self, p: &ProcessorSpec) -> Result<DedupParams, TopologyError> {
        let days = p.window_days.as_ref().map_or(7, |d| *d.get_ref());
        if days == 0 {
            return Err(self.error(
                p.window_days.as_ref().expect("0 is only read from the file"),
                "processors.window_days",
                "must be at least 1",
            ));
        }
        Ok(DedupParams { window_ms: i64::from(days) * 86_400_000 })
    }

    fn backfill(&self, p: &ProcessorSpec) -> Result<BackfillParams, TopologyError> {
        let secs = p.timeout_secs.as_ref().map_or(6 * 3_600, |h| *h.get_ref());
        if secs == 0 {
            return Err(self.error(
                p.timeout_secs.as_ref().expect("0 is only read from the file"),
                "processors.timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(BackfillParams { timeout_ms: i64::from(secs) * 1_000 })
    }

    fn thresholds(&self, p: &ProcessorSpec) -> Result<ThresholdParams, TopologyError> {
        let default = ThresholdParams::default();
        let value = |field: &Option<Spanned<f64>>, fallback: f64| field.as_ref().map_or(fallback, |v| *v.get_ref());
        let params = ThresholdParams {
            rmssd_critical_below_ms: value(&p.rmssd_critical_below_ms, default.rmssd_critical_below_ms),
            rmssd_high_below_ms: value(&p.rmssd_high_below_ms, default.rmssd_high_below_ms),
            sdnn_enabled: p.sdnn_enabled.as_ref().is_some_and(|v| *v.get_ref()),
            sdnn_critical_below_ms: value(&p.sdnn_critical_below_ms, default.sdnn_critical_below_ms),
            sdnn_high_below_ms: value(&p.sdnn_high_below_ms, default.sdnn_high_below_ms),
        };
        for (method, critical, high) in [
            ("rmssd", params.rmssd_critical_below_ms, params.rmssd_high_below_ms),
            ("sdnn", params.sdnn_critical_below_ms, params.sdnn_high_below_ms),
        ] {
            if !(critical.is_finite() && high.is_finite() && critical > 0.0 && high > 0.0) {
                return Err(self.error(&p.name, &format!("processors.{method}_*_below_ms"), "thresholds must be positive numbers"));
            }
            if critical >= high {
                let field = format!("processors.{method}_critical_below_ms");
                return Err(self.error(&p.name, &field, format!("the critical limit ({critical}) must be below the high limit ({high})")));
            }
        }
        Ok(params)
    }

    fn baseline(&self, p: &ProcessorSpec) -> Result<BaselineParams, TopologyError> {
        let default = BaselineParams::default();
        let days = |field: &Option<Spanned<u32>>, fallback: u32| field.as_ref().map_or(fallback, |v| *v.get_ref());
        let params = BaselineParams {
            recent_days: days(&p.recent_days, default.recent_days),
            baseline_days: days(&p.baseline_days, default.baseline_days),
            band_sd: p.band_sd.as_ref().map_or(default.band_sd, |v| *v.get_ref()),
            min_recent_readings: days(&p.min_recent_readings, default.min_recent_readings),
            min_history_days: days(&p.min_history_days, default.min_history_days),
            confirm_days: days(&p.confirm_days, default.confirm_days),
            widen_short_history: p.widen_short_history.as_ref().map_or(default.widen_short_history, |v| *v.get_ref()),
            illness: match p.illness_risk.as_ref().map_or(default.illness.is_some(), |v| *v.get_ref()) {
                false => None,
                true => {
                    let fallback = IllnessParams::default();
                    Some(IllnessParams {
                        recent_days: days(&p.illness_recent_days, fallback.recent_days),
                        min_history_days: fallback.min_history_days,
                        signal_z: p.illness_signal_z.as_ref().map_or(fallback.signal_z, |v| *v.get_ref()),
                        min_signals: days(&p.illness_min_signals, fallback.min_signals),
                    })
                }
            },
            severity: match &p.severity {
                None => default.severity,
                Some(text) => match text.get_ref().as_str() {
                    "MEDIUM" => crate::event::Severity::Medium,
                    "HIGH" => crate::event::Severity::High,
                    _ => return Err(self.error(text, "processors.severity", "must be \"MEDIUM\" or \"HIGH\"")),
                },
            },
            priority_policy: match &p.priority_policy {
                None => default.priority_policy,
                Some(text) => PriorityPolicy::parse(text.get_ref())
                    .ok_or_else(|| self.error(text, "processors.priority_policy", "must be \"personal\" or \"fixed\""))?,
            },
        };
        if let Some(illness) = params.illness {
            if illness.recent_days == 0 || illness.recent_days >= params.baseline_days {
                return Err(self.error(&p.name, "processors.illness_recent_days", "must be between 1 and baseline_days"));
            }
            if !(1..=4).contains(&illness.min_signals) {
                return Err(self.error(&p.name, "processors.illness_min_signals", "must be between 1 and 4 (the signals judged)"));
            }
            if !(illness.signal_z.is_finite() && illness.signal_z > 0.0) {
                return Err(self.error(&p.name, "processors.illness_signal_z", "must be a positive number"));
            }
        }
        if params.confirm_days == 0 || params.confirm_days > params.recent_days {
            return Err(self.error(&p.name, "processors.confirm_days", "must be between 1 and recent_days"));
        }
        if params.recent_days == 0 || params.baseline_days <= params.recent_days {
            return Err(self.error(&p.name, "processors.baseline_days", "baseline_days must exceed recent_days (both > 0)"));
        }
        if !(params.band_sd.is_finite() && params.band_sd > 0.0) {
            return Err(self.error(&p.name, "processors.band_sd", "must be a positive number"));
        }
        if params.min_recent_readings == 0 || params.min_recent_readings > params.recent_days {
            return Err(self.error(&p.name, "processors.min_recent_readings", "must be between 1 and recent_days"));
        }
        if params.min_history_days > params.baseline_days {
            return Err(self.error(&p.name, "processors.min_history_days", "must not exceed baseline_days"));
        }
        Ok(params)
    }

    /// Every topic with its settings: declared ones from defaults + overrides, internal ones
    /// derived (repartition and changelog topics get the ingress source's partition count so
    /// partition p of each holds the same users).
    fn topics(
        &self,
        defaults: &TopicSettings,
        overrides: &BTreeMap<String, Spanned<TopicSettings>>,
        sources: &[Source],
        stores: &[Store],
        sinks: &[spec::SinkSpec],
        dlq: &str,
    ) -> Result<Vec<TopicSpec>, TopologyError> {
        let settings = |name: &str| -> TopicSettings {
            let mut merged = defaults.clone();
            if let Some(over) = overrides.get(name) {
                let over = over.get_ref();
                merged.partitions = over.partitions.or(merged.partitions);
                merged.replication_factor = over.replication_factor.or(merged.replication_factor);
                merged.min_insync_replicas = over.min_insync_replicas.or(merged.min_insync_replicas);
                merged.compression = over.compression.clone().or(merged.compression);
                merged.retention_ms = over.retention_ms.or(merged.retention_ms);
                merged.delete_retention_ms = over.delete_retention_ms.or(merged.delete_retention_ms);
                merged.max_message_bytes = over.max_message_bytes.or(merged.max_message_bytes);
            }
            merged
        };
        let build = |name: &str, settings: TopicSettings, compact: bool| -> TopicSpec {
            let mut configs = BTreeMap::new();
            if let Some(compression) = settings.compression {
                configs.insert("compression.type".to_owned(), compression);
            }
            if let Some(max) = settings.max_message_bytes {
                configs.insert("max.message.bytes".to_owned(), max.to_string());
            }
            if compact {
                configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
                if let Some(tombstones) = settings.delete_retention_ms {
                    configs.insert("delete.retention.ms".to_owned(), tombstones.to_string());
                }
            } else if let Some(retention) = settings.retention_ms {
                configs.insert("retention.ms".to_owned(), retention.to_string());
            }
            TopicSpec {
                name: name.to_owned(),
                partitions: settings.partitions.unwrap_or(1),
                replication_factor: settings.replication_factor.map_or(Replicas::Auto, CountOrAuto::replicas),
                min_insync_replicas: settings.min_insync_replicas.map_or(Replicas::Auto, CountOrAuto::replicas),
                configs,
            }
        };

        let mut declared: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
        declared.extend(sinks.iter().map(|s| s.topic.as_str()));
        declared.push(dlq);
        for (name, over) in overrides {
            if !declared.contains(&name.as_str()) {
                return Err(self.error(over, "topics", format!("topic {name:?} is not a source, sink or DLQ of this topology")));
            }
            let s = over.get_ref();
            if s.partitions.is_some_and(|p| p < 1) || below_one(s.replication_factor) || below_one(s.min_insync_replicas) {
                return Err(self.error(
                    over,
                    "topics.partitions",
                    "partitions, replication_factor and min_insync_replicas must be at least 1",
                ));
            }
        }
        if defaults.partitions.is_some_and(|p| p < 1) || below_one(defaults.replication_factor) || below_one(defaults.min_insync_replicas) {
            return Err(TopologyError::Invalid {
                path: self.origin.to_owned(),
                line: 1,
                field: "topic_defaults.partitions".to_owned(),
                message: "partitions, replication_factor and min_insync_replicas must be at least 1".to_owned(),
            });
        }

        let mut topics: Vec<TopicSpec> = Vec::new();
        let mut push = |spec: TopicSpec| {
            if !topics.iter().any(|t| t.name == spec.name) {
                topics.push(spec);
            }
        };
        for name in &declared {
            push(build(name, settings(name), false));
        }
        // Internal topics follow the (first) ingress source: stateful tasks are per partition.
        let ingress = sources.iter().find(|s| s.format == SourceFormat::Ingress).expect("checked above");
        let task_settings = settings(&ingress.topic);
        for source in sources {
            if let Some(repartition) = &source.repartition_topic {
                push(build(repartition, task_settings.clone(), false));
            }
        }
        for store in stores {
            let mut changelog = task_settings.clone();
            changelog.retention_ms = None;
            push(build(&store.changelog_topic, changelog, true));
        }
        Ok(topics)
    }
}

#[cfg(test)]
mod tests;
