//! `Paged` is a vector indexed by series id that gives memory back: ids are handed out in order
//! and never reused, series die in any order, and a page of ids whose entries are all gone is
//! freed. Churn (every rollout renames every pod) then costs a few bytes per page of dead ids
//! instead of a full entry per dead series.

/// Entries per page.
pub const PAGE_ENTRIES: usize = 1024;

/// One page: the entries (an absent one holds `T::default()`) and which are present. A bitmap
/// instead of `Option<T>` entries saves the tag's padding (8 bytes an entry for most `T`).
#[derive(Debug)]
struct Page<T> {
    entries: Box<[T]>,
    present: [u64; PAGE_ENTRIES / 64],
}

impl<T> Page<T> {
    #[inline]
    fn has(&self, i: usize) -> bool {
        self.present[i / 64] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn mark(&mut self, i: usize, present: bool) {
        let bit = 1u64 << (i % 64);
        if present {
            self.present[i / 64] |= bit;
        } else {
            self.present[i / 64] &= !bit;
        }
    }

    /// Present entries with their index in the page.
    fn entries(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries.iter().enumerate().filter(|(i, _)| self.has(*i))
    }
}

/// Entries `T` by id; an absent entry reads as `None`.
#[derive(Debug)]
pub struct Paged<T> {
    pages: Vec<Option<Page<T>>>,
    /// Present entries per page.
    live: Vec<u32>,
}

impl<T> Default for Paged<T> {
    fn default() -> Self {
        Paged { pages: Vec::new(), live: Vec::new() }
    }
}

impl<T: Default> Paged<T> {
    #[inline]
    pub fn get(&self, id: u32) -> Option<&T> {
        let id = id as usize;
        let page = self.pages.get(id / PAGE_ENTRIES)?.as_ref()?;
        page.has(id % PAGE_ENTRIES).then(|| &page.entries[id % PAGE_ENTRIES])
    }

    #[inline]
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        let id = id as usize;
        let page = self.pages.get_mut(id / PAGE_ENTRIES)?.as_mut()?;
        page.has(id % PAGE_ENTRIES).then(|| &mut page.entries[id % PAGE_ENTRIES])
    }

    /// Puts `value` at `id` (replacing what was there).
    pub fn set(&mut self, id: u32, value: T) {
        let id = id as usize;
        let page_index = id / PAGE_ENTRIES;
        if self.pages.len() <= page_index {
            self.pages.resize_with(page_index + 1, || None);
            self.live.resize(page_index + 1, 0);
        }
        let page = self.pages[page_index].get_or_insert_with(|| Page {
            entries: (0..PAGE_ENTRIES).map(|_| T::default()).collect(),
            present: [0; PAGE_ENTRIES / 64],
        });
        let i = id % PAGE_ENTRIES;
        page.entries[i] = value;
        if !page.has(i) {
            page.mark(i, true);
            self.live[page_index] += 1;
        }
    }

    /// Removes and returns the entry at `id`; its page is freed when it was the last one.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let id = id as usize;
        let page_index = id / PAGE_ENTRIES;
        let page = self.pages.get_mut(page_index)?.as_mut()?;
        let i = id % PAGE_ENTRIES;
        if !page.has(i) {
            return None;
        }
        page.mark(i, false);
        let value = std::mem::take(&mut page.entries[i]);
        self.live[page_index] -= 1;
        if self.live[page_index] == 0 {
            self.pages[page_index] = None;
        }
        Some(value)
    }

    /// Present entries in id order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.pages.iter_mut().enumerate().flat_map(|(page_index, page)| {
            page.iter_mut().flat_map(move |page| {
                let present = page.present;
                page.entries.iter_mut().enumerate().filter_map(move |(i, entry)| {
                    (present[i / 64] & (1 << (i % 64)) != 0).then(|| ((page_index * PAGE_ENTRIES + i) as u32, entry))
                })
            })
        })
    }

    /// Takes every present entry out, in id order.
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.live.clear();
        std::mem::take(&mut self.pages).into_iter().enumerate().flat_map(|(page_index, page)| {
            page.into_iter().flat_map(move |page| {
                let present = page.present;
                page.entries.into_vec().into_iter().enumerate().filter_map(move |(i, entry)| {
                    (present[i / 64] & (1 << (i % 64)) != 0).then(|| ((page_index * PAGE_ENTRIES + i) as u32, entry))
                })
            })
        })
    }

    /// Present entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.pages.iter().enumerate().flat_map(|(page_index, page)| {
            page.iter().flat_map(move |page| {
                page.entries().map(move |(i, value)| ((page_index * PAGE_ENTRIES + i) as u32, value))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_freed_when_their_last_entry_goes() {
        let mut paged = Paged::default();
        for id in 0..(3 * PAGE_ENTRIES as u32) {
            paged.set(id, id * 2);
        }
        assert_eq!(paged.get(5), Some(&10));
        for id in 0..PAGE_ENTRIES as u32 {
            assert_eq!(paged.remove(id), Some(id * 2));
        }
        assert!(paged.pages[0].is_none(), "first page freed");
        assert_eq!(paged.get(3), None);
        assert_eq!(paged.remove(3), None, "removing twice is a no-op");
        assert_eq!(paged.live.iter().sum::<u32>() as usize, 2 * PAGE_ENTRIES);
        assert_eq!(paged.iter().next(), Some((PAGE_ENTRIES as u32, &(2 * PAGE_ENTRIES as u32))));
        paged.set(10 * PAGE_ENTRIES as u32 + 1, 7);
        assert_eq!(paged.get(10 * PAGE_ENTRIES as u32 + 1), Some(&7));
    }
}
