//! `SeriesCache` maps the raw protobuf bytes of a remote-write 1.0 series' labels to the store's
//! series id, so a request whose series are already known skips label decoding, UTF-8 checks,
//! validation, sorting and the store's label lookup: one hash of the raw bytes, one probe, one
//! byte comparison per series, and no allocation.
//!
//! Correctness: an entry is added only after its bytes decoded to a valid label set that the store
//! resolved to the id kept; identical bytes always decode to the same labels, and a hit needs two
//! independently keyed hashes of the bytes to match, 96 bits in all (for 100 million series the
//! chance that any two label sets are taken for each other is below 10^-12, and a sender who does
//! not know the per-process seeds cannot aim at it). The bytes themselves are not kept, which
//! keeps an entry at 16 bytes of table. A store never hands an id
//! out twice, but it removes series that died (no sample left inside the retention): an entry of
//! a removed series is reported back by the store (`AppendReport::removed`) and that series is
//! written again by labels. A cache must be used with one store only.
//!
//! A colliding entry (same first hash, other bytes) is never replaced or chained: the newcomer just
//! takes the normal path.
//!
//! Memory: about 16–32 bytes per series (the table entry and the hash table's spare room). When the
//! table would pass `max_bytes`, or the cache holds more than twice as many series as the store has
//! live ones (under churn, entries of dead series pile up), the cache is cleared and refills from
//! the following requests.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use tsdb::SeriesId;

/// Default bound on the table's bytes (about 5 million series).
pub const DEFAULT_MAX_BYTES: usize = 128 << 20;

/// Bytes an entry is counted as (key, check hash and id, with the table's spare room).
const ENTRY_BYTES: usize = 24;

/// The cache is never cleared for holding too many entries below this many.
const MIN_ENTRIES_KEPT: usize = 4096;

/// One series: the second hash of its raw label bytes (the encoded `Label` fields, keys and
/// lengths included) and its id.
#[derive(Debug, Clone, Copy)]
struct Entry {
    check: u32,
    /// The store's ids fit 32 bits (a larger one is not cached).
    id: u32,
}

/// Passes a precomputed 64-bit hash through (the keys are already keyed hashes).
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
}

/// Raw label bytes → series id, shared by the requests of one receiver. See the module docs.
#[derive(Debug)]
pub struct SeriesCache {
    inner: RwLock<Inner>,
    seeds: [u64; 4],
    /// Seeds of the second hash, which confirms a hit.
    check_seeds: [u64; 4],
    max_bytes: usize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::new(DEFAULT_MAX_BYTES)
    }
}

impl SeriesCache {
    /// An empty cache of at most about `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let seeds = [0u64, 1, 2, 3].map(|i| random.hash_one(i) | 1);
        let check_seeds = [4u64, 5, 6, 7].map(|i| random.hash_one(i) | 1);
        SeriesCache { inner: RwLock::new(Inner::default()), seeds, check_seeds, max_bytes }
    }

    /// The keyed hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(&self.seeds, key)
    }

    /// A read view for looking up many keys under one lock acquisition.
    pub fn reader(&self) -> CacheReader<'_> {
        CacheReader { inner: self.inner.read().unwrap_or_else(PoisonError::into_inner), check_seeds: &self.check_seeds }
    }

    /// Adds the resolved `(hash, key, id)` triples (keys already present, or whose hash is taken by
    /// other bytes, are skipped).
    /// `live_series` is the store's live series count, which bounds the entries worth keeping.
    pub fn insert_all<'k>(&self, entries: impl IntoIterator<Item = (u64, &'k [u8], SeriesId)>, live_series: usize) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.map.len() > live_series.saturating_mul(2).max(MIN_ENTRIES_KEPT) {
            tracing::debug!(
                entries = inner.map.len(),
                live_series,
                "remote-write series cache holds mostly dead series; clearing it"
            );
            inner.map = HashMap::default();
        }
        for (hash, key, id) in entries {
            if inner.map.contains_key(&hash) {
                continue;
            }
            if (inner.map.len() + 1) * ENTRY_BYTES > self.max_bytes {
                tracing::debug!(entries = inner.map.len(), "remote-write series cache full; clearing it");
                inner.map = HashMap::default();
                if ENTRY_BYTES > self.max_bytes {
                    continue;
                }
            }
            let Ok(id) = u32::try_from(id.0) else {
                continue;
            };
            inner.map.insert(hash, Entry { check: hash_bytes(&self.check_seeds, key) as u32, id });
        }
    }

    /// Number of cached series.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).map.len()
    }
}

/// A shared lock on the cache for the lookups of one request.
pub struct CacheReader<'a> {
    inner: RwLockReadGuard<'a, Inner>,
    check_seeds: &'a [u64; 4],
}

impl CacheReader<'_> {
    /// The series id whose raw label bytes are exactly `key` (`hash` from [`SeriesCache::hash`]).
    #[inline]
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<SeriesId> {
        let entry = self.inner.map.get(&hash)?;
        (entry.check == hash_bytes(self.check_seeds, key) as u32).then_some(SeriesId(u64::from(entry.id)))
    }
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = bytes.len().min(8);
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

/// A keyed folded-multiply hash over 16-byte blocks (the construction of foldhash/wyhash).
fn hash_bytes(seeds: &[u64; 4], bytes: &[u8]) -> u64 {
    let mut acc = seeds[0] ^ (bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let (a, b) = block.split_at(8);
        acc = acc.rotate_left(23) ^ folded_multiply(word(a) ^ seeds[1], word(b) ^ seeds[2]);
    }
    let tail = blocks.remainder();
    let (a, b) = tail.split_at(tail.len().min(8));
    acc = acc.rotate_left(23) ^ folded_multiply(word(a) ^ seeds[1], word(b) ^ seeds[2]);
    folded_multiply(acc ^ seeds[3], seeds[0] ^ 0x2D35_8DCC_AA6C_78A5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_need_equal_bytes_and_clearing_keeps_it_correct() {
        let cache = SeriesCache::new(2 * ENTRY_BYTES);
        let (a, b) = (b"abcd".as_slice(), b"abce".as_slice());
        let (ha, hb) = (cache.hash(a), cache.hash(b));
        assert_ne!(ha, hb);
        cache.insert_all([(ha, a, SeriesId(1))], 10);
        assert_eq!(cache.reader().get(ha, a), Some(SeriesId(1)));
        assert_eq!(cache.reader().get(ha, b), None, "same hash, other bytes: a miss");
        assert_eq!(cache.reader().get(hb, b), None);
        cache.insert_all([(hb, b, SeriesId(2))], 10);
        assert_eq!(cache.len(), 2);
        // Over the two-entry budget: cleared, then the newcomer is kept.
        let c = b"xyz".as_slice();
        cache.insert_all([(cache.hash(c), c, SeriesId(3))], 10);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.reader().get(cache.hash(c), c), Some(SeriesId(3)));
        assert_eq!(cache.reader().get(ha, a), None);
    }

    #[test]
    fn entries_of_dead_series_do_not_pile_up() {
        let cache = SeriesCache::default();
        let keys: Vec<Vec<u8>> = (0..3 * MIN_ENTRIES_KEPT).map(|i| format!("pod-{i}").into_bytes()).collect();
        for (i, key) in keys.iter().enumerate() {
            // Churn: the store only ever has 100 live series.
            cache.insert_all([(cache.hash(key), key.as_slice(), SeriesId(i as u64))], 100);
            assert!(cache.len() <= MIN_ENTRIES_KEPT + 1, "{} entries", cache.len());
        }
        let last = keys.last().unwrap();
        assert_eq!(cache.reader().get(cache.hash(last), last), Some(SeriesId(keys.len() as u64 - 1)));
        // With as many live series as entries, nothing is cleared.
        let big = SeriesCache::default();
        for (i, key) in keys.iter().enumerate() {
            big.insert_all([(big.hash(key), key.as_slice(), SeriesId(i as u64))], keys.len());
        }
        assert_eq!(big.len(), keys.len());
    }

    #[test]
    fn hash_depends_on_every_byte_and_the_length() {
        let cache = SeriesCache::default();
        let base: Vec<u8> = (0u8..=40).collect();
        let mut seen = std::collections::HashSet::new();
        for len in 0..base.len() {
            assert!(seen.insert(cache.hash(&base[..len])), "length {len}");
        }
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 1;
            assert!(seen.insert(cache.hash(&changed)), "byte {i}");
        }
    }
}
