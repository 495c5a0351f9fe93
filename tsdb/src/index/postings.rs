//! `postings` are sorted, duplicate-free lists of series ids and the set operations selectors are
//! answered with (merge-based: every list is already sorted because ids are handed out in order).

/// Ids present in both lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    // Galloping would help very skewed sizes; a linear merge with binary search on the large side
    // covers the common "one selective matcher" case well enough.
    if small.len() * 16 < large.len() {
        for id in small {
            if large.binary_search(id).is_ok() {
                out.push(*id);
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Ids in `a` but not in `b`.
pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for id in a {
        while j < b.len() && b[j] < *id {
            j += 1;
        }
        if j >= b.len() || b[j] != *id {
            out.push(*id);
        }
    }
    out
}

/// Ids in any of `lists`.
pub fn union<'a>(lists: impl IntoIterator<Item = &'a [u32]>) -> Vec<u32> {
    let lists: Vec<&[u32]> = lists.into_iter().collect();
    match lists.len() {
        0 => Vec::new(),
        1 => lists[0].to_vec(),
        _ => {
            let mut out: Vec<u32> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for list in lists {
                out.extend_from_slice(list);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn sorted_set() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::btree_set(0u32..200, 0..60).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn set_operations_match_btreeset(a in sorted_set(), b in sorted_set(), c in sorted_set()) {
            let (sa, sb, sc): (BTreeSet<u32>, BTreeSet<u32>, BTreeSet<u32>) =
                (a.iter().copied().collect(), b.iter().copied().collect(), c.iter().copied().collect());
            prop_assert_eq!(intersect(&a, &b), sa.intersection(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(subtract(&a, &b), sa.difference(&sb).copied().collect::<Vec<_>>());
            let all: BTreeSet<u32> = sa.union(&sb).copied().collect::<BTreeSet<_>>().union(&sc).copied().collect();
            prop_assert_eq!(union([a.as_slice(), b.as_slice(), c.as_slice()]), all.into_iter().collect::<Vec<_>>());
        }
    }
}
