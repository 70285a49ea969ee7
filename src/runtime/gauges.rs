//! One stream thread's part of the processor-wide gauges.
//!
//! With `PROCESSOR_THREADS` > 1 several engines report the same gauges (tasks held, store
//! entries, pending fetches, the oldest Terra pointer). A plain `set` from each would leave the
//! gauge at whichever thread spoke last. Each engine instead owns a `ThreadGauges`: additive
//! gauges get its difference from what it reported before, so they read the sum over threads
//! (the instance's figure, as before threads existed, with no new label for dashboards); the
//! oldest pointer's age is a maximum, kept per thread in one table. Dropping an engine takes its
//! part back out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use prometheus::IntGauge;

/// Each thread's latest oldest-pointer age, by its slot.
static OLDEST_POINTER_AGES: LazyLock<Mutex<HashMap<u64, i64>>> = LazyLock::new(Default::default);
static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

/// One additive gauge's part from one thread.
struct Share {
    gauge: IntGauge,
    reported: i64,
}

impl Share {
    fn new(gauge: IntGauge) -> Share {
        Share { gauge, reported: 0 }
    }

    fn set(&mut self, value: i64) {
        if value != self.reported {
            self.gauge.add(value - self.reported);
            self.reported = value;
        }
    }
}

pub struct ThreadGauges {
    slot: u64,
    tasks: Share,
    fetch_pending: Share,
    store_entries: HashMap<String, Share>,
    oldest_pointer_age: i64,
}

impl Default for ThreadGauges {
    fn default() -> Self {
        ThreadGauges {
            slot: NEXT_SLOT.fetch_add(1, Ordering::Relaxed),
            tasks: Share::new(crate::metrics::TASKS.clone()),
            fetch_pending: Share::new(crate::metrics::FETCH_PENDING.clone()),
            store_entries: HashMap::new(),
            oldest_pointer_age: 0,
        }
    }
}

impl ThreadGauges {
    pub fn tasks(&mut self, held: usize) {
        self.tasks.set(held as i64);
    }

    pub fn fetch_pending(&mut self, waiting: usize) {
        self.fetch_pending.set(waiting as i64);
    }

    /// This thread's entries per store; a store it no longer reports counts as empty.
    pub fn store_entries(&mut self, sizes: &HashMap<&str, usize>) {
        for (name, share) in &mut self.store_entries {
            if !sizes.contains_key(name.as_str()) {
                share.set(0);
            }
        }
        for (name, size) in sizes {
            match self.store_entries.get_mut(*name) {
                Some(share) => share.set(*size as i64),
                None => {
                    let mut share = Share::new(crate::metrics::STORE_ENTRIES.with_label_values(&[name]));
                    share.set(*size as i64);
                    self.store_entries.insert((*name).to_owned(), share);
                }
            }
        }
    }

    /// The age of this thread's oldest pending Terra pointer (0: none); the gauge shows the
    /// oldest over all threads. Called every loop turn, so the shared table is only touched when
    /// the age changes (at most once a second).
    pub fn oldest_pointer_age(&mut self, seconds: i64) {
        if seconds == self.oldest_pointer_age {
            return;
        }
        self.oldest_pointer_age = seconds;
        let mut ages = OLDEST_POINTER_AGES.lock().expect("gauge table lock");
        ages.insert(self.slot, seconds);
        crate::metrics::TERRA_OLDEST_POINTER_AGE.set(ages.values().copied().max().unwrap_or(0));
    }
}

impl Drop for ThreadGauges {
    fn drop(&mut self) {
        self.tasks.set(0);
        self.fetch_pending.set(0);
        for share in self.store_entries.values_mut() {
            share.set(0);
        }
        self.oldest_pointer_age(0);
        OLDEST_POINTER_AGES.lock().expect("gauge table lock").remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_gauges_read_the_sum_over_threads_and_forget_a_dropped_one() {
        let gauge = IntGauge::new("test_share", "test").unwrap();
        let (mut a, mut b) = (Share::new(gauge.clone()), Share::new(gauge.clone()));
        a.set(5);
        b.set(3);
        assert_eq!(gauge.get(), 8);
        a.set(2);
        assert_eq!(gauge.get(), 5);
        b.set(0);
        assert_eq!(gauge.get(), 2);
    }

    #[test]
    fn store_entries_of_a_store_no_longer_reported_drop_to_zero() {
        let mut gauges = ThreadGauges::default();
        let name = "test-store-share";
        let read = || crate::metrics::STORE_ENTRIES.with_label_values(&[name]).get();
        let before = read();
        gauges.store_entries(&HashMap::from([(name, 7)]));
        assert_eq!(read() - before, 7);
        gauges.store_entries(&HashMap::new());
        assert_eq!(read() - before, 0);
        gauges.store_entries(&HashMap::from([(name, 4)]));
        drop(gauges);
        assert_eq!(read() - before, 0);
    }
}
