//! `SelectionCache` remembers, per matcher set, the ids of the series it selects in label-set
//! order, so a query asked again (an HPA reads the same pods every 15 s, a dashboard refreshes
//! its panels) skips the postings intersection and the sort by label sets.
//!
//! Ids are handed out in order and a series' labels never change, so an entry taken when the next
//! id was N stays exact for the ids below N until a series is removed. When series were added
//! since, only the new ones are matched and merged in; when very many were, or any series was
//! removed, the selection is simply done again. Memory is bounded by a
//! total number of cached ids (least recently used entries go first).

use super::Index;
use crate::Matcher;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries kept at most.
const MAX_ENTRIES: usize = 256;
/// Ids kept over all entries at most (16 MiB).
const MAX_CACHED_IDS: usize = 1 << 22;
/// A selection larger than this is not kept (it would push out everything else).
const MAX_ENTRY_IDS: usize = 1 << 20;
/// Added series beyond which matching them one by one costs more than selecting again.
const MAX_SERIES_TO_CATCH_UP: usize = 1 << 14;

/// See the module documentation. Shared by readers: every method takes `&self`.
#[derive(Debug, Default)]
pub struct SelectionCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<Vec<u8>, Entry>,
    /// Ids held over all entries.
    cached_ids: usize,
    /// Use counter, for least-recently-used eviction.
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    /// `Index::next_id()` when `ids` was exact.
    series_count: usize,
    /// `Index::removals()` when `ids` was exact.
    removals: u64,
    ids: Arc<[u32]>,
    last_used: u64,
}

impl SelectionCache {
    /// The ids of the series of `index` matching every matcher, ordered by label set: what
    /// `index.select(matchers)` sorted with `Index::cmp_series` returns.
    pub fn sorted_ids(&self, index: &Index, matchers: &[Matcher]) -> Arc<[u32]> {
        let key = selection_key(matchers);
        let series_count = index.next_id() as usize;
        let removals = index.removals();
        let cached = {
            let mut entries = self.inner.lock();
            entries.tick += 1;
            let tick = entries.tick;
            entries.by_key.get_mut(&key).filter(|entry| entry.removals == removals).map(|entry| {
                entry.last_used = tick;
                (entry.series_count, entry.ids.clone())
            })
        };
        let ids: Arc<[u32]> = match cached {
            Some((count, ids)) if count == series_count => return ids,
            Some((count, ids)) if series_count.saturating_sub(count) <= MAX_SERIES_TO_CATCH_UP.max(ids.len()) => {
                let mut added: Vec<u32> =
                    (count as u32..series_count as u32).filter(|id| index.series_matches(*id, matchers)).collect();
                if added.is_empty() {
                    ids
                } else {
                    added.sort_unstable_by(|a, b| index.cmp_series(*a, *b));
                    merge(&ids, &added, index).into()
                }
            }
            _ => {
                let mut ids = index.select(matchers);
                // Label sets are unique, so an unstable sort is deterministic.
                ids.sort_unstable_by(|a, b| index.cmp_series(*a, *b));
                ids.into()
            }
        };
        if ids.len() <= MAX_ENTRY_IDS {
            self.inner.lock().store(key, series_count, removals, ids.clone());
        }
        ids
    }
}

impl Entries {
    fn store(&mut self, key: Vec<u8>, series_count: usize, removals: u64, ids: Arc<[u32]>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.cached_ids -= old.ids.len();
        }
        while !self.by_key.is_empty()
            && (self.by_key.len() >= MAX_ENTRIES || self.cached_ids + ids.len() > MAX_CACHED_IDS)
        {
            let Some(oldest) = self.by_key.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(evicted) = self.by_key.remove(&oldest) {
                self.cached_ids -= evicted.ids.len();
            }
        }
        self.tick += 1;
        self.cached_ids += ids.len();
        self.by_key.insert(key, Entry { series_count, removals, ids, last_used: self.tick });
    }
}

/// The two label-ordered id lists `a` and `b` as one.
fn merge(a: &[u32], b: &[u32], index: &Index) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if index.cmp_series(a[i], b[j]).is_le() {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Bytes that identify what `matchers` select: each matcher's name, operator and value (for a
/// set matcher, its values), length-prefixed so no two different matcher lists share a key.
fn selection_key(matchers: &[Matcher]) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    for m in matchers {
        m.write_key(&mut key);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Labels, MatchOp};

    fn uncached(index: &Index, matchers: &[Matcher]) -> Vec<u32> {
        let mut ids = index.select(matchers);
        ids.sort_unstable_by(|a, b| index.cmp_series(*a, *b));
        ids
    }

    fn pod(i: usize, app: &str) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("app", app), ("namespace", "ns"), ("pod", &format!("pod-{i}"))])
    }

    #[test]
    fn answers_stay_exact_as_series_arrive() {
        let mut index = Index::new();
        let cache = SelectionCache::default();
        let selections = [
            vec![Matcher::equal("app", "web")],
            vec![Matcher::equal("namespace", "ns"), Matcher::new(MatchOp::RegexMatch, "pod", "pod-1.*").unwrap()],
            vec![Matcher::new(MatchOp::NotEqual, "app", "web").unwrap()],
            vec![Matcher::one_of("pod", ["pod-3".to_string(), "pod-30".to_string(), "pod-7".to_string()])],
            vec![Matcher::new(MatchOp::RegexMatch, "missing", "").unwrap()],
        ];
        // Inserted in an order unlike label order, in rounds, with the cache asked in between.
        for round in 0..6 {
            for i in (0..40).rev() {
                let labels = pod(i * 6 + round, if i % 3 == 0 { "web" } else { "other" });
                if index.lookup(&labels).is_none() {
                    index.insert(&labels);
                }
            }
            for matchers in &selections {
                let expected = uncached(&index, matchers);
                assert_eq!(&*cache.sorted_ids(&index, matchers), &expected[..], "round {round}, {matchers:?}");
                assert_eq!(&*cache.sorted_ids(&index, matchers), &expected[..], "hit, round {round}");
            }
        }
    }

    #[test]
    fn matchers_that_print_alike_are_told_apart() {
        let mut index = Index::new();
        for value in ["a|b", "a", "b"] {
            index.insert(&Labels::from_pairs([("__name__", "m"), ("x", value)]));
        }
        let cache = SelectionCache::default();
        let one_value = [Matcher::one_of("x", ["a|b".to_string()])];
        let two_values = [Matcher::one_of("x", ["a".to_string(), "b".to_string()])];
        assert_eq!(one_value[0].value, two_values[0].value, "the display value is the same");
        assert_eq!(cache.sorted_ids(&index, &one_value).len(), 1);
        assert_eq!(cache.sorted_ids(&index, &two_values).len(), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut index = Index::new();
        for i in 0..10 {
            index.insert(&pod(i, "web"));
        }
        let cache = SelectionCache::default();
        for i in 0..(MAX_ENTRIES * 2) {
            cache.sorted_ids(&index, &[Matcher::equal("pod", format!("pod-{}", i % 10)), Matcher::equal("n", "")]);
            cache.sorted_ids(&index, &[Matcher::equal("x", i.to_string())]);
        }
        let entries = cache.inner.lock();
        assert!(entries.by_key.len() <= MAX_ENTRIES);
        assert_eq!(entries.cached_ids, entries.by_key.values().map(|e| e.ids.len()).sum::<usize>());
    }
}
