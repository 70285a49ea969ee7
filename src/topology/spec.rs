//! The topology file format (`topologies/*.toml`), exactly as written by users.
//!
//! Unknown fields are rejected so a typo is an error, not a silently ignored setting. Names that
//! other entries refer to are [`Spanned`] so validation errors can point at the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Consumer group id, transactional id prefix and prefix of internal topics.
    pub application_id: String,
    pub sources: Vec<SourceSpec>,
    pub processors: Vec<ProcessorSpec>,
    #[serde(default)]
    pub stores: Vec<StoreSpec>,
    pub sinks: Vec<SinkSpec>,
    pub routes: Vec<RouteSpec>,
    pub dlq: DlqSpec,
    pub topic_defaults: TopicSettings,
    #[serde(default)]
    pub topics: BTreeMap<String, Spanned<TopicSettings>>,
    /// The fetch stage of notification-only vendors (defaults when absent).
    #[serde(default)]
    pub fetch: Option<Spanned<FetchSpec>>,
    /// `[plausibility]`: the range every measurement field must lie in (all fields required).
    pub plausibility: Spanned<BTreeMap<String, Spanned<RangeSpec>>>,
}

/// One measurement's plausible range, with where the numbers come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub min: f64,
    pub max: f64,
    /// The literature or vendor documentation the range is taken from (required: a range
    /// without a source cannot be reviewed).
    pub source: String,
}

/// `[fetch]`: how notifications whose fetch failed are retried through the retry topic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSpec {
    /// Passes through the retry topic before the notification is dead-lettered.
    pub max_retries: Option<u32>,
    /// Delay before the first retry pass, seconds (doubled per pass).
    pub retry_delay_secs: Option<f64>,
    /// Longest delay between passes, seconds.
    pub max_retry_delay_secs: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: Spanned<String>,
    pub topic: String,
    pub format: SourceFormat,
    /// Re-key by vendor user through `<application_id>-<name>-repartition` before stateful steps.
    #[serde(default)]
    pub repartition: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// Written by our ingress: vendor in the `vendor` header, keyed `<vendor>:<vendor user>`.
    Ingress,
    /// Terra's own Kafka destination: Terra webhook JSON, no usable key or headers.
    Terra,
}

/// One processor. A flat table with a `type` rather than a tagged enum: serde's tagged enums
/// buffer their content and lose the line numbers validation errors point at. Which parameters
/// each type takes is checked by the validator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSpec {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub store: Option<Spanned<String>>,
    // dedup
    pub window_days: Option<Spanned<u32>>,
    // terra-backfill
    pub timeout_secs: Option<Spanned<u32>>,
    // hrv-thresholds
    pub rmssd_critical_below_ms: Option<Spanned<f64>>,
    pub rmssd_high_below_ms: Option<Spanned<f64>>,
    pub sdnn_enabled: Option<Spanned<bool>>,
    pub sdnn_critical_below_ms: Option<Spanned<f64>>,
    pub sdnn_high_below_ms: Option<Spanned<f64>>,
    // hrv-baseline
    pub recent_days: Option<Spanned<u32>>,
    pub baseline_days: Option<Spanned<u32>>,
    pub band_sd: Option<Spanned<f64>>,
    pub min_recent_readings: Option<Spanned<u32>>,
    pub min_history_days: Option<Spanned<u32>>,
    pub confirm_days: Option<Spanned<u32>>,
    pub widen_short_history: Option<Spanned<bool>>,
    pub severity: Option<Spanned<String>>,
    pub priority_policy: Option<Spanned<String>>,
    pub illness_risk: Option<Spanned<bool>>,
    pub illness_recent_days: Option<Spanned<u32>>,
    pub illness_signal_z: Option<Spanned<f64>>,
    pub illness_min_signals: Option<Spanned<u32>>,
}

impl ProcessorSpec {
    /// The parameters that are set, by field name, with their line-bearing spans.
    pub fn parameters(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut set = Vec::new();
        macro_rules! collect {
            ($($field:ident),*) => { $( if let Some(value) = &self.$field { set.push((stringify!($field), value.span())); } )* };
        }
        collect!(
            store,
            window_days,
            timeout_secs,
            rmssd_critical_below_ms,
            rmssd_high_below_ms,
            sdnn_enabled,
            sdnn_critical_below_ms,
            sdnn_high_below_ms,
            recent_days,
            baseline_days,
            band_sd,
            min_recent_readings,
            min_history_days,
            confirm_days,
            widen_short_history,
            severity,
            priority_policy,
            illness_risk,
            illness_recent_days,
            illness_signal_z,
            illness_min_signals
        );
        set
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    pub name: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub name: Spanned<String>,
    pub topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Vendor slug (`terra`, `oura`, `whoop`, `apple-health`) or `*`.
    pub vendor: Spanned<String>,
    pub sink: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSpec {
    pub topic: String,
}

/// Topic settings; every field optional so `[topics.x]` can override only some defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub partitions: Option<i32>,
    /// A count, or `"auto"` (the default): min(3, brokers), decided at `topics create`.
    pub replication_factor: Option<CountOrAuto>,
    /// `min.insync.replicas`: a count, or `"auto"` (the default): 2 when the replication factor
    /// is 3 or more, else the broker's default.
    pub min_insync_replicas: Option<CountOrAuto>,
    pub compression: Option<String>,
    /// `retention.ms` of a deleting topic (changelogs are compacted and keep every key's last value).
    pub retention_ms: Option<i64>,
    /// `delete.retention.ms` of the compacted changelogs: how long a tombstone outlives the value
    /// it deletes. A restoring instance that read the value must still find the tombstone, or an
    /// erased person's state would come back.
    pub delete_retention_ms: Option<i64>,
    /// `max.message.bytes`: must exceed the ingress's MAX_BODY_BYTES plus headers, or a large
    /// (but accepted) webhook could never be written.
    pub max_message_bytes: Option<i64>,
}

/// A topic setting that is a number, or `"auto"`: derived from the cluster it is created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CountOrAuto {
    Count(i32),
    Auto(AutoWord),
}

/// The one word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

impl CountOrAuto {
    pub fn replicas(self) -> super::Replicas {
        match self {
            CountOrAuto::Count(count) => super::Replicas::Fixed(count),
            CountOrAuto::Auto(AutoWord::Auto) => super::Replicas::Auto,
        }
    }
}
