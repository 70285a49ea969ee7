//! A person's erasure as a task applies it: every entry of theirs in the task's stores is
//! deleted (a tombstone in each changelog, in the same transaction as the erasure record's
//! offset), so neither this process nor one restoring the store later has it.
//!
//! `users erase` writes the erasure record to every partition of the ingress topic, so every task
//! (every partition, every instance) gets one, after whatever it read about the person before.
//! The record names the person (`erase-user`) and their vendor user ids (`erase-vendor-users`,
//! `<vendor>:<id>` comma-separated), because the de-duplication and backfill stores are keyed
//! by the vendor's id and the identity links that map them are deleted by then.

use super::pipeline::TaskStores;
use super::store::key_part;
use crate::event::Vendor;

/// `<vendor>:<id>,...` as the `erase-vendor-users` header carries it.
pub fn format_vendor_users(vendor_users: &[(Vendor, String)]) -> String {
    vendor_users
        .iter()
        .map(|(vendor, id)| format!("{}:{}", vendor.slug(), id.replace('%', "%25").replace(',', "%2C")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The header's pairs; an unknown vendor or a malformed part is skipped.
pub fn parse_vendor_users(text: &str) -> Vec<(Vendor, String)> {
    text.split(',')
        .filter_map(|part| {
            let (slug, id) = part.split_once(':')?;
            let id = id.replace("%2C", ",").replace("%25", "%");
            Some((Vendor::from_slug(slug)?, id)).filter(|(_, id)| !id.is_empty())
        })
        .collect()
}

/// Deletes every entry of `user` (and of their `vendor_users`) from the task's stores; returns
/// how many. The de-duplication store then remembers the erase (`at_ms`) for its window, so an
/// upload accepted before the erase but processed after it is dropped, never written.
pub fn forget(stores: TaskStores<'_>, user: &str, vendor_users: &[(Vendor, String)], at_ms: i64) -> usize {
    let mut deleted = 0;
    if let Some(store) = stores.baseline {
        // The HRV baselines and the illness signals: keyed by our user id.
        for key in store.keys_with_prefix(&super::baseline::user_prefix(user)) {
            store.delete(&key);
            deleted += 1;
        }
    }
    // Apple Health's vendor user is our user (the upload token's).
    let apple = (Vendor::AppleHealth, user.to_owned());
    if let Some(store) = stores.dedup {
        for (vendor, id) in vendor_users.iter().chain(std::iter::once(&apple)) {
            for key in store.keys_with_prefix(&format!("{}:{}|", vendor.slug(), key_part(id))) {
                store.delete(&key);
                deleted += 1;
            }
        }
        super::dedup::mark_erased(store, user, at_ms);
    }
    if let Some(store) = stores.backfill {
        for (_, id) in vendor_users.iter().filter(|(vendor, _)| *vendor == Vendor::Terra) {
            for key in store.keys_with_prefix(&format!("{}|", key_part(id))) {
                store.delete(&key);
                deleted += 1;
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::store::{KeyValueStore, MemoryStore};

    #[test]
    fn vendor_users_survive_the_header_even_with_commas() {
        let pairs = vec![(Vendor::Terra, "t-1".to_owned()), (Vendor::Oura, "a,b%c".to_owned())];
        assert_eq!(parse_vendor_users(&format_vendor_users(&pairs)), pairs);
        assert_eq!(parse_vendor_users("fitbit:x,oura:,garbage,whoop:7"), [(Vendor::Whoop, "7".to_owned())]);
    }

    #[test]
    fn only_the_person_s_entries_are_deleted() {
        let mut baseline = MemoryStore::default();
        let mut dedup = MemoryStore::default();
        let mut backfill = MemoryStore::default();
        for key in ["gone|hrv_rmssd_ms|TERRA|-|NIGHTLY_MEAN", "gone|resting_hr|TERRA|-|NIGHTLY_MEAN", "gone-not|hrv_rmssd_ms|TERRA|-|SPOT"]
        {
            baseline.put(key.to_owned(), Default::default());
        }
        for key in ["terra:t-1|e1", "terra:t-1|e2", "oura:o-1|e3", "apple-health:gone|e4", "terra:t-10|e5"] {
            dedup.put(key.to_owned(), crate::processor::dedup::Seen { at_ms: 0, fingerprint: String::new(), ordered_at: None });
        }
        backfill.put("t-1|ref".to_owned(), Default::default());
        backfill.put("t-2|ref".to_owned(), Default::default());
        let stores = TaskStores { dedup: Some(&mut dedup), baseline: Some(&mut baseline), backfill: Some(&mut backfill) };
        let deleted = forget(stores, "gone", &[(Vendor::Terra, "t-1".to_owned()), (Vendor::Oura, "o-1".to_owned())], 5_000);
        assert_eq!(deleted, 2 + 4 + 1);
        assert_eq!(baseline.map.keys().collect::<Vec<_>>(), ["gone-not|hrv_rmssd_ms|TERRA|-|SPOT"]);
        let mut left: Vec<&String> = dedup.map.keys().collect();
        left.sort();
        let marker = crate::processor::dedup::erased_key("gone");
        assert_eq!(left, [&marker, &"terra:t-10|e5".to_owned()]);
        assert!(!marker.contains("gone"), "the marker holds no user id");
        // An upload accepted before the erase is in flight: dropped; one after it is new data.
        let mut event = crate::event::BiometricEvent::user_erased("gone", Vendor::Terra, 0); // any event of theirs
        event.kind = crate::event::EventKind::Sleep;
        event.received_at = 4_999;
        assert!(crate::processor::dedup::erased_before(&dedup, &event));
        event.received_at = 5_000;
        assert!(!crate::processor::dedup::erased_before(&dedup, &event));
        event.user_id = "gone-not".to_owned();
        event.received_at = 1;
        assert!(!crate::processor::dedup::erased_before(&dedup, &event));
        assert_eq!(backfill.map.keys().collect::<Vec<_>>(), ["t-2|ref"]);
    }
}
