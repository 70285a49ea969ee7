//! One raw record in, the records to write out.
//!
//! For a record of an ingress-format source (or a repartition topic): normalize with the vendor
//! module, then per event resolve our user id, drop duplicates, judge the HRV thresholds and the
//! personal baseline, set the priority and encode it to the routed topic with its headers. Oura and
//! WHOOP notifications go unchanged to `pending-fetch`; what cannot be normalized goes to the DLQ
//! with its original bytes and headers plus the reason. For a Terra-format source that is
//! repartitioned, the record is only re-keyed by vendor user.
//!
//! Only the identity lookups do I/O; they run first, so a dependency outage ([`InfraError`]) is
//! reported before any store is touched and the record can simply be retried later.

use std::collections::HashMap;

use rdkafka::message::{BorrowedHeaders, OwnedHeaders};

use super::backfill::{self, Backfill, SourceRecord};
use super::baseline::BaselineState;
use super::dedup::{self, Seen, Verdict};
use super::judge;
use super::plausibility;
use super::store::KeyValueStore;
use crate::event::avro::EventCodec;
use crate::event::{BiometricEvent, Vendor};
use crate::kafka::headers;
use crate::topology::{SourceFormat, Topology};
use crate::vendors::{self, IdentityChange, NormalizeError, Outcome, RawInput};

/// Dead-letter class: a record none of whose measurements is plausible.
pub const IMPLAUSIBLE_VALUE: &str = "implausible_value";
/// Dead-letter class: PostgreSQL refused the values the record gave (an identity lookup).
pub const DATABASE_REJECTED: &str = "database_rejected";
/// Dead-letter class: a Terra large historical request whose chunks did not all arrive.
pub const TERRA_BACKFILL_INCOMPLETE: &str = "terra_backfill_incomplete";

/// A consumed record, independent of the Kafka client type.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Option<&'a BorrowedHeaders>,
    /// The Kafka record timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// Set when `payload` is the opened form of a value sealed at rest (`at_rest`).
    pub at_rest: Option<AtRest<'a>>,
}

/// A sealed record's stored form, beside its opened payload.
#[derive(Clone, Copy)]
pub struct AtRest<'a> {
    /// The bytes as stored: what is copied on wherever the record's bytes go (dead letters,
    /// pending fetches, fetch retries), so they stay sealed there too.
    pub stored: &'a [u8],
    /// The vendor user id the seal carried (the ingress keeps it out of the headers).
    pub vendor_user_id: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// The value as it was stored: sealed if it was.
    pub fn stored_payload(&self) -> Option<&'a [u8]> {
        self.at_rest.map(|at_rest| at_rest.stored).or(self.payload)
    }
}

/// A record to write inside the current transaction.
#[derive(Debug)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
    /// For events: when the ingress received the data (end-to-end latency at commit).
    pub received_at_ms: Option<i64>,
    /// Raw bytes about this person that the pipeline made (a downloaded Terra payload, a
    /// re-keyed Terra record): the runtime seals them under the person's data key before
    /// writing, as the ingress seals what it writes. Copies of sealed records are already
    /// sealed and say `None`.
    pub seal_for: Option<SealFor>,
}

/// Whose data key seals an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealFor {
    pub vendor: Vendor,
    pub vendor_user_id: String,
}

/// A dependency (PostgreSQL) is unavailable: not the record's fault. The runtime pauses and
/// retries the same record later; it never goes to the DLQ.
#[derive(Debug, thiserror::Error)]
#[error("{dependency} unavailable: {message}")]
pub struct InfraError {
    pub dependency: &'static str,
    pub message: String,
}

/// Why an identity lookup or update failed, by what must happen to the record.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// PostgreSQL is unavailable: pause, and process the same record again later.
    #[error(transparent)]
    Unavailable(#[from] InfraError),
    /// PostgreSQL refused the values the record gave (`db::is_record_fault`): no retry can
    /// help, so the record is dead-lettered (`database_rejected`) and the partition goes on.
    #[error("the database refused the record's values: {0}")]
    Rejected(String),
}

/// Identity lookups and updates (PostgreSQL behind a cache in production, a map in tests).
pub trait Identities {
    fn resolve(&mut self, vendor: Vendor, vendor_user_id: &str) -> Result<Option<String>, LookupError>;
    fn apply(&mut self, change: &IdentityChange) -> Result<(), LookupError>;
}

/// The stores of the task (input partition) the record belongs to.
pub struct TaskStores<'s> {
    pub dedup: Option<&'s mut dyn KeyValueStore<Seen>>,
    pub baseline: Option<&'s mut dyn KeyValueStore<BaselineState>>,
    pub backfill: Option<&'s mut dyn KeyValueStore<Backfill>>,
}

/// What a source topic's records need.
#[derive(Debug, Clone)]
enum Role {
    /// Normalize; the vendor comes from the `vendor` header, or is fixed (Terra-format sources).
    Normalize { fixed_vendor: Option<Vendor> },
    /// Re-key by vendor user into the repartition topic.
    Rekey { repartition_topic: String },
}

pub struct Pipeline {
    topology: Topology,
    roles: HashMap<String, Role>,
    codecs: HashMap<String, EventCodec>,
}

impl Pipeline {
    /// `schema_ids`: the registered schema id for each event sink topic.
    pub fn new(topology: Topology, schema_ids: &HashMap<String, u32>) -> Self {
        let mut roles = HashMap::new();
        for source in &topology.sources {
            match (&source.format, &source.repartition_topic) {
                (SourceFormat::Ingress, _) => {
                    roles.insert(source.topic.clone(), Role::Normalize { fixed_vendor: None });
                }
                (SourceFormat::Terra, Some(repartition)) => {
                    roles.insert(source.topic.clone(), Role::Rekey { repartition_topic: repartition.clone() });
                    roles.insert(repartition.clone(), Role::Normalize { fixed_vendor: Some(Vendor::Terra) });
                }
                (SourceFormat::Terra, None) => {
                    roles.insert(source.topic.clone(), Role::Normalize { fixed_vendor: Some(Vendor::Terra) });
                }
            }
        }
        let codecs = schema_ids.iter().map(|(topic, id)| (topic.clone(), EventCodec::new(*id))).collect();
        Pipeline { topology, roles, codecs }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Everything `record` turns into.
    pub fn process(&self, record: &Record<'_>, identities: &mut dyn Identities, stores: TaskStores<'_>) -> Result<Vec<Output>, InfraError> {
        crate::metrics::RECORDS_IN.with_label_values(&[record.topic]).inc();
        match self.roles.get(record.topic) {
            Some(Role::Rekey { repartition_topic }) => Ok(vec![rekey(record, repartition_topic)]),
            // An erasure record has no value: only such records pay for the header lookup.
            Some(Role::Normalize { .. })
                if record.payload.is_none()
                    && let Some(user) = headers::get(record.headers, headers::ERASE_USER) =>
            {
                let vendor_users =
                    super::erase::parse_vendor_users(headers::get(record.headers, headers::ERASE_VENDOR_USERS).unwrap_or(""));
                let at_ms =
                    headers::get(record.headers, headers::ERASED_AT).and_then(|at| at.parse().ok()).or(record.timestamp_ms).unwrap_or(0);
                let deleted = super::erase::forget(stores, user, &vendor_users, at_ms);
                crate::metrics::ERASURES_APPLIED.inc();
                tracing::info!(
                    partition = record.partition,
                    entries = deleted,
                    "Erasure applied: the person's state is deleted from this task's stores."
                );
                Ok(Vec::new())
            }
            Some(Role::Normalize { fixed_vendor }) => self.normalize(record, *fixed_vendor, identities, stores),
            None => Ok(vec![self.dead_letter(record, "unknown_source", "record from a topic this topology does not read")]),
        }
    }

    fn normalize(
        &self,
        record: &Record<'_>,
        fixed_vendor: Option<Vendor>,
        identities: &mut dyn Identities,
        stores: TaskStores<'_>,
    ) -> Result<Vec<Output>, InfraError> {
        let header = |name| headers::get(record.headers, name);
        let vendor = match fixed_vendor.or_else(|| header(headers::VENDOR).and_then(Vendor::from_slug)) {
            Some(vendor) => vendor,
            None => return Ok(vec![self.dead_letter(record, "unknown_vendor", "missing or unknown `vendor` header")]),
        };
        let Some(body) = record.payload else {
            return Ok(vec![self.dead_letter(record, "empty_payload", "record has no value")]);
        };
        let input = raw_input(record, vendor, body);
        let outcome = match vendors::normalize(&input) {
            Ok(outcome) => outcome,
            Err(error) => return Ok(vec![self.rejected(record, &error)]),
        };
        match outcome {
            Outcome::Events(events) => {
                let chunk_of = headers::get(record.headers, headers::TERRA_REFERENCE).filter(|_| vendor == Vendor::Terra);
                let terra_user = events.first().map(|event| event.vendor_user_id.clone());
                let mut stores = stores;
                let backfill = stores.backfill.take();
                let outputs = self.events(record, events, identities, stores)?;
                // A chunk of a large historical request: counted once its events are out.
                if let (Some(reference), Some(store), Some(user)) = (chunk_of, backfill, terra_user) {
                    let delivery = headers::get(record.headers, headers::DELIVERY_ID).unwrap_or_default();
                    backfill::chunk(store, &user, reference, delivery, chrono::Utc::now().timestamp_millis());
                }
                Ok(outputs)
            }
            Outcome::Identity(change) => match identities.apply(&change) {
                Ok(()) => {
                    tracing::info!(?change, "Identity mapping updated.");
                    Ok(Vec::new())
                }
                Err(LookupError::Unavailable(infra)) => Err(infra),
                Err(LookupError::Rejected(message)) => Ok(vec![self.dead_letter(record, DATABASE_REJECTED, &message)]),
            },
            Outcome::PendingFetch(fetch) => {
                crate::metrics::RECORDS_OUT.with_label_values(&[&self.topology.pending_fetch_topic]).inc();
                let mut out = headers::copy(record.headers);
                if fetch.vendor == Vendor::Terra {
                    // A pointer's URL is a capability: it stays in the body, not in a header.
                    if headers::get(record.headers, headers::POINTER_ORIGIN).is_none() {
                        out = headers::with(
                            out,
                            headers::POINTER_ORIGIN,
                            &format!("{}/{}/{}", record.topic, record.partition, record.offset),
                        );
                    }
                } else if record.at_rest.is_none() {
                    // For operators reading the topic; a sealed record keeps the path (it names
                    // the vendor's record) inside its seal, where the fetch stage reads it.
                    out = headers::with(out, headers::FETCH_PATH, &fetch.api_path);
                }
                out = headers::with(out, headers::FETCH_DATA_TYPE, &fetch.data_type);
                Ok(vec![Output {
                    topic: self.topology.pending_fetch_topic.clone(),
                    key: record.key.map(<[u8]>::to_vec),
                    payload: record.stored_payload().unwrap_or(body).to_vec(),
                    headers: out,
                    received_at_ms: None,
                    seal_for: None,
                }])
            }
            Outcome::Notice { kind, detail } => {
                crate::metrics::NOTICES.with_label_values(&[&kind]).inc();
                if vendor == Vendor::Terra
                    && let (Some(store), Some(request)) = (stores.backfill, vendors::terra::large_request(body))
                {
                    self.backfill_notice(record, store, &request);
                }
                if vendor == Vendor::Terra && kind == "healthcheck" {
                    crate::metrics::TERRA_HEALTHCHECKS.inc();
                    crate::metrics::TERRA_HEALTHCHECK_LAST_SEEN.set(chrono::Utc::now().timestamp());
                    return Ok(Vec::new());
                }
                tracing::info!(vendor = vendor.slug(), kind = %kind, detail = %detail, "Recognised record without data for us; skipped.");
                Ok(Vec::new())
            }
        }
    }

    /// The outputs of a record's events (from a webhook body or a fetched API record): screened
    /// for plausibility, their users resolved, de-duplicated, judged and encoded. A record none
    /// of whose measurements is plausible is dead-lettered instead.
    fn events(
        &self,
        record: &Record<'_>,
        mut events: Vec<BiometricEvent>,
        identities: &mut dyn Identities,
        mut stores: TaskStores<'_>,
    ) -> Result<Vec<Output>, InfraError> {
        for event in &mut events {
            plausibility::screen(event, &self.topology.plausibility);
        }
        if plausibility::unusable(&events) {
            return Ok(vec![self.dead_letter(record, IMPLAUSIBLE_VALUE, &plausibility::describe_notes(&events))]);
        }
        // I/O first: nothing below may fail for a dependency.
        for event in &mut events {
            match resolve_user(event, identities) {
                Ok(()) => {}
                Err(LookupError::Unavailable(infra)) => return Err(infra),
                Err(LookupError::Rejected(message)) => return Ok(vec![self.dead_letter(record, DATABASE_REJECTED, &message)]),
            }
        }
        let mut outputs = Vec::with_capacity(events.len());
        let ordered_at = headers::get(record.headers, headers::TERRA_ORDERING_TIMESTAMP).and_then(|v| v.trim().parse::<i64>().ok());
        for mut event in events {
            if stores.dedup.as_deref().is_some_and(|store| dedup::erased_before(store, &event)) {
                crate::metrics::ERASED_IN_FLIGHT_DROPPED.inc();
                tracing::info!("An event of an erased person, received before the erase, dropped.");
                continue;
            }
            if let (Some(store), Some(params)) = (stores.dedup.as_deref_mut(), self.topology.dedup) {
                let ordered_at = ordered_at.filter(|_| event.vendor == Vendor::Terra);
                match dedup::check_and_record(store, &event, params.window_ms, ordered_at) {
                    Verdict::Duplicate => {
                        crate::metrics::DUPLICATES_DROPPED.inc();
                        tracing::debug!(event_id = %event.event_id, "Duplicate event dropped.");
                        continue;
                    }
                    Verdict::Stale => {
                        crate::metrics::STALE_UPDATES_DROPPED.with_label_values(&[event.vendor.slug()]).inc();
                        tracing::info!(event_id = %event.event_id, "Older version of an event dropped (ordering timestamp behind the emitted one).");
                        continue;
                    }
                    Verdict::New | Verdict::Updated => {}
                }
            }
            let baseline: Option<(&mut dyn KeyValueStore<BaselineState>, _)> =
                match (stores.baseline.as_deref_mut(), self.topology.baseline.as_ref()) {
                    (Some(store), Some(params)) => Some((store, params)),
                    _ => None,
                };
            judge::judge(&mut event, &self.topology.thresholds, baseline);
            for trigger in &event.triggers {
                crate::metrics::TRIGGERS.with_label_values(&[&trigger.trigger_type, severity_name(trigger.severity)]).inc();
            }
            outputs.push(self.encode(&event));
        }
        Ok(outputs)
    }

    /// A large-request notice: the backfill starts, or learns how many chunks follow.
    fn backfill_notice(&self, record: &Record<'_>, store: &mut dyn KeyValueStore<Backfill>, request: &vendors::terra::LargeRequest) {
        // Progress is delivery progress: wall-clock time, not the records' receipt time.
        let now = chrono::Utc::now().timestamp_millis();
        match request.expected {
            Some(expected) => {
                let source = SourceRecord {
                    topic: record.topic.to_owned(),
                    partition: record.partition,
                    offset: record.offset,
                    key: record.key.map(<[u8]>::to_vec),
                    payload: record.payload.unwrap_or_default().to_vec(),
                };
                backfill::sending(store, &request.terra_user, &request.reference, expected, source, now);
            }
            None => {
                backfill::started(store, &request.terra_user, &request.reference, now);
            }
        }
    }

    /// The dead letter of a backfill still missing chunks after its timeout: the
    /// `large_request_sending` notice, naming the reference and what is missing.
    pub fn backfill_incomplete(&self, key: &str, state: &Backfill) -> Output {
        let (reference, expected, received) = (key.rsplit('|').next().unwrap_or(key), state.expected.unwrap_or(0), state.chunks.len());
        let message = format!("large request {reference}: {received} of {expected} chunks arrived before the timeout");
        let source = state.sending.clone().unwrap_or_else(|| SourceRecord {
            topic: String::new(),
            partition: -1,
            offset: -1,
            key: None,
            payload: Vec::new(),
        });
        let record = Record {
            topic: &source.topic,
            partition: source.partition,
            offset: source.offset,
            key: source.key.as_deref(),
            payload: Some(&source.payload),
            headers: None,
            timestamp_ms: None,
            at_rest: None,
        };
        let letter = self.dead_letter(&record, TERRA_BACKFILL_INCOMPLETE, &message);
        let mut out = headers::with(letter.headers, headers::VENDOR, Vendor::Terra.slug());
        out = headers::with(out, headers::TERRA_REFERENCE, reference);
        Output { headers: out, ..letter }
    }

    fn encode(&self, event: &BiometricEvent) -> Output {
        let topic = self.topology.route(event.vendor);
        let codec = self.codecs.get(topic).expect("a codec is registered for every event sink");
        let payload = codec.encode(event).expect("events always encode against their own schema");
        crate::metrics::RECORDS_OUT.with_label_values(&[topic]).inc();
        Output {
            topic: topic.to_owned(),
            key: Some(event.user_id.as_bytes().to_vec()),
            payload,
            headers: headers::event_headers(event),
            received_at_ms: Some(event.received_at),
            seal_for: None,
        }
    }

    fn rejected(&self, record: &Record<'_>, error: &NormalizeError) -> Output {
        self.dead_letter(record, error.class(), &error.to_string())
    }

    /// The original bytes and headers, plus why and where from.
    pub fn dead_letter(&self, record: &Record<'_>, class: &str, message: &str) -> Output {
        self.dead_letter_without(record, class, message, &[])
    }

    /// [`Pipeline::dead_letter`], leaving out the headers named in `strip`.
    fn dead_letter_without(&self, record: &Record<'_>, class: &str, message: &str, strip: &[&str]) -> Output {
        crate::metrics::DLQ_RECORDS.with_label_values(&[class]).inc();
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            error_class = class,
            "Record sent to the dead-letter topic."
        );
        let mut out = headers::copy_except(record.headers, strip);
        out = headers::with(out, headers::ERROR_CLASS, class);
        // A parser's message can quote the payload; a sealed record's headers must not.
        let message = if record.at_rest.is_some() { redact_quoted(message) } else { message.to_owned() };
        out = headers::with(out, headers::ERROR_MESSAGE, &truncate(&message, 1_000));
        out = headers::with(out, headers::SOURCE_TOPIC, record.topic);
        out = headers::with(out, headers::SOURCE_PARTITION, &record.partition.to_string());
        out = headers::with(out, headers::SOURCE_OFFSET, &record.offset.to_string());
        Output {
            topic: self.topology.dlq_topic.clone(),
            key: record.key.map(<[u8]>::to_vec),
            payload: record.stored_payload().unwrap_or_default().to_vec(),
            headers: out,
            received_at_ms: None,
            seal_for: None,
        }
    }
}

/// The vendor module's view of a raw record: its bytes plus what the ingress put in headers.
fn raw_input<'a>(record: &Record<'a>, vendor: Vendor, body: &'a [u8]) -> RawInput<'a> {
    let header = |name| headers::get(record.headers, name);
    let received_at_ms = header(headers::RECEIVED_AT)
        .and_then(|v| v.parse().ok())
        .or(record.timestamp_ms)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    RawInput {
        vendor,
        body,
        received_at_ms,
        vendor_user_id: record.at_rest.and_then(|at_rest| at_rest.vendor_user_id).or_else(|| header(headers::VENDOR_USER_ID)),
        // Ids only as we write them: a record published by someone else may carry anything.
        delivery_id: header(headers::DELIVERY_ID).filter(|id| vendors::is_identifier(id)),
        trace_id: header(headers::TRACE_ID).filter(|id| crate::telemetry::is_trace_id(id)),
        source_topic: record.topic,
        source_partition: record.partition,
        source_offset: record.offset,
    }
}

/// Our user id: a mapped link wins; else the id the payload gave (Terra `reference_id`); else
/// the vendor-scoped fallback `base_event` set. Apple Health uploads are authenticated per user,
/// so their vendor user id is ours.
fn resolve_user(event: &mut BiometricEvent, identities: &mut dyn Identities) -> Result<(), LookupError> {
    if event.vendor == Vendor::AppleHealth {
        event.user_id = event.vendor_user_id.clone();
        return Ok(());
    }
    if let Some(user) = identities.resolve(event.vendor, &event.vendor_user_id)? {
        event.user_id = user;
    }
    Ok(())
}

/// Re-keys a Terra-format record by vendor user (sub-topology 0), keeping its bytes and headers
/// and adding the ingress headers the normalizer reads.
fn rekey(record: &Record<'_>, repartition_topic: &str) -> Output {
    let body = record.payload.unwrap_or_default();
    // Terra's Kafka destination sends pointers without a user: spread them by URL (the payload
    // they lead to is keyed by its user once downloaded).
    let pointer = vendors::terra::is_pointer(body);
    let user = vendors::vendor_user_id(Vendor::Terra, body);
    let key = user
        .as_ref()
        .map(|user| format!("terra:{user}"))
        .or_else(|| pointer.then(|| vendors::terra::pointer::routing_key(body)).flatten())
        .unwrap_or_else(|| "terra".to_owned());
    let mut out = headers::copy(record.headers);
    if pointer && headers::get(record.headers, headers::POINTER_ORIGIN).is_none() {
        out = headers::with(out, headers::POINTER_ORIGIN, &format!("{}/{}/{}", record.topic, record.partition, record.offset));
    }
    out = headers::with(out, headers::VENDOR, Vendor::Terra.slug());
    if headers::get(record.headers, headers::RECEIVED_AT).is_none() {
        let received_at = record.timestamp_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        out = headers::with(out, headers::RECEIVED_AT, &received_at.to_string());
    }
    if headers::get(record.headers, headers::DELIVERY_ID).is_none() {
        // Terra direct records carry no delivery id: their position in terra-direct is stable.
        let delivery = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        out = headers::with(out, headers::DELIVERY_ID, &delivery);
    }
    crate::metrics::RECORDS_OUT.with_label_values(&[repartition_topic]).inc();
    // The copy is ours to seal (Terra's destination writes in the clear); a pointer names no one.
    let seal_for = user.filter(|_| record.at_rest.is_none()).map(|vendor_user_id| SealFor { vendor: Vendor::Terra, vendor_user_id });
    Output {
        topic: repartition_topic.to_owned(),
        key: Some(key.into_bytes()),
        payload: body.to_vec(),
        headers: out,
        received_at_ms: None,
        seal_for,
    }
}

fn severity_name(severity: crate::event::Severity) -> &'static str {
    match severity {
        crate::event::Severity::Low => "LOW",
        crate::event::Severity::Medium => "MEDIUM",
        crate::event::Severity::High => "HIGH",
        crate::event::Severity::Critical => "CRITICAL",
    }
}

/// `text` with whatever it quotes ("…" or `…`, as serde's messages quote values) replaced by `…`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

mod fetch;
mod fit;
#[cfg(test)]
mod tests;

pub use fetch::FetchPlan;
pub use fit::{OUTPUT_TOO_LARGE, TopicLimits};
