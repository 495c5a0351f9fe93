//! `SeriesCache` maps the raw protobuf bytes of a remote-write 1.0 series' labels to the store's
//! series id, so a request whose series are already known skips label decoding, UTF-8 checks,
//! validation, sorting and the store's label lookup: two hashes of the raw bytes and one probe
//! per series, and no allocation.
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
//! grows with n, not n², as the table grows with the series; twice that while a replaced table is
//! still read; the 96 bits an entry once stored gave 6·10^-14), and a sender who does not know the
//! per-process seeds cannot aim at it. A store never hands an id out twice, but it removes series that died (no sample left inside
//! the retention): an entry of a removed series is reported back by the store
//! (`AppendReport::removed`), that series is written again by labels, and its entry takes the new
//! id. A cache must be used with one store only.
//!
//! Memory: an entry is 12 bytes (the check and the id) plus the table's control byte, in a
//! power-of-two number of buckets at most 7/8 full: at a million series 2^21 buckets, 27.3 MB
//! (27 bytes a series; a `HashMap<u64, (u32, u32)>` of the same series took 2^21 × 17 bytes =
//! 35.7 MB). Since the first hash is not stored, the table cannot move its entries to a larger
//! one: when it is full a new one, sized for the store's live series, takes new entries, and the
//! full one is still read; an entry found there moves to the new table with the next request, and
//! the old table is dropped once empty or once the new one holds as many entries as the store has
//! live series (a series seen again is served from the cache throughout, as a growing `HashMap`
//! would). Both tables together stay within `max_bytes` (the old one is dropped when they would
//! not); at the bound, a full table is cleared and refills from the following requests, as it is
//! when it holds more than twice as many series as the store has live ones (under churn, entries
//! of dead series pile up).

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
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

/// The cache's tables. `previous` is the table `current` replaced when it filled: its entries
/// cannot move (their first hash is not kept), so it is still read, and each entry a lookup finds
/// there is moved into `current` by the next writer ([`SeriesCache::promote_found`]). It is dropped
/// once empty, or once `current` holds an entry for each of the store's live series.
#[derive(Debug, Default)]
struct Tables {
    current: HashTable<Entry>,
    previous: HashTable<Entry>,
}

impl Tables {
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Bytes both tables take.
    fn bytes(&self) -> usize {
        self.current.allocation_size() + self.previous.allocation_size()
    }

    /// Adds `entry` to `current` (a key already there takes `entry`'s id; one in `previous` moves).
    /// Returns whether there was room.
    fn insert(&mut self, hash: u64, entry: Entry) -> bool {
        if let Some(present) = self.current.find_mut(hash, |e| e.check == entry.check) {
            present.id = entry.id;
            return true;
        }
        if let Ok(old) = self.previous.find_entry(hash, |e| e.check == entry.check) {
            old.remove();
        }
        if self.current.len() >= self.current.capacity() {
            return false;
        }
        self.current.insert_unique(hash, entry, |_| {
            // Only called to grow, which the capacity check above rules out.
            debug_assert!(false, "BUG: the series cache's table grew");
            0
        });
        true
    }
}

/// Raw label bytes → series id, shared by the requests of one receiver. See the module docs.
#[derive(Debug)]
pub struct SeriesCache {
    tables: RwLock<Tables>,
    /// Entries lookups found in `Tables::previous`, to move into `current` (pushed under the read
    /// lock, moved under the write lock).
    found_in_previous: Mutex<Vec<(u64, Entry)>>,
    /// Whether `found_in_previous` has entries (checked on every request without its lock).
    any_found: AtomicBool,
    seeds: [u64; 4],
    /// Seeds of the second hash, which confirms a hit.
    check_seeds: [u64; 4],
    max_bytes: usize,
    /// Entries the largest table within the byte bound holds.
    max_entries: usize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::new(DEFAULT_MAX_BYTES)
    }
}

impl SeriesCache {
    /// An empty cache whose tables take at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let seeds = [0u64, 1, 2, 3].map(|i| random.hash_one(i) | 1);
        let check_seeds = [4u64, 5, 6, 7].map(|i| random.hash_one(i) | 1);
        SeriesCache {
            tables: RwLock::new(Tables::default()),
            found_in_previous: Mutex::new(Vec::new()),
            any_found: AtomicBool::new(false),
            seeds,
            check_seeds,
            max_bytes,
            max_entries: max_entries_within(max_bytes),
        }
    }

    /// The keyed hash of `key` that places its entry.
    #[cfg(test)]
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(&self.seeds, key)
    }

    /// Both hashes of `key`, for [`CacheReader::get_hashed`].
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> KeyHash {
        let (place, check) = hash_pair(&self.seeds, &self.check_seeds, key);
        KeyHash { place, check: check_halves(check) }
    }

    /// A read view for looking up many keys under one lock acquisition.
    pub fn reader(&self) -> CacheReader<'_> {
        if self.any_found.load(Ordering::Relaxed) {
            self.promote_found(&mut self.tables.write().unwrap_or_else(PoisonError::into_inner));
        }
        CacheReader { tables: self.tables.read().unwrap_or_else(PoisonError::into_inner), cache: self }
    }

    /// Adds the resolved `(hash, key, id)` triples (a key already present takes the id given).
    /// `live_series` is the store's live series count, which bounds the entries worth keeping and
    /// sizes a rebuilt table.
    pub fn insert_all<'k>(&self, entries: impl IntoIterator<Item = (u64, &'k [u8], SeriesId)>, live_series: usize) {
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        if tables.len() > live_series.saturating_mul(2).max(MIN_ENTRIES_KEPT) {
            tracing::debug!(
                entries = tables.len(),
                live_series,
                "remote-write series cache holds mostly dead series; clearing it"
            );
            *tables = Tables::default();
        }
        self.promote_found(&mut tables);
        for (hash, key, id) in entries {
            let Ok(id) = u32::try_from(id.0) else {
                continue;
            };
            let entry = Entry { check: check_halves(hash_bytes(&self.check_seeds, key)), id };
            if tables.insert(hash, entry) {
                continue;
            }
            // Growing would move every entry by its first hash, which is not kept: a new table,
            // sized for the store's live series, takes the place of the full one, which is still
            // read (as `previous`) while both fit the byte bound.
            let wanted = tables.current.len().saturating_add(1).max(live_series).min(self.max_entries);
            if wanted == 0 {
                continue;
            }
            tracing::debug!(entries = tables.current.len(), "remote-write series cache full; starting a new table");
            if wanted > tables.current.capacity() {
                tables.previous = std::mem::replace(&mut tables.current, HashTable::with_capacity(wanted));
                if tables.bytes() > self.max_bytes {
                    tables.previous = HashTable::new();
                }
            } else {
                tables.current.clear();
                tables.previous = HashTable::new();
            }
            tables.insert(hash, entry);
        }
        if !tables.previous.is_empty() && tables.current.len() >= live_series {
            tables.previous = HashTable::new();
        }
    }

    /// Moves the entries lookups found in `previous` into `current` (while it has room), and drops
    /// `previous` once it is empty.
    fn promote_found(&self, tables: &mut Tables) {
        let found = {
            let mut found = self.found_in_previous.lock().unwrap_or_else(PoisonError::into_inner);
            self.any_found.store(false, Ordering::Relaxed);
            std::mem::take(&mut *found)
        };
        for (hash, entry) in found {
            // Gone when another lookup found it too, or when `previous` was replaced since.
            if let Ok(old) = tables.previous.find_entry(hash, |e| e.check == entry.check) {
                let (entry, _) = old.remove();
                if !tables.insert(hash, entry) {
                    break;
                }
            }
        }
        if tables.previous.is_empty() && tables.previous.capacity() > 0 {
            tables.previous = HashTable::new();
        }
    }

    /// Number of cached series.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tables.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Bytes the tables take.
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        self.tables.read().unwrap_or_else(PoisonError::into_inner).bytes()
    }
}

/// The two hashes of one key: `place`, which places its entry, and the check that confirms the
/// entry (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct KeyHash {
    pub place: u64,
    check: [u32; 2],
}

/// A shared lock on the cache for the lookups of one request.
pub struct CacheReader<'a> {
    tables: RwLockReadGuard<'a, Tables>,
    cache: &'a SeriesCache,
}

impl CacheReader<'_> {
    /// The series id whose raw label bytes are exactly `key` (`hash` from [`SeriesCache::hash`]).
    #[cfg(test)]
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<SeriesId> {
        // Computed only when an entry's control byte matches, as most probes of a miss end first.
        let mut check = None;
        let mut matches = |entry: &Entry| {
            entry.check == *check.get_or_insert_with(|| check_halves(hash_bytes(&self.cache.check_seeds, key)))
        };
        self.find(hash, &mut matches)
    }

    /// The series id of the key `key` is the hashes of ([`SeriesCache::key_hash`]): [`get`](Self::get)
    /// with both hashes computed up front, so lookups of many keys can run back to back.
    #[inline]
    pub fn get_hashed(&self, key: KeyHash) -> Option<SeriesId> {
        self.find(key.place, &mut |entry: &Entry| entry.check == key.check)
    }

    #[inline]
    fn find(&self, hash: u64, matches: &mut impl FnMut(&Entry) -> bool) -> Option<SeriesId> {
        if let Some(entry) = self.tables.current.find(hash, &mut *matches) {
            return Some(SeriesId(u64::from(entry.id)));
        }
        if self.tables.previous.is_empty() {
            return None;
        }
        let entry = *self.tables.previous.find(hash, matches)?;
        let mut found = self.cache.found_in_previous.lock().unwrap_or_else(PoisonError::into_inner);
        found.push((hash, entry));
        self.cache.any_found.store(true, Ordering::Relaxed);
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

/// `(hash_bytes(a, bytes), hash_bytes(b, bytes))` in one pass over `bytes`.
fn hash_pair(a: &[u64; 4], b: &[u64; 4], bytes: &[u8]) -> (u64, u64) {
    let length = (bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let (mut acc_a, mut acc_b) = (a[0] ^ length, b[0] ^ length);
    let mut mix = |x: u64, y: u64| {
        acc_a = acc_a.rotate_left(23) ^ folded_multiply(x ^ a[1], y ^ a[2]);
        acc_b = acc_b.rotate_left(23) ^ folded_multiply(x ^ b[1], y ^ b[2]);
    };
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let (x, y) = block.split_at(8);
        mix(word(x), word(y));
    }
    let tail = blocks.remainder();
    let (x, y) = tail.split_at(tail.len().min(8));
    mix(word(x), word(y));
    (
        folded_multiply(acc_a ^ a[3], a[0] ^ 0x2D35_8DCC_AA6C_78A5),
        folded_multiply(acc_b ^ b[3], b[0] ^ 0x2D35_8DCC_AA6C_78A5),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_pair_of_hashes_is_each_hash_alone(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            a in any::<[u64; 4]>(),
            b in any::<[u64; 4]>(),
        ) {
            prop_assert_eq!(hash_pair(&a, &b, &bytes), (hash_bytes(&a, &bytes), hash_bytes(&b, &bytes)));
        }
    }

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

    /// Inserts `keys` (ids in order) with 100 live series, which size the first table, until a
    /// newcomer no longer fits it and a new table takes over; how many were inserted.
    fn fill_until_a_new_table(cache: &SeriesCache, keys: &[Vec<u8>]) -> usize {
        let mut inserted = 0;
        while cache.tables.read().unwrap().previous.is_empty() {
            let key = &keys[inserted];
            cache.insert_all([(cache.hash(key), key.as_slice(), SeriesId(inserted as u64))], 100);
            inserted += 1;
        }
        inserted
    }

    #[test]
    fn a_full_table_is_still_read_and_its_entries_move_to_the_new_one() {
        let cache = SeriesCache::default();
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("series-{i}").into_bytes()).collect();
        let inserted = fill_until_a_new_table(&cache, &keys);
        assert_eq!(cache.tables.read().unwrap().previous.len(), inserted - 1);
        {
            let reader = cache.reader();
            for (i, key) in keys[..inserted].iter().enumerate() {
                assert_eq!(reader.get(cache.hash(key), key), Some(SeriesId(i as u64)), "series {i}");
            }
        }
        // The next request's reader moves what was found into the new table, and drops the old.
        let reader = cache.reader();
        assert_eq!((reader.tables.current.len(), reader.tables.previous.capacity()), (inserted, 0));
        for (i, key) in keys[..inserted].iter().enumerate() {
            assert_eq!(reader.get(cache.hash(key), key), Some(SeriesId(i as u64)), "series {i}");
        }
    }

    #[test]
    fn a_series_in_the_old_table_written_again_takes_its_new_id() {
        let cache = SeriesCache::default();
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("series-{i}").into_bytes()).collect();
        let inserted = fill_until_a_new_table(&cache, &keys);
        let first = keys[0].as_slice();
        cache.insert_all([(cache.hash(first), first, SeriesId(5000))], 100);
        assert_eq!(cache.reader().get(cache.hash(first), first), Some(SeriesId(5000)));
        assert_eq!(cache.len(), inserted, "moved, not copied");
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
