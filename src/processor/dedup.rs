//! De-duplication by event id within a window.
//!
//! Vendors re-deliver (Terra retries for ~24 h, Garmin holds up to 7 days) and the ingress's Redis
//! fast path is best-effort, so the processor is where exactly-once is made end to end: an event
//! whose id was already emitted within the window, with the same content, is dropped.
//!
//! The store key is the event id *scoped by vendor and vendor user* ([`key`]): a record id is
//! the vendor's, and nothing but its good faith keeps two users' record ids apart, so one user's
//! data must never be able to suppress another's.
//!
//! Same id with different content is not a duplicate but an update: Terra re-sends daily and body
//! summaries as growing supersets under the same natural key. Those pass (consumers upsert on
//! `event_id`) and the stored fingerprint moves on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{KeyValueStore, key_part};
use crate::event::BiometricEvent;

/// What the store remembers per event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Stream time (the record's `received_at`, ms) when the id was last emitted.
    pub at_ms: i64,
    /// Hex sha256 of the event's content (everything but delivery context).
    pub fingerprint: String,
    /// The newest vendor ordering timestamp emitted for this id (Terra's
    /// `X-Terra-Ordering-Timestamp`, ms), when the vendor gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time (or first time within the window): emit.
    New,
    /// Known id with new content: emit as an update.
    Updated,
    /// Already emitted with this content: drop.
    Duplicate,
    /// Older than what was emitted (its vendor ordering timestamp is behind the stored one): a
    /// late retry of a superseded version. Drop, so it never overwrites newer data.
    Stale,
}

/// Content fingerprint: the event without what differs between deliveries of the same data
/// (lineage, receipt time, trace id). Triggers are judged later and not part of it.
pub fn fingerprint(event: &BiometricEvent) -> String {
    let mut content = event.clone();
    content.received_at = 0;
    content.lineage = Default::default();
    content.trace_id = None;
    content.triggers.clear();
    content.priority = crate::event::Priority::Normal;
    content.user_id.clear();
    // The Avro datum, not JSON: profiling showed JSON formatting at ~9 % of the processor's time.
    hex::encode(Sha256::digest(crate::event::avro::datum(&content)))
}

/// The store key of an event: `<vendor>:<vendor user id>|<event id>`.
pub fn key(event: &BiometricEvent) -> String {
    format!("{}:{}|{}", event.vendor.slug(), key_part(&event.vendor_user_id), event.event_id)
}

/// Judges `event` against the store and records it when it will be emitted. `ordered_at` is the
/// vendor's ordering timestamp of this version (Terra: overwrite only when it is ≥ the stored one,
/// vendors.md §1.5).
pub fn check_and_record(store: &mut dyn KeyValueStore<Seen>, event: &BiometricEvent, window_ms: i64, ordered_at: Option<i64>) -> Verdict {
    let fingerprint = fingerprint(event);
    let now = event.received_at;
    let key = key(event);
    let stored = store.get(&key).filter(|seen| now - seen.at_ms <= window_ms);
    let verdict = match stored {
        None => Verdict::New,
        Some(seen) if seen.fingerprint == fingerprint => Verdict::Duplicate,
        Some(seen) if matches!((ordered_at, seen.ordered_at), (Some(this), Some(newest)) if this < newest) => Verdict::Stale,
        Some(_) => Verdict::Updated,
    };
    if matches!(verdict, Verdict::New | Verdict::Updated) {
        let previous = store.get(&key);
        let at_ms = now.max(previous.map_or(i64::MIN, |seen| seen.at_ms));
        let ordered_at = ordered_at.max(stored.and_then(|seen| seen.ordered_at));
        store.put(key, Seen { at_ms, fingerprint, ordered_at });
    }
    verdict
}

/// The key of an erased person's marker: a hash of the user id, not the id, for the marker lives
/// in the changelog until the window purges it.
pub fn erased_key(user_id: &str) -> String {
    format!("erased|{}", hex::encode(Sha256::digest(user_id.as_bytes())))
}

/// Remembers, for the window, that `user_id` was erased at `at_ms`: a record of theirs received
/// before then was in flight during the erase and must not be written.
pub fn mark_erased(store: &mut dyn KeyValueStore<Seen>, user_id: &str, at_ms: i64) {
    store.put(erased_key(user_id), Seen { at_ms, fingerprint: "user_erased".to_owned(), ordered_at: None });
}

/// Whether `event` was received before its person's erase (within the window).
pub fn erased_before(store: &dyn KeyValueStore<Seen>, event: &BiometricEvent) -> bool {
    store.get(&erased_key(&event.user_id)).is_some_and(|marker| event.received_at < marker.at_ms)
}

/// Removes ids last seen more than `window_ms` before `stream_time_ms`; returns how many.
pub fn purge(store: &mut dyn KeyValueStore<Seen>, stream_time_ms: i64, window_ms: i64) -> usize {
    let cutoff = stream_time_ms - window_ms;
    let expired = store.keys_where(&|seen: &Seen| seen.at_ms < cutoff);
    for key in &expired {
        store.delete(key);
    }
    expired.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Vendor};
    use crate::processor::store::MemoryStore;
    use crate::vendors::{RawInput, base_event};

    const DAY: i64 = 86_400_000;

    fn event(received_at_ms: i64, offset: i64, rmssd: f64) -> BiometricEvent {
        let input = RawInput {
            vendor: Vendor::Terra,
            body: b"{}",
            received_at_ms,
            vendor_user_id: None,
            delivery_id: Some("d"),
            trace_id: Some("t"),
            source_topic: "raw-webhooks",
            source_partition: 0,
            source_offset: offset,
        };
        let mut e = base_event(&input, EventKind::Sleep, "summary-1", "u", 0);
        e.hrv_rmssd_ms = Some(rmssd);
        e
    }

    #[test]
    fn a_redelivery_a_day_later_is_dropped() {
        let mut store = MemoryStore::default();
        assert_eq!(check_and_record(&mut store, &event(0, 1, 50.0), 7 * DAY, None), Verdict::New);
        assert_eq!(check_and_record(&mut store, &event(DAY, 99, 50.0), 7 * DAY, None), Verdict::Duplicate);
    }

    #[test]
    fn new_content_under_the_same_id_is_an_update() {
        let mut store = MemoryStore::default();
        check_and_record(&mut store, &event(0, 1, 50.0), 7 * DAY, None);
        assert_eq!(check_and_record(&mut store, &event(10, 2, 51.0), 7 * DAY, None), Verdict::Updated);
        assert_eq!(check_and_record(&mut store, &event(20, 3, 51.0), 7 * DAY, None), Verdict::Duplicate);
    }

    #[test]
    fn the_same_record_id_of_two_users_is_two_events() {
        let mut store = MemoryStore::default();
        let mut other = event(0, 2, 50.0);
        other.vendor_user_id = "someone-else".to_owned();
        assert_eq!(other.event_id, event(0, 1, 50.0).event_id, "same vendor record id");
        assert_eq!(check_and_record(&mut store, &event(0, 1, 50.0), 7 * DAY, None), Verdict::New);
        assert_eq!(check_and_record(&mut store, &other, 7 * DAY, None), Verdict::New);
    }

    #[test]
    fn an_older_version_never_overwrites_a_newer_one() {
        let mut store = MemoryStore::default();
        assert_eq!(check_and_record(&mut store, &event(0, 1, 50.0), 7 * DAY, Some(2_000)), Verdict::New);
        // A late retry of the version Terra emitted at 1 000: older than what was emitted.
        assert_eq!(check_and_record(&mut store, &event(10, 2, 48.0), 7 * DAY, Some(1_000)), Verdict::Stale);
        assert_eq!(check_and_record(&mut store, &event(20, 3, 52.0), 7 * DAY, Some(3_000)), Verdict::Updated);
        assert_eq!(check_and_record(&mut store, &event(30, 4, 53.0), 7 * DAY, None), Verdict::Updated, "no timestamp: newest");
        assert_eq!(store.map.values().next().unwrap().ordered_at, Some(3_000));
    }

    #[test]
    fn outside_the_window_it_is_new_again_and_purge_forgets() {
        let mut store = MemoryStore::default();
        check_and_record(&mut store, &event(0, 1, 50.0), 7 * DAY, None);
        assert_eq!(check_and_record(&mut store, &event(8 * DAY, 2, 50.0), 7 * DAY, None), Verdict::New);
        assert_eq!(purge(&mut store, 8 * DAY, 7 * DAY), 0, "just refreshed");
        assert_eq!(purge(&mut store, 16 * DAY, 7 * DAY), 1);
        assert!(store.is_empty());
    }
}
