//! The key-value interface the stateful steps see.
//!
//! The business logic (`dedup.rs`, `baseline.rs`) is written against this trait; the streaming
//! runtime backs it with an in-memory table whose every change is also written to a compacted
//! changelog topic inside the current transaction (`runtime::store`). Tests use [`MemoryStore`].

use std::collections::HashMap;

pub trait KeyValueStore<V> {
    fn get(&self, key: &str) -> Option<&V>;
    fn put(&mut self, key: String, value: V);
    fn delete(&mut self, key: &str);
    /// The value of `key` to change in place, marked changed: no copy of it, which a `get` and a
    /// `put` make (a baseline holds up to 67 days of contributions). Only for a change that will
    /// be made: a changed mark costs a changelog record.
    fn get_mut(&mut self, key: &str) -> Option<&mut V>;
    /// As [`KeyValueStore::get_mut`], with the default value put first when there is none.
    fn get_or_default(&mut self, key: String) -> &mut V
    where
        V: Default;
    /// Keys for which `expired` holds (used to purge old entries).
    fn keys_where(&self, expired: &dyn Fn(&V) -> bool) -> Vec<String>;
    /// Keys that start with `prefix` (a user's entries: see [`key_part`]). A scan: for rare
    /// operations (deletions), not for every record.
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plain map: the store for unit tests.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStore<V> {
    pub map: HashMap<String, V>,
}

impl<V> Default for MemoryStore<V> {
    fn default() -> Self {
        MemoryStore { map: HashMap::new() }
    }
}

impl<V> KeyValueStore<V> for MemoryStore<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }
    fn put(&mut self, key: String, value: V) {
        self.map.insert(key, value);
    }
    fn delete(&mut self, key: &str) {
        self.map.remove(key);
    }
    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }
    fn get_or_default(&mut self, key: String) -> &mut V
    where
        V: Default,
    {
        self.map.entry(key).or_default()
    }
    fn keys_where(&self, expired: &dyn Fn(&V) -> bool) -> Vec<String> {
        self.map.iter().filter(|(_, v)| expired(v)).map(|(k, _)| k.clone()).collect()
    }
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.map.keys().filter(|key| key.starts_with(prefix)).cloned().collect()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A key component with the `|` separator escaped, so the parts of a store key are unambiguous
/// (the entries of user `a|b` never share the prefix of user `a`'s). Identifiers without `|` or
/// `%`, i.e. all real ones, are unchanged, so keys written before escaping still match.
pub fn key_part(part: &str) -> std::borrow::Cow<'_, str> {
    if part.contains(['|', '%']) { part.replace('%', "%25").replace('|', "%7C").into() } else { part.into() }
}
