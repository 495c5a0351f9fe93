//! `label_keys` owns how the engine keys its tables by label sets. Label names and values are
//! chosen by clients (a remote-write sender, a scraped pod's page), so they are hashed with
//! foldhash keyed by a per-process random seed, as the store's index and the scraper do: no one
//! can aim many label sets at one hash and make a query's grouping, matching or gathering
//! quadratic. Tables keyed by addresses, or by the results of these hashes, use FxHash.
//!
//! [`LabelSetPositions`] is the gathering table of a range query, a subquery and
//! `histogram_quantile`: where each label set went, found by the address of its `Arc` first.

use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, LazyLock};
use tsdb::Labels;

/// The per-process seed every label hash of the engine starts from.
static LABEL_HASH_SEED: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// Builds label hashers from the per-process seed: every table and every hash of a process agree,
/// so a hash taken in one step can be looked up in a table of the next.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct LabelHashState;

impl BuildHasher for LabelHashState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        LABEL_HASH_SEED.build_hasher()
    }
}

/// A map keyed by label sets (or anything else clients choose).
pub(crate) type LabelMap<K, V> = HashMap<K, V, LabelHashState>;
/// A set of label sets (or anything else clients choose).
pub(crate) type LabelSet<K> = HashSet<K, LabelHashState>;

/// A hasher for labels hashed piece by piece (a group's or a match's labels within a set).
#[inline]
pub(crate) fn label_hasher() -> impl Hasher {
    LabelHashState.build_hasher()
}

/// Where each gathered label set went (a position in the gatherer's own list), found by the
/// address of its `Arc` first and by value otherwise.
///
/// The same label sets come back step after step as the same `Arc`s (a selected series', a group
/// owner's, a kept derived set), so most lookups hash one address instead of every label. Every
/// address in here belongs to an `Arc` this table holds, so it cannot become another label set's
/// address while the table lives.
#[derive(Default)]
pub(crate) struct LabelSetPositions {
    by_value: LabelMap<Arc<Labels>, usize>,
    by_address: FxHashMap<usize, usize>,
    /// `Arc`s of equal label sets mapped by address too (see [`LabelSetPositions::alias`]).
    aliases: Vec<Arc<Labels>>,
}

impl LabelSetPositions {
    /// The position of `labels` (its `Arc`, or an equal label set), if it was gathered.
    #[inline]
    pub(crate) fn position(&self, labels: &Arc<Labels>) -> Option<usize> {
        match self.by_address.get(&address(labels)) {
            Some(&position) => Some(position),
            None => self.by_value.get(labels).copied(),
        }
    }

    /// Records a label set not gathered before at `position`.
    pub(crate) fn insert(&mut self, labels: Arc<Labels>, position: usize) {
        self.by_address.insert(address(&labels), position);
        self.by_value.insert(labels, position);
    }

    /// Maps the address of `labels`, an `Arc` of a label set already at `position` that will come
    /// back (kept for the query), so its next lookups skip hashing it.
    pub(crate) fn alias(&mut self, labels: &Arc<Labels>, position: usize) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.by_address.entry(address(labels)) {
            entry.insert(position);
            self.aliases.push(labels.clone());
        }
    }
}

#[inline]
fn address(labels: &Arc<Labels>) -> usize {
    Arc::as_ptr(labels) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(Labels::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn found_by_address_or_by_value_and_aliases_keep_their_arcs() {
        let mut positions = LabelSetPositions::default();
        let a = labels(&[("pod", "a")]);
        positions.insert(a.clone(), 0);
        assert_eq!(positions.position(&a), Some(0));
        let equal = labels(&[("pod", "a")]);
        assert_eq!(positions.position(&equal), Some(0), "an equal set is found by value");
        assert_eq!(positions.position(&labels(&[("pod", "b")])), None);
        positions.alias(&equal, 0);
        assert_eq!(Arc::strong_count(&equal), 2, "the alias holds its Arc, so the address stays the set's");
        positions.alias(&equal, 0);
        assert_eq!(Arc::strong_count(&equal), 2, "an address is held once");
        assert_eq!(positions.position(&equal), Some(0));
    }

    #[test]
    fn label_hashes_agree_within_a_process() {
        let hash = |pairs: &[(&str, &str)]| {
            let mut h = label_hasher();
            for (name, value) in pairs {
                name.hash(&mut h);
                value.hash(&mut h);
            }
            h.finish()
        };
        assert_eq!(hash(&[("pod", "a")]), hash(&[("pod", "a")]));
        assert_ne!(hash(&[("pod", "a")]), hash(&[("pod", "b")]));
        assert_eq!(LabelHashState.hash_one("x"), LabelHashState.hash_one("x"));
    }

    /// The seed differs from process to process, so hashes cannot be worked out ahead of time
    /// (this test runs itself twice, in two new processes, and compares what they print).
    #[test]
    fn label_hashes_are_seeded_per_process() {
        const CHILD: &str = "RINGTAIL_LABEL_HASH_CHILD";
        const PREFIX: &str = "label-hash ";
        if std::env::var_os(CHILD).is_some() {
            println!("{PREFIX}{}", LabelHashState.hash_one(("pod", "web-0")));
            return;
        }
        let hash_in_a_new_process = || {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "label_keys::tests::label_hashes_are_seeded_per_process", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            stdout.lines().find_map(|line| line.strip_prefix(PREFIX).map(str::to_string)).expect("the child's hash")
        };
        assert_ne!(hash_in_a_new_process(), hash_in_a_new_process());
    }
}
