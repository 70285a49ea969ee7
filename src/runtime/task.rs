//! A task: the unit of state and co-partitioning, as in Kafka Streams.
//!
//! Task p owns partition p of every stateful input (the ingress source and the repartition
//! topics) and the stores for that partition. Because producers key by vendor user with the same
//! partitioner, partition p of each of those topics holds the same users, so one task sees all of
//! a user's records and holds all of that user's state.

use crate::processor::TaskStores;
use crate::processor::backfill::Backfill;
use crate::processor::baseline::BaselineState;
use crate::processor::dedup::Seen;
use crate::topology::Topology;

use super::store::{ChangelogRecord, ChangelogStore, Restorable};

pub struct Task {
    pub partition: i32,
    pub dedup: Option<ChangelogStore<Seen>>,
    pub baseline: Option<ChangelogStore<BaselineState>>,
    pub backfill: Option<ChangelogStore<Backfill>>,
    /// Largest `received_at` seen (ms): the task's stream time, used to expire dedup entries.
    pub stream_time_ms: i64,
    pub last_purge_ms: i64,
}

impl Task {
    /// An empty task for partition `p` with the topology's stores (restore before use).
    pub fn new(topology: &Topology, partition: i32) -> Task {
        let store = |kind: &str| {
            topology
                .processors
                .iter()
                .find(|(_, type_name, _)| *type_name == kind)
                .and_then(|(_, _, store)| store.as_deref())
                .and_then(|name| topology.changelog_topic(name).map(|changelog| (name.to_owned(), changelog.to_owned())))
        };
        Task {
            partition,
            dedup: store("dedup").map(|(name, changelog)| ChangelogStore::new(&name, &changelog, partition)),
            baseline: store("hrv-baseline").map(|(name, changelog)| ChangelogStore::new(&name, &changelog, partition)),
            backfill: store("terra-backfill").map(|(name, changelog)| ChangelogStore::new(&name, &changelog, partition)),
            stream_time_ms: i64::MIN,
            last_purge_ms: i64::MIN,
        }
    }

    pub fn task_stores(&mut self) -> TaskStores<'_> {
        TaskStores {
            dedup: self.dedup.as_mut().map(|s| s as &mut dyn crate::processor::store::KeyValueStore<Seen>),
            baseline: self.baseline.as_mut().map(|s| s as &mut dyn crate::processor::store::KeyValueStore<BaselineState>),
            backfill: self.backfill.as_mut().map(|s| s as &mut dyn crate::processor::store::KeyValueStore<Backfill>),
        }
    }

    /// Every store of the task, for the runtime's generic handling.
    pub fn restorables(&mut self) -> Vec<&mut dyn Restorable> {
        let mut all: Vec<&mut dyn Restorable> = Vec::new();
        if let Some(store) = self.dedup.as_mut() {
            all.push(store);
        }
        if let Some(store) = self.baseline.as_mut() {
            all.push(store);
        }
        if let Some(store) = self.backfill.as_mut() {
            all.push(store);
        }
        all
    }

    fn stores(&self) -> Vec<&dyn Restorable> {
        let mut all: Vec<&dyn Restorable> = Vec::new();
        if let Some(store) = &self.dedup {
            all.push(store);
        }
        if let Some(store) = &self.baseline {
            all.push(store);
        }
        if let Some(store) = &self.backfill {
            all.push(store);
        }
        all
    }

    /// Changelog records of every store, with their topic, for the current transaction.
    pub fn drain_changelog(&mut self) -> Vec<(String, i32, ChangelogRecord)> {
        let partition = self.partition;
        self.restorables()
            .into_iter()
            .flat_map(|store| {
                let topic = store.changelog().0.to_owned();
                store.drain().into_iter().map(move |record| (topic.clone(), partition, record))
            })
            .collect()
    }

    /// Entries per store name, for the size gauge.
    pub fn sizes(&self) -> Vec<(&str, usize)> {
        self.stores().into_iter().map(|store| (store.store_name(), store.entries())).collect()
    }
}
