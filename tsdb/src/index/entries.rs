//! `Entries` holds every live series' index entry (`[name list id, value symbols…]`) packed into
//! pages of [`PAGE_ENTRIES`] consecutive ids: one allocation per page instead of one per series,
//! and a 4-byte end offset per id instead of a boxed slice's 16-byte pointer. A million small
//! allocations made by the threads that create series, between the short-lived buffers of the
//! requests that create them, also cost the allocator pages it cannot give back.
//!
//! Ids are handed out in order, so a page is filled by appending; a page that ids have moved past
//! is shrunk to its size once. A removed entry keeps its words until more than half of the page's
//! words are dead (then the page is repacked), and a page with no live entry is freed.

use crate::paged::PAGE_ENTRIES;

#[derive(Debug)]
struct EntryPage {
    /// End of entry `i` in `words` (entry `i` starts where entry `i - 1` ends); ids of the page
    /// not handed out yet have no end.
    ends: Vec<u32>,
    present: [u64; PAGE_ENTRIES / 64],
    live: u32,
    dead_words: usize,
    words: Vec<u32>,
}

impl EntryPage {
    fn new() -> Self {
        EntryPage { ends: Vec::new(), present: [0; PAGE_ENTRIES / 64], live: 0, dead_words: 0, words: Vec::new() }
    }

    #[inline]
    fn has(&self, i: usize) -> bool {
        self.present[i / 64] & (1 << (i % 64)) != 0
    }

    fn span(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        start..self.ends[i] as usize
    }

    fn entry(&self, i: usize) -> Option<&[u32]> {
        self.has(i).then(|| &self.words[self.span(i)])
    }

    /// Rewrites `words` with only the present entries, then applies `insert` (an entry at an index
    /// already handed out: replaced or put back).
    fn repack(&mut self, insert: Option<(usize, &[u32])>) {
        let mut words = Vec::with_capacity(self.words.len() - self.dead_words + insert.map_or(0, |(_, e)| e.len()));
        let mut ends = Vec::with_capacity(self.ends.len());
        for i in 0..self.ends.len() {
            match insert {
                Some((at, entry)) if at == i => words.extend_from_slice(entry),
                _ if self.has(i) => words.extend_from_slice(&self.words[self.span(i)]),
                _ => {}
            }
            ends.push(words.len() as u32);
        }
        self.words = words;
        self.ends = ends;
        self.dead_words = 0;
    }

    fn set(&mut self, i: usize, entry: &[u32]) {
        if i >= self.ends.len() {
            let end = self.words.len() as u32;
            self.ends.resize(i, end);
            self.words.extend_from_slice(entry);
            self.ends.push(self.words.len() as u32);
        } else {
            if self.has(i) {
                self.dead_words += self.span(i).len();
            }
            self.repack(Some((i, entry)));
        }
        if !self.has(i) {
            self.present[i / 64] |= 1 << (i % 64);
            self.live += 1;
        }
    }

    fn remove(&mut self, i: usize) -> bool {
        if !self.has(i) {
            return false;
        }
        self.present[i / 64] &= !(1 << (i % 64));
        self.live -= 1;
        self.dead_words += self.span(i).len();
        if self.dead_words * 2 > self.words.len() {
            self.repack(None);
        }
        true
    }

    fn shrink(&mut self) {
        self.words.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Index entries by series id. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Entries {
    pages: Vec<Option<EntryPage>>,
    len: usize,
    /// The page entries were last appended to (shrunk once a later page is started).
    filling: usize,
}

impl Entries {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(super) fn get(&self, id: u32) -> Option<&[u32]> {
        let id = id as usize;
        self.pages.get(id / PAGE_ENTRIES)?.as_ref()?.entry(id % PAGE_ENTRIES)
    }

    /// Puts `entry` at `id` (replacing what was there).
    pub(super) fn set(&mut self, id: u32, entry: &[u32]) {
        let id = id as usize;
        let page_index = id / PAGE_ENTRIES;
        if self.pages.len() <= page_index {
            self.pages.resize_with(page_index + 1, || None);
        }
        if page_index > self.filling {
            if let Some(page) = self.pages.get_mut(self.filling).and_then(Option::as_mut) {
                page.shrink();
            }
            self.filling = page_index;
        }
        let page = self.pages[page_index].get_or_insert_with(EntryPage::new);
        let was_present = page.has(id % PAGE_ENTRIES);
        page.set(id % PAGE_ENTRIES, entry);
        if !was_present {
            self.len += 1;
        }
    }

    /// Removes the entry at `id`; whether there was one.
    pub(super) fn remove(&mut self, id: u32) -> bool {
        let id = id as usize;
        let page_index = id / PAGE_ENTRIES;
        let Some(page) = self.pages.get_mut(page_index).and_then(Option::as_mut) else {
            return false;
        };
        if !page.remove(id % PAGE_ENTRIES) {
            return false;
        }
        self.len -= 1;
        if page.live == 0 {
            self.pages[page_index] = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Any sequence of sets and removals reads back like a map.
        #[test]
        fn reads_back_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u32..3000, prop::collection::vec(any::<u32>(), 0..12)), 0..400)) {
            let mut entries = Entries::default();
            let mut expected: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for (is_set, id, entry) in ops {
                if is_set {
                    entries.set(id, &entry);
                    expected.insert(id, entry);
                } else {
                    prop_assert_eq!(entries.remove(id), expected.remove(&id).is_some());
                }
                prop_assert_eq!(entries.len(), expected.len());
            }
            for id in 0..3000 {
                prop_assert_eq!(entries.get(id), expected.get(&id).map(Vec::as_slice));
            }
        }
    }

    #[test]
    fn appends_in_id_order_pack_and_dead_pages_are_freed() {
        let mut entries = Entries::default();
        for id in 0..(3 * PAGE_ENTRIES as u32) {
            entries.set(id, &[id, id + 1, id + 2]);
        }
        let first = entries.pages[0].as_ref().unwrap();
        assert_eq!(first.words.len(), 3 * PAGE_ENTRIES);
        assert_eq!(first.words.capacity(), first.words.len(), "a page ids moved past is shrunk");
        for id in 0..PAGE_ENTRIES as u32 {
            assert!(entries.remove(id));
        }
        assert!(entries.pages[0].is_none(), "a page with no live entry is freed");
        // Removing most of a page repacks it.
        for id in PAGE_ENTRIES as u32..(PAGE_ENTRIES as u32 + 600) {
            entries.remove(id);
        }
        let second = entries.pages[1].as_ref().unwrap();
        assert!(second.words.len() <= 3 * (PAGE_ENTRIES - 600) + 3 * 100, "{}", second.words.len());
        assert_eq!(
            entries.get(PAGE_ENTRIES as u32 + 700),
            Some(&[PAGE_ENTRIES as u32 + 700, PAGE_ENTRIES as u32 + 701, PAGE_ENTRIES as u32 + 702][..])
        );
        assert_eq!(entries.len(), 3 * PAGE_ENTRIES - PAGE_ENTRIES - 600);
    }
}
