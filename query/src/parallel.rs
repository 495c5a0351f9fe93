//! `in_parts` and `in_ranges` split the work of one query over the available cores where it
//! walks many series or steps independently (copying a selection's chunks, decoding them, a
//! range function's step table, a fused aggregation's steps): the first part on the calling
//! thread, the others on the engine's worker pool. The pool's threads stay for the life of the
//! process: a thread spawned per part cost a thread start and a fresh stack for every query, and
//! began on a cold allocator heap that the next query's thread did not inherit.

use crate::QueryError;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

/// Most parts one walk is split into (and threads the pool has).
const MAX_PARTS: usize = 8;

/// The engine's worker pool, started on first use with one thread per core (at most
/// [`MAX_PARTS`]); `None` when its threads could not be started, and every part then runs on
/// the calling thread.
fn pool() -> Option<&'static rayon_core::ThreadPool> {
    static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(usable_cores())
            .thread_name(|i| format!("ringtail-query-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// The cores this thread may run on now, at most [`MAX_PARTS`].
fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |p| p.get()).min(MAX_PARTS)
}

/// Calls `work(first_index, part)` on consecutive parts of `items` (one per core, at most
/// [`MAX_PARTS`]; one part below `parallel_from` items) and returns the results in order. A
/// panicking part other than the first gives an error naming `what`.
pub(crate) fn in_parts<I: Sync, T: Send>(
    items: &[I],
    parallel_from: usize,
    what: &str,
    work: impl Fn(usize, &[I]) -> Result<T, QueryError> + Sync,
) -> Vec<Result<T, QueryError>> {
    in_ranges(items.len(), parallel_from, what, |range| work(range.start, &items[range]))
}

/// [`in_parts`] over the positions `0..len`: calls `work(range)` on consecutive ranges covering
/// them, for work that reads its items from somewhere other than a slice.
pub(crate) fn in_ranges<T: Send>(
    len: usize,
    parallel_from: usize,
    what: &str,
    work: impl Fn(Range<usize>) -> Result<T, QueryError> + Sync,
) -> Vec<Result<T, QueryError>> {
    let parts = if len < parallel_from { 1 } else { usable_cores() };
    let part_len = len.div_ceil(parts).max(1);
    let Some(pool) = (len > part_len).then(pool).flatten() else {
        return vec![work(0..len)];
    };
    let rest: Vec<Range<usize>> =
        (part_len..len).step_by(part_len).map(|start| start..(start + part_len).min(len)).collect();
    let mut others: Vec<Option<Result<T, QueryError>>> = rest.iter().map(|_| None).collect();
    let work = &work;
    let mut first = None;
    pool.in_place_scope(|scope| {
        for (range, slot) in rest.into_iter().zip(others.iter_mut()) {
            scope.spawn(move |_| {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(range)));
                *slot =
                    Some(result.unwrap_or_else(|_| Err(QueryError::Execution(format!("BUG: {what} worker panicked")))));
            });
        }
        first = Some(work(0..part_len));
    });
    let missing = || Err(QueryError::Execution(format!("BUG: {what} worker returned nothing")));
    let mut parts = vec![first.unwrap_or_else(missing)];
    parts.extend(others.into_iter().map(|slot| slot.unwrap_or_else(missing)));
    parts
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

    #[test]
    fn a_panicking_part_on_the_pool_is_an_error_and_the_pool_stays_usable() {
        let items: Vec<usize> = (0..1_000).collect();
        let parts = in_parts(&items, 10, "test", |first, part| {
            if first > 0 {
                panic!("a part off the calling thread");
            }
            Ok(part.len())
        });
        let parallel = std::thread::available_parallelism().map_or(1, |p| p.get()) > 1;
        if parallel {
            assert!(matches!(&parts[0], Ok(n) if *n < items.len()));
            for part in &parts[1..] {
                assert!(matches!(part, Err(QueryError::Execution(m)) if m == "BUG: test worker panicked"), "{part:?}");
            }
        } else {
            assert!(matches!(parts[..], [Ok(1_000)]));
        }
        // The pool's threads survive the panic and take the next walk.
        let sums = in_parts(&items, 10, "test", |_, part| Ok(part.iter().sum::<usize>()));
        assert_eq!(sums.into_iter().map(|p| p.unwrap_or_default()).sum::<usize>(), items.iter().sum::<usize>());
    }

    #[test]
    fn parts_run_on_the_pool_threads_not_on_new_ones() {
        let items: Vec<usize> = (0..1_000).collect();
        let names = || {
            let parts = in_parts(&items, 10, "test", |_, _| Ok(std::thread::current().id()));
            parts.into_iter().skip(1).map(|p| p.ok()).collect::<Vec<_>>()
        };
        let mut seen: Vec<_> = (0..20).flat_map(|_| names()).flatten().collect();
        seen.sort_by_key(|id| format!("{id:?}"));
        seen.dedup();
        let threads = usable_cores();
        assert!(seen.len() <= threads, "{} distinct threads over 20 walks, pool of {threads}", seen.len());
    }
}
