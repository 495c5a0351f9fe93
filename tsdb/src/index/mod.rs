//! `Index` is series identity and the inverted index: label set ↔ series id, and label name →
//! value → postings (sorted ids), answering selectors without scanning every series.
//!
//! Strings are interned once (`symbols`, reference-counted so a string no live series uses is
//! freed); a series is one entry of words packed with its neighbours' (`entries`): the id of its
//! list of label names (interned too: the series of one job share a handful of name lists) and its
//! value symbols, which keeps the per-series cost to a few dozen bytes plus its postings entries. Ids are handed out in order and never reused,
//! so postings stay sorted by appending; removing series (`Index::remove`) takes them out of every
//! structure in one batch.
//!
//! A matcher that rejects the empty string selects the union of the postings of the values it
//! accepts (regexes enumerate the label's values). A matcher that accepts the empty string also
//! accepts series without the label, so it is answered as "all series minus the union of the
//! values it rejects".

mod entries;
pub mod postings;
mod selection_cache;

pub use selection_cache::SelectionCache;

use crate::{Label, Labels, MatchOp, Matcher};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// Hashes a key that is already a keyed hash of a label set: one multiply spreads its bits over
/// the table's 64-bit hash (hashbrown takes control bits from the top).
#[derive(Default)]
struct SpreadHasher(u64);

impl Hasher for SpreadHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// 32-bit keyed hash of a label set → id (4 + 4 bytes an entry; collisions are chained in
/// `Index::collisions`, and a per-index random key keeps senders from aiming at them).
type ByHash = HashMap<u32, u32, BuildHasherDefault<SpreadHasher>>;

/// A map hashed with foldhash seeded at random per process (hashbrown's default hasher): label
/// names and values come from senders, so the hash is keyed, but SipHash cost about a tenth of
/// a remote-write stream creating series.
pub(crate) type KeyedMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// The inverted index. Not synchronised: the store wraps it in a `RwLock`.
#[derive(Debug, Default)]
pub struct Index {
    symbols: KeyedMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
    /// Uses of each symbol by live series (as a name or a value); 0 means free.
    symbol_refs: Vec<u32>,
    free_symbols: Vec<u32>,
    /// id → `[name list id, value symbols…]` in label order (see `NameLists`).
    series: entries::Entries,
    name_lists: NameLists,
    /// The id the next new series gets.
    next_id: u32,
    /// Every live id, sorted (what a selection without a positive matcher starts from).
    all: Vec<u32>,
    /// Batches of removals so far (selections cached before a removal are redone).
    removals: u64,
    /// The key of the label set hash (keyed as [`KeyedMap`] is).
    hash_key: foldhash::quality::RandomState,
    by_hash: ByHash,
    /// Further ids whose label sets share a hash with the one in `by_hash` (a few per million).
    collisions: KeyedMap<u32, Vec<u32>>,
    postings: KeyedMap<u32, KeyedMap<u32, Vec<u32>>>,
}

/// The lists of label names series carry, interned and reference-counted by the series using them.
#[derive(Debug, Default)]
struct NameLists {
    lists: Vec<Arc<[u32]>>,
    refs: Vec<u32>,
    ids: KeyedMap<Arc<[u32]>, u32>,
    free: Vec<u32>,
}

impl NameLists {
    /// The id of `names` (one more use of it).
    fn intern(&mut self, names: &[u32]) -> u32 {
        if let Some(id) = self.ids.get(names) {
            self.refs[*id as usize] += 1;
            return *id;
        }
        let list: Arc<[u32]> = Arc::from(names);
        let id = match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = list.clone();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.lists.push(list.clone());
                self.refs.push(1);
                (self.lists.len() - 1) as u32
            }
        };
        self.ids.insert(list, id);
        id
    }

    /// One use of list `id` fewer; the list is freed with its last use.
    fn release(&mut self, id: u32) {
        let Some(refs) = self.refs.get_mut(id as usize) else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            let list = std::mem::replace(&mut self.lists[id as usize], Arc::from([]));
            self.ids.remove(&list);
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> &[u32] {
        self.lists.get(id as usize).map_or(&[], |l| &l[..])
    }
}

/// A series' (name, value) symbol pairs, in label order.
#[derive(Clone, Copy)]
struct Pairs<'a> {
    names: &'a [u32],
    values: &'a [u32],
}

impl<'a> Pairs<'a> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.names.iter().copied().zip(self.values.iter().copied())
    }
}

/// Which label names [`Index::labels_projected`] keeps, as symbols (`None`: every label).
#[derive(Debug, Clone)]
pub struct Projection {
    name_symbols: Option<Vec<u32>>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// The id the next new series gets (every id below it was handed out once).
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Bytes the series log record of series `id` takes (0 when it is not live).
    pub fn record_bytes(&self, id: u32) -> u64 {
        match self.contains(id) {
            true => crate::series_log::record_bytes(
                self.pairs(id).iter().map(|(n, v)| (&*self.strings[n as usize], &*self.strings[v as usize])),
            ),
            false => 0,
        }
    }

    /// Makes `next_id` at least `id` (ids of removed series are never handed out again).
    pub fn skip_to(&mut self, id: u32) {
        self.next_id = self.next_id.max(id);
    }

    /// Batches of removals so far.
    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// Whether `id` is a live series.
    pub fn contains(&self, id: u32) -> bool {
        self.series.get(id).is_some()
    }

    fn symbol(&self, s: &str) -> Option<u32> {
        self.symbols.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        let id = match self.symbols.get(s) {
            Some(id) => *id,
            None => {
                let s: Arc<str> = Arc::from(s);
                let id = match self.free_symbols.pop() {
                    Some(id) => {
                        self.strings[id as usize] = s.clone();
                        id
                    }
                    None => {
                        self.strings.push(s.clone());
                        self.symbol_refs.push(0);
                        (self.strings.len() - 1) as u32
                    }
                };
                self.symbols.insert(s, id);
                id
            }
        };
        self.symbol_refs[id as usize] += 1;
        id
    }

    fn release_symbol(&mut self, id: u32) {
        let refs = &mut self.symbol_refs[id as usize];
        *refs -= 1;
        if *refs == 0 {
            let s = std::mem::replace(&mut self.strings[id as usize], Arc::from(""));
            self.symbols.remove(&s);
            self.free_symbols.push(id);
        }
    }

    fn pairs(&self, id: u32) -> Pairs<'_> {
        self.pairs_of(self.series.get(id).unwrap_or(&[]))
    }

    /// The pairs of a series entry (`[name list id, values…]`).
    fn pairs_of<'a>(&'a self, entry: &'a [u32]) -> Pairs<'a> {
        match entry.split_first() {
            Some((names, values)) => Pairs { names: self.name_lists.get(*names), values },
            None => Pairs { names: &[], values: &[] },
        }
    }

    fn same_labels(&self, id: u32, labels: &Labels) -> bool {
        let pairs = self.pairs(id);
        pairs.len() == labels.len()
            && pairs
                .iter()
                .zip(labels.iter())
                .all(|((n, v), l)| *self.strings[n as usize] == *l.name && *self.strings[v as usize] == *l.value)
    }

    fn labels_hash(&self, labels: &Labels) -> u32 {
        self.strings_hash(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    fn strings_hash<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u32 {
        let mut h = self.hash_key.build_hasher();
        for (name, value) in pairs {
            name.hash(&mut h);
            value.hash(&mut h);
        }
        let full = h.finish();
        (full ^ (full >> 32)) as u32
    }

    /// The id of the series with exactly these labels.
    pub fn lookup(&self, labels: &Labels) -> Option<u32> {
        let hash = self.labels_hash(labels);
        let first = *self.by_hash.get(&hash)?;
        if self.same_labels(first, labels) {
            return Some(first);
        }
        self.collisions.get(&hash)?.iter().copied().find(|id| self.same_labels(*id, labels))
    }

    /// Adds a series (the caller checked it is new) and returns its id, the next in sequence.
    #[cfg(test)]
    pub fn insert(&mut self, labels: &Labels) -> u32 {
        let id = self.next_id;
        self.insert_with_id(id, labels);
        id
    }

    /// Adds a series under `id`, which must be at least [`Index::next_id`] (recovery inserts
    /// the surviving series in id order; ids of removed series are skipped).
    pub fn insert_with_id(&mut self, id: u32, labels: &Labels) {
        debug_assert!(id >= self.next_id, "BUG: ids are handed out in order");
        self.next_id = id.saturating_add(1).max(self.next_id);
        let names: Vec<u32> = labels.iter().map(|l| self.intern(&l.name)).collect();
        let mut entry: Vec<u32> = Vec::with_capacity(labels.len() + 1);
        entry.push(self.name_lists.intern(&names));
        entry.extend(labels.iter().map(|l| self.intern(&l.value)));
        for (name, value) in names.iter().zip(&entry[1..]) {
            self.postings.entry(*name).or_default().entry(*value).or_default().push(id);
        }
        self.series.set(id, &entry);
        self.all.push(id);
        let hash = self.labels_hash(labels);
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.entry(hash).or_default().push(id),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
    }

    /// Removes the series `ids` (sorted) from every structure, in one pass over each postings list
    /// they appear in; ids that are not live are ignored.
    pub fn remove(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let mut by_pair: KeyedMap<(u32, u32), Vec<u32>> = KeyedMap::default();
        let mut released: Vec<u32> = Vec::new();
        let mut entry: Vec<u32> = Vec::new();
        for &id in ids {
            let Some(words) = self.series.get(id) else {
                continue;
            };
            entry.clear();
            entry.extend_from_slice(words);
            self.series.remove(id);
            let pairs = self.pairs_of(&entry);
            let hash =
                self.strings_hash(pairs.iter().map(|(n, v)| (&*self.strings[n as usize], &*self.strings[v as usize])));
            for (name, value) in pairs.iter() {
                by_pair.entry((name, value)).or_default().push(id);
                released.push(name);
                released.push(value);
            }
            self.forget_hash(hash, id);
            if let Some(list) = entry.first() {
                self.name_lists.release(*list);
            }
        }
        for ((name, value), removed) in by_pair {
            let Some(values) = self.postings.get_mut(&name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&value) {
                *list = postings::subtract(list, &removed);
                if list.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.postings.remove(&name);
            }
        }
        for symbol in released {
            self.release_symbol(symbol);
        }
        self.all = postings::subtract(&self.all, ids);
        self.removals += 1;
    }

    fn forget_hash(&mut self, hash: u32, id: u32) {
        if self.by_hash.get(&hash) == Some(&id) {
            match self.collisions.get_mut(&hash).and_then(Vec::pop) {
                Some(other) => {
                    self.by_hash.insert(hash, other);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        } else if let Some(others) = self.collisions.get_mut(&hash) {
            others.retain(|other| *other != id);
        }
        if self.collisions.get(&hash).is_some_and(Vec::is_empty) {
            self.collisions.remove(&hash);
        }
    }

    /// `keep` resolved to label-name symbols once, for [`Index::labels_projected`] over many
    /// series (names no series carries are left out: they can never be kept).
    pub fn projection(&self, keep: Option<&[String]>) -> Projection {
        Projection { name_symbols: keep.map(|names| names.iter().filter_map(|n| self.symbol(n)).collect()) }
    }

    /// The label set of `id`, only the labels `projection` keeps.
    pub fn labels_projected(&self, id: u32, projection: &Projection) -> Labels {
        let pairs = self.pairs(id);
        let label = |(n, v): (u32, u32)| Label::new(&*self.strings[n as usize], &*self.strings[v as usize]);
        match &projection.name_symbols {
            None => Labels::from_sorted(pairs.iter().map(label).collect()),
            Some(names) => {
                // Sized for the kept labels, not for a filter's unknown count.
                let mut kept = Vec::with_capacity(names.len().min(pairs.len()));
                kept.extend(pairs.iter().filter(|(n, _)| names.contains(n)).map(label));
                Labels::from_sorted(kept)
            }
        }
    }

    /// Orders series `a` and `b` exactly as their label sets order, comparing strings only at the
    /// first pair whose symbols differ (selected series mostly share their leading labels).
    pub fn cmp_series(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (a, b) = (self.pairs(a), self.pairs(b));
        for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
            if an != bn {
                return self.strings[an as usize].cmp(&self.strings[bn as usize]);
            }
            if av != bv {
                return self.strings[av as usize].cmp(&self.strings[bv as usize]);
            }
        }
        a.len().cmp(&b.len())
    }

    /// Whether series `id` satisfies every matcher (a missing label matches as the empty string),
    /// checked on its own labels: [`Index::select`] for one series.
    pub fn series_matches(&self, id: u32, matchers: &[Matcher]) -> bool {
        let pairs = self.pairs(id);
        matchers.iter().all(|m| {
            let value = pairs
                .iter()
                .find(|(n, _)| *self.strings[*n as usize] == *m.name)
                .map_or("", |(_, v)| &*self.strings[v as usize]);
            m.matches(value)
        })
    }

    /// Postings lists of the values of label `name` for which `accept(value)` holds.
    fn value_postings<'a>(&'a self, name: &str, accept: impl Fn(&str) -> bool) -> Vec<&'a [u32]> {
        let Some(values) = self.symbol(name).and_then(|n| self.postings.get(&n)) else {
            return Vec::new();
        };
        values.iter().filter(|(v, _)| accept(&self.strings[**v as usize])).map(|(_, ids)| ids.as_slice()).collect()
    }

    /// Postings of exactly these values of `name`.
    fn listed_postings<'a>(&'a self, name: &str, wanted: &[&str]) -> Vec<&'a [u32]> {
        let Some(values) = self.symbol(name).and_then(|n| self.postings.get(&n)) else {
            return Vec::new();
        };
        wanted.iter().filter_map(|w| self.symbol(w).and_then(|v| values.get(&v)).map(|ids| ids.as_slice())).collect()
    }

    /// Ids of the series matching every matcher, sorted.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut selected: Option<Vec<u32>> = None;
        let mut excluded: Vec<Vec<u32>> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                excluded.push(postings::union(self.value_postings(&m.name, |v| !m.matches(v))));
                continue;
            }
            let lists = match m.op {
                MatchOp::Equal => self.listed_postings(&m.name, &[m.value.as_str()]),
                MatchOp::In => {
                    let wanted: Vec<&str> = m.set_values().iter().map(String::as_str).collect();
                    self.listed_postings(&m.name, &wanted)
                }
                MatchOp::RegexMatch => match literal_alternatives(&m.value) {
                    Some(wanted) => self.listed_postings(&m.name, &wanted),
                    None => self.value_postings(&m.name, |v| m.matches(v)),
                },
                MatchOp::NotEqual | MatchOp::RegexNoMatch => self.value_postings(&m.name, |v| m.matches(v)),
            };
            let ids = postings::union(lists);
            selected = Some(match selected {
                None => ids,
                Some(prev) => postings::intersect(&prev, &ids),
            });
            if selected.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut ids = selected.unwrap_or_else(|| self.all.clone());
        for ex in excluded {
            ids = postings::subtract(&ids, &ex);
        }
        ids
    }

    /// Sorted label names, of the `ids` given or of all series.
    pub fn label_names(&self, ids: Option<&[u32]>) -> Vec<String> {
        let mut names: Vec<String> = match ids {
            None => self.postings.keys().map(|n| self.strings[*n as usize].to_string()).collect(),
            Some(ids) => {
                let mut syms: Vec<u32> = ids
                    .iter()
                    .filter(|id| self.contains(**id))
                    .flat_map(|id| self.pairs(*id).iter().map(|(n, _)| n))
                    .collect();
                syms.sort_unstable();
                syms.dedup();
                syms.into_iter().map(|n| self.strings[n as usize].to_string()).collect()
            }
        };
        names.sort();
        names
    }

    /// Sorted values of label `name`, among the `ids` given or all series.
    pub fn label_values(&self, name: &str, ids: Option<&[u32]>) -> Vec<String> {
        let Some(name_sym) = self.symbol(name) else {
            return Vec::new();
        };
        let mut values: Vec<String> = match ids {
            None => self
                .postings
                .get(&name_sym)
                .map(|values| values.keys().map(|v| self.strings[*v as usize].to_string()).collect())
                .unwrap_or_default(),
            Some(ids) => {
                let mut syms: Vec<u32> = ids
                    .iter()
                    .filter(|id| self.contains(**id))
                    .filter_map(|id| self.pairs(*id).iter().find(|(n, _)| *n == name_sym).map(|(_, v)| v))
                    .collect();
                syms.sort_unstable();
                syms.dedup();
                syms.into_iter().map(|v| self.strings[v as usize].to_string()).collect()
            }
        };
        values.sort();
        values
    }
}

impl Index {
    /// Cardinality figures over every series (see [`crate::db::Cardinality`]).
    pub fn cardinality(&self, top: usize) -> crate::db::Cardinality {
        fn top_n(mut counts: Vec<(String, u64)>, top: usize) -> Vec<(String, u64)> {
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(top);
            counts
        }
        let name_of = |sym: &u32| self.strings[*sym as usize].to_string();
        let mut num_label_pairs = 0u64;
        let mut value_counts = Vec::new();
        let mut value_bytes = Vec::new();
        let mut pair_counts = Vec::new();
        let mut by_metric = Vec::new();
        for (name, values) in &self.postings {
            let live: Vec<(&u32, &Vec<u32>)> = values.iter().filter(|(_, ids)| !ids.is_empty()).collect();
            if live.is_empty() {
                continue;
            }
            num_label_pairs += live.len() as u64;
            let name_str = name_of(name);
            value_counts.push((name_str.clone(), live.len() as u64));
            value_bytes
                .push((name_str.clone(), live.iter().map(|(v, _)| self.strings[**v as usize].len() as u64).sum()));
            for (value, ids) in &live {
                pair_counts.push((format!("{name_str}={}", self.strings[**value as usize]), ids.len() as u64));
                if &*name_str == crate::METRIC_NAME {
                    by_metric.push((name_of(value), ids.len() as u64));
                }
            }
        }
        crate::db::Cardinality {
            num_series: self.len() as u64,
            num_label_pairs,
            series_count_by_metric_name: top_n(by_metric, top),
            label_value_count_by_label_name: top_n(value_counts, top),
            memory_in_bytes_by_label_name: top_n(value_bytes, top),
            series_count_by_label_value_pair: top_n(pair_counts, top),
            ..Default::default()
        }
    }
}

/// The alternatives of a regex that is only literal words joined by `|` (the common
/// `pod=~"a|b|c"` form), which are looked up directly instead of testing every value.
fn literal_alternatives(regex: &str) -> Option<Vec<&str>> {
    let literal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:/@, ".contains(&b));
    let parts: Vec<&str> = regex.split('|').collect();
    parts.iter().all(|p| literal(p)).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(all: &[Labels], matchers: &[Matcher]) -> Vec<u32> {
        (0..all.len() as u32)
            .filter(|id| matchers.iter().all(|m| m.matches(all[*id as usize].get(&m.name).unwrap_or(""))))
            .collect()
    }

    fn label_set() -> impl Strategy<Value = Labels> {
        let value = prop_oneof![Just("a"), Just("b"), Just("ab"), Just("c-1"), Just("")];
        (value.clone(), value.clone(), value).prop_map(|(job, pod, env)| {
            Labels::from_pairs([("__name__", "m"), ("job", job), ("pod", pod), ("env", env)])
        })
    }

    fn matcher() -> impl Strategy<Value = Matcher> {
        let name = prop_oneof![Just("job"), Just("pod"), Just("env"), Just("missing"), Just("__name__")];
        let value = prop_oneof![
            Just("a"),
            Just("b"),
            Just(""),
            Just("a|b"),
            Just("a.*"),
            Just(".+"),
            Just(".*"),
            Just("c-1|x")
        ];
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::RegexMatch),
            Just(MatchOp::RegexNoMatch),
            Just(MatchOp::In)
        ];
        (op, name, value).prop_map(|(op, name, value)| match op {
            MatchOp::In => Matcher::one_of(name, value.split(',').map(str::to_string)),
            _ => Matcher::new(op, name, value).unwrap(),
        })
    }

    proptest! {
        #[test]
        fn index_answers_like_a_brute_force_scan(
            sets in proptest::collection::vec(label_set(), 0..40),
            matchers in proptest::collection::vec(matcher(), 0..4),
        ) {
            let mut index = Index::new();
            let mut all = Vec::new();
            for labels in sets {
                if index.lookup(&labels).is_none() {
                    prop_assert_eq!(index.insert(&labels) as usize, all.len());
                    all.push(labels);
                }
            }
            let expected = brute_force(&all, &matchers);
            prop_assert_eq!(index.select(&matchers), expected.clone());
            let one_by_one: Vec<u32> =
                (0..all.len() as u32).filter(|id| index.series_matches(*id, &matchers)).collect();
            prop_assert_eq!(&one_by_one, &expected);
            let names: std::collections::BTreeSet<String> =
                expected.iter().flat_map(|id| all[*id as usize].iter().map(|l| l.name.clone())).collect();
            prop_assert_eq!(index.label_names(Some(&expected)), names.into_iter().collect::<Vec<_>>());
            let values: std::collections::BTreeSet<String> =
                expected.iter().filter_map(|id| all[*id as usize].get("job").map(str::to_string)).collect();
            prop_assert_eq!(index.label_values("job", Some(&expected)), values.into_iter().collect::<Vec<_>>());
            for a in 0..all.len() {
                for b in 0..all.len() {
                    prop_assert_eq!(index.cmp_series(a as u32, b as u32), all[a].cmp(&all[b]));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn removed_series_leave_every_structure(
            sets in proptest::collection::vec(label_set(), 0..40),
            removed_mask in proptest::collection::vec(any::<bool>(), 40),
            matchers in proptest::collection::vec(matcher(), 0..4),
        ) {
            let mut index = Index::new();
            let mut all = Vec::new();
            for labels in sets {
                if index.lookup(&labels).is_none() {
                    index.insert(&labels);
                    all.push(labels);
                }
            }
            let removed: Vec<u32> = (0..all.len() as u32).filter(|id| removed_mask[*id as usize]).collect();
            index.remove(&removed);
            let live = |id: &u32| !removed.contains(id);
            let expected: Vec<u32> = brute_force(&all, &matchers).into_iter().filter(live).collect();
            prop_assert_eq!(index.select(&matchers), expected);
            prop_assert_eq!(index.len(), all.len() - removed.len());
            for (id, labels) in all.iter().enumerate() {
                let id = id as u32;
                prop_assert_eq!(index.lookup(labels), live(&id).then_some(id));
                prop_assert_eq!(index.contains(id), live(&id));
            }
            let names: std::collections::BTreeSet<String> = (0..all.len() as u32)
                .filter(live)
                .flat_map(|id| all[id as usize].iter().map(|l| l.name.clone()))
                .collect();
            prop_assert_eq!(index.label_names(None), names.into_iter().collect::<Vec<_>>());
            // A removed label set comes back as a new series with a new id.
            if let Some(first) = removed.first() {
                let again = index.insert(&all[*first as usize]);
                prop_assert_eq!(again as usize, all.len());
                prop_assert_eq!(index.lookup(&all[*first as usize]), Some(again));
            }
            // Every string is freed once nothing uses it.
            index.remove(&(0..=index.next_id()).collect::<Vec<_>>());
            prop_assert!(
                index.symbols.is_empty()
                    && index.postings.is_empty()
                    && index.by_hash.is_empty()
                    && index.name_lists.ids.is_empty()
            );
        }
    }

    #[test]
    fn lookup_finds_inserted_sets_and_labels_round_trip() {
        let mut index = Index::new();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "y")]);
        assert_eq!(index.insert(&a), 0);
        assert_eq!(index.insert(&b), 1);
        assert_eq!(index.lookup(&b), Some(1));
        assert_eq!(index.labels_projected(0, &index.projection(None)), a);
        let job = index.projection(Some(&["job".to_string(), "absent".to_string()]));
        assert_eq!(index.labels_projected(1, &job), Labels::from_pairs([("job", "y")]));
        assert_eq!(index.label_values("job", None), vec!["x", "y"]);
        assert_eq!(index.label_names(None), vec!["__name__", "job"]);
    }

    #[test]
    fn label_sets_whose_hashes_collide_are_told_apart() {
        // 500,000 label sets give ~29 pairs of equal 32-bit hashes (none is practically
        // impossible: e^-29): every one is found, also after half of them are removed.
        let mut index = Index::new();
        let sets: Vec<Labels> = (0..500_000u32)
            .map(|i| Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]))
            .collect();
        for set in &sets {
            index.insert(set);
        }
        assert!(!index.collisions.is_empty(), "no hash collided");
        assert!(sets.iter().enumerate().all(|(id, set)| index.lookup(set) == Some(id as u32)));
        let removed: Vec<u32> = (0..500_000).step_by(2).collect();
        index.remove(&removed);
        for (id, set) in sets.iter().enumerate() {
            let expected = (id % 2 == 1).then_some(id as u32);
            assert_eq!(index.lookup(set), expected, "series {id}");
        }
    }

    #[test]
    fn literal_alternation_is_looked_up_not_scanned() {
        assert_eq!(literal_alternatives("a|b-1|c_2"), Some(vec!["a", "b-1", "c_2"]));
        assert_eq!(literal_alternatives("a.*"), None);
        assert_eq!(literal_alternatives("a||b"), None);
    }
}
