//! `in_parts` splits a slice of series over the available cores for the two steps that walk many
//! series independently (decoding a selection, a range function's step table): the first part on
//! the calling thread, the others on scoped threads, and one part never leaves the calling thread
//! (a spawned thread would start on a cold allocator heap).

use crate::QueryError;

/// Calls `work(first_index, part)` on consecutive parts of `items` (one per core, at most 8; one
/// part below `parallel_from` items) and returns the results in order. A panicking part gives
/// an error naming `what`.
pub(crate) fn in_parts<I: Sync, T: Send>(
    items: &[I],
    parallel_from: usize,
    what: &str,
    work: impl Fn(usize, &[I]) -> Result<T, QueryError> + Sync,
) -> Vec<Result<T, QueryError>> {
    let threads = if items.len() < parallel_from {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |p| p.get()).min(8)
    };
    let part_len = items.len().div_ceil(threads).max(1);
    if items.len() <= part_len {
        return vec![work(0, items)];
    }
    let (own, rest) = items.split_at(part_len);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .chunks(part_len)
            .enumerate()
            .map(|(p, part)| scope.spawn(move || work((p + 1) * part_len, part)))
            .collect();
        let mut parts = vec![work(0, own)];
        parts.extend(
            handles.into_iter().map(|h| {
                h.join().unwrap_or_else(|_| Err(QueryError::Execution(format!("BUG: {what} worker panicked"))))
            }),
        );
        parts
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_item_in_order() {
        let items: Vec<usize> = (0..10_000).collect();
        let parts = in_parts(&items, 100, "test", |first, part| {
            assert_eq!(part.first(), Some(&first));
            Ok(part.to_vec())
        });
        let joined: Vec<usize> = parts.into_iter().flat_map(|p| p.unwrap_or_default()).collect();
        assert_eq!(joined, items);
        let one = in_parts(&items[..5], 100, "test", |first, part| Ok((first, part.len())));
        assert_eq!(one.len(), 1);
        assert!(matches!(one[0], Ok((0, 5))));
        assert!(in_parts(&[] as &[u8], 1, "test", |_, part| Ok(part.len())).len() == 1);
    }
}
