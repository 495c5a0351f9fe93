//! `SeriesCache` maps the raw protobuf bytes of a remote-write 1.0 series' labels to the store's
//! series id, so a request whose series are already known skips label decoding, UTF-8 checks,
//! validation, sorting and the store's label lookup: one hash of the raw bytes, one probe, one
//! byte comparison per series, and no allocation.
//!
//! Correctness: an entry is added only after its bytes decoded to a valid label set that the store
//! resolved to the id kept; identical bytes always decode to the same labels. The bytes themselves
//! are not kept: two independently keyed 64-bit hashes of them stand in. The first places the
//! entry (its low bits pick the bucket, its top 7 bits are the bucket's control byte) and is not
//! stored; the second, the check, is stored whole. A lookup of other bytes takes an entry for its
//! own only if the checks match (64 bits), the control bytes match (7 bits) and the entry lies in
//! the group of 16 buckets the lookup probes (rarely more than one group); with at least 8/7
//! buckets per entry that is a chance of at most 14/n among n entries, worth another log2(n / 14)
//! bits: 16 at a million series, 23 at 100 million. For n = 100 million series the chance that any
//! two label sets are taken for each other is then at most n²/2 · 14/n · 2^-71 ≈ 3·10^-13 (it
//! grows with n, not n², as the table grows with the series; the 96 bits an entry once stored
//! gave 6·10^-14), and a sender who does not know the per-process seeds cannot aim at
//! it. A store never hands an id out twice, but it removes series that died (no sample left inside
//! the retention): an entry of a removed series is reported back by the store
//! (`AppendReport::removed`), that series is written again by labels, and its entry takes the new
//! id. A cache must be used with one store only.
//!
//! Memory: an entry is 12 bytes (the check and the id) plus the table's control byte, in a
//! power-of-two number of buckets at most 7/8 full: at a million series 2^21 buckets, 27.3 MB
//! (27 bytes a series; a `HashMap<u64, (u32, u32)>` of the same series took 2^21 × 17 bytes =
//! 35.7 MB). Since the first hash is not stored, the table cannot move its entries to a larger
//! one: when it is full it is rebuilt empty, sized for the store's live series (at most
//! `max_bytes`), and refills from the following requests. It is also rebuilt, smaller, when it
//! holds more than twice as many series as the store has live ones (under churn, entries of dead
//! series pile up).

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use tsdb::SeriesId;

/// Default bound on the table's bytes: 2^23 buckets of 13 bytes, about 7.3 million series.
pub const DEFAULT_MAX_BYTES: usize = 128 << 20;

/// Bytes of one entry in the table's array.
const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// Control bytes the table keeps beyond one per bucket (hashbrown's widest group, SSE2).
const EXTRA_CONTROL_BYTES: usize = 16;

/// The smallest table hashbrown makes for entries of this size.
const MIN_BUCKETS: usize = 4;

/// The cache is never cleared for holding too many entries below this many.
const MIN_ENTRIES_KEPT: usize = 4096;

/// One series: the second hash of its raw label bytes (the encoded `Label` fields, keys and
/// lengths included) and its id. The check is two halves so the entry is 4-byte aligned: 12 bytes,
/// not 16.
#[derive(Debug, Clone, Copy)]
struct Entry {
    check: [u32; 2],
    /// The store's ids fit 32 bits (a larger one is not cached).
    id: u32,
}

/// Bytes of a table of `buckets` buckets (entries and control bytes).
const fn table_bytes(buckets: usize) -> usize {
    buckets * (ENTRY_BYTES + 1) + EXTRA_CONTROL_BYTES
}

/// Entries a table of `buckets` buckets (a power of two) holds before it would grow: one bucket
/// is always left empty in small tables, an eighth in larger ones (hashbrown's load factor).
const fn bucket_capacity(buckets: usize) -> usize {
    if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}

/// The most entries a table within `max_bytes` holds (0: not even the smallest table fits).
fn max_entries_within(max_bytes: usize) -> usize {
    if table_bytes(MIN_BUCKETS) > max_bytes {
        return 0;
    }
    let mut buckets = MIN_BUCKETS;
    while buckets.checked_mul(2).is_some_and(|larger| table_bytes(larger) <= max_bytes) {
        buckets *= 2;
    }
    bucket_capacity(buckets)
}

/// Raw label bytes → series id, shared by the requests of one receiver. See the module docs.
#[derive(Debug)]
pub struct SeriesCache {
    table: RwLock<HashTable<Entry>>,
    seeds: [u64; 4],
    /// Seeds of the second hash, which confirms a hit.
    check_seeds: [u64; 4],
    /// Entries the largest table within the byte bound holds.
    max_entries: usize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::new(DEFAULT_MAX_BYTES)
    }
}

impl SeriesCache {
    /// An empty cache whose table takes at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let seeds = [0u64, 1, 2, 3].map(|i| random.hash_one(i) | 1);
        let check_seeds = [4u64, 5, 6, 7].map(|i| random.hash_one(i) | 1);
        SeriesCache {
            table: RwLock::new(HashTable::new()),
            seeds,
            check_seeds,
            max_entries: max_entries_within(max_bytes),
        }
    }

    /// The keyed hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(&self.seeds, key)
    }

    /// A read view for looking up many keys under one lock acquisition.
    pub fn reader(&self) -> CacheReader<'_> {
        CacheReader { table: self.table.read().unwrap_or_else(PoisonError::into_inner), check_seeds: &self.check_seeds }
    }

    /// Adds the resolved `(hash, key, id)` triples (a key already present takes the id given).
    /// `live_series` is the store's live series count, which bounds the entries worth keeping and
    /// sizes a rebuilt table.
    pub fn insert_all<'k>(&self, entries: impl IntoIterator<Item = (u64, &'k [u8], SeriesId)>, live_series: usize) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.len() > live_series.saturating_mul(2).max(MIN_ENTRIES_KEPT) {
            tracing::debug!(
                entries = table.len(),
                live_series,
                "remote-write series cache holds mostly dead series; clearing it"
            );
            *table = HashTable::new();
        }
        for (hash, key, id) in entries {
            let Ok(id) = u32::try_from(id.0) else {
                continue;
            };
            let check = check_halves(hash_bytes(&self.check_seeds, key));
            if let Some(entry) = table.find_mut(hash, |entry| entry.check == check) {
                entry.id = id;
                continue;
            }
            if table.len() >= table.capacity() {
                // Growing would move every entry by its first hash, which is not kept: rebuilt
                // empty instead, for the store's live series (the table refills from requests).
                let entries = table.len().saturating_add(1).max(live_series).min(self.max_entries);
                if entries == 0 {
                    continue;
                }
                tracing::debug!(entries = table.len(), "remote-write series cache full; clearing it");
                if entries > table.capacity() {
                    *table = HashTable::with_capacity(entries);
                } else {
                    table.clear();
                }
            }
            table.insert_unique(hash, Entry { check, id }, |_| {
                // Only called to grow, which the capacity check above rules out.
                debug_assert!(false, "BUG: the series cache's table grew");
                0
            });
        }
    }

    /// Number of cached series.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Bytes the table takes.
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        self.table.read().unwrap_or_else(PoisonError::into_inner).allocation_size()
    }
}

/// A shared lock on the cache for the lookups of one request.
pub struct CacheReader<'a> {
    table: RwLockReadGuard<'a, HashTable<Entry>>,
    check_seeds: &'a [u64; 4],
}

impl CacheReader<'_> {
    /// The series id whose raw label bytes are exactly `key` (`hash` from [`SeriesCache::hash`]).
    #[inline]
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<SeriesId> {
        // Computed only when an entry's control byte matches, as most probes of a miss end first.
        let mut check = None;
        let entry = self.table.find(hash, |entry| {
            entry.check == *check.get_or_insert_with(|| check_halves(hash_bytes(self.check_seeds, key)))
        })?;
        Some(SeriesId(u64::from(entry.id)))
    }
}

#[inline]
fn check_halves(check: u64) -> [u32; 2] {
    [check as u32, (check >> 32) as u32]
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
        // The smallest table: 4 buckets, 3 entries.
        let cache = SeriesCache::new(table_bytes(MIN_BUCKETS));
        let (a, b, c) = (b"abcd".as_slice(), b"abce".as_slice(), b"abcf".as_slice());
        let (ha, hb) = (cache.hash(a), cache.hash(b));
        assert_ne!(ha, hb);
        cache.insert_all([(ha, a, SeriesId(1))], 10);
        assert_eq!(cache.reader().get(ha, a), Some(SeriesId(1)));
        assert_eq!(cache.reader().get(ha, b), None, "same hash, other bytes: a miss");
        assert_eq!(cache.reader().get(hb, b), None);
        cache.insert_all([(hb, b, SeriesId(2)), (cache.hash(c), c, SeriesId(3))], 10);
        assert_eq!(cache.len(), 3);
        assert!(cache.table_bytes() <= table_bytes(MIN_BUCKETS), "{} bytes", cache.table_bytes());
        // The same bytes again take the id given (their series was removed and created anew).
        cache.insert_all([(ha, a, SeriesId(7))], 10);
        assert_eq!((cache.len(), cache.reader().get(ha, a)), (3, Some(SeriesId(7))));
        // Over the byte bound: cleared, then the newcomer is kept.
        let d = b"xyz".as_slice();
        cache.insert_all([(cache.hash(d), d, SeriesId(4))], 10);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.reader().get(cache.hash(d), d), Some(SeriesId(4)));
        assert_eq!(cache.reader().get(ha, a), None);
        assert!(cache.table_bytes() <= table_bytes(MIN_BUCKETS));
    }

    #[test]
    fn a_bound_below_the_smallest_table_caches_nothing() {
        let cache = SeriesCache::new(table_bytes(MIN_BUCKETS) - 1);
        let a = b"abcd".as_slice();
        cache.insert_all([(cache.hash(a), a, SeriesId(1))], 10);
        assert_eq!((cache.len(), cache.table_bytes()), (0, 0));
    }

    #[test]
    fn the_table_stays_within_its_byte_bound() {
        for max_bytes in [100, 1000, 5000, 70_000] {
            let cache = SeriesCache::new(max_bytes);
            let keys: Vec<Vec<u8>> = (0..2 * max_bytes / ENTRY_BYTES).map(|i| format!("k{i}").into_bytes()).collect();
            for (i, key) in keys.iter().enumerate() {
                cache.insert_all([(cache.hash(key), key.as_slice(), SeriesId(i as u64))], keys.len());
                assert!(cache.table_bytes() <= max_bytes, "{} bytes, bound {max_bytes}", cache.table_bytes());
                assert_eq!(cache.reader().get(cache.hash(key), key), Some(SeriesId(i as u64)));
            }
        }
    }

    /// The figure the module documentation gives: at a million series the table holds 2^21
    /// buckets of 12 + 1 bytes; the map it replaced held 16-byte `(u64, (u32, u32))` buckets.
    #[test]
    fn a_million_series_take_27_bytes_each() {
        assert_eq!(ENTRY_BYTES, 12);
        let table: HashTable<Entry> = HashTable::with_capacity(1_000_000);
        assert!(table.allocation_size() <= table_bytes(1 << 21), "{} bytes", table.allocation_size());
        assert_eq!(table_bytes(1 << 21) / 1_000_000, 27);
        assert_eq!(((1 << 21) * (std::mem::size_of::<(u64, (u32, u32))>() + 1)) / 1_000_000, 35);
        // A table sized for the store's live series is what growing one entry at a time reaches.
        let live = SeriesCache::default();
        let key = b"k".as_slice();
        live.insert_all([(live.hash(key), key, SeriesId(0))], 1_000_000);
        assert_eq!(live.table_bytes(), table.allocation_size());
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
        // With as many live series as entries, nothing is cleared: the table was sized for them.
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
