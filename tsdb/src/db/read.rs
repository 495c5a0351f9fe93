//! `Db::select` and its relatives are the read path: series selected by matchers with their
//! chunks copied for lazy decoding, the newest sample per series, label sets of series with
//! samples in a window, and label name/value listing.

use super::{Db, SeriesId};
use crate::head::SLOT_PAYLOAD_BYTES;
use crate::ring::ChunkRef;
use crate::select::{ChunkSpan, SelectedSeries, READ_PADDING_BYTES};
use crate::{Error, Labels, Matcher, Sample};
use std::ops::Range;
use std::sync::Arc;

/// One series' newest sample in a window (see [`Db::select_latest`]).
#[derive(Debug, Clone)]
pub struct LatestSample {
    pub id: SeriesId,
    pub labels: Labels,
    pub sample: Sample,
}

/// Whether a chunk (or several) holds samples in a window, from time bounds alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    HasSamples,
    Empty,
    /// The window lies strictly between the chunk's first and last sample: only decoding tells.
    Undecided,
}

impl Window {
    /// A chunk whose first sample is at `first_ts_ms` and last at `last_ts_ms`, against
    /// `[mint_ms, maxt_ms]`: either end inside decides yes, a chunk entirely outside no.
    fn of(first_ts_ms: i64, last_ts_ms: i64, mint_ms: i64, maxt_ms: i64) -> Window {
        let inside = |ts: i64| ts >= mint_ms && ts <= maxt_ms;
        if inside(first_ts_ms) || inside(last_ts_ms) {
            Window::HasSamples
        } else if last_ts_ms < mint_ms || first_ts_ms > maxt_ms {
            Window::Empty
        } else {
            Window::Undecided
        }
    }

    /// The verdict for two chunks together.
    fn or(self, other: Window) -> Window {
        match (self, other) {
            (Window::HasSamples, _) | (_, Window::HasSamples) => Window::HasSamples,
            (Window::Undecided, _) | (_, Window::Undecided) => Window::Undecided,
            (Window::Empty, Window::Empty) => Window::Empty,
        }
    }
}

/// The series matching a selection's matchers, in label order, and its readable window (see
/// [`Db::plan_selection`]).
pub struct PlannedSelection<'d> {
    db: &'d Db,
    ids: Arc<[u32]>,
    mint_ms: i64,
    maxt_ms: i64,
}

impl PlannedSelection<'_> {
    /// How many series match (those without samples in the window are among them until copied).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no series matches.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The matching series at positions `part` with their chunks copied, projected to `keep` as
    /// [`Db::select_projected`] does and in the same order: the answers for consecutive parts
    /// covering `0..len()`, joined, are its answer. Positions past the end are ignored.
    pub fn select(&self, part: Range<usize>, keep: Option<&[String]>) -> Vec<SelectedSeries> {
        let end = part.end.min(self.ids.len());
        let ids = self.ids.get(part.start.min(end)..end).unwrap_or_default();
        self.db.select_ids(ids, self.mint_ms, self.maxt_ms, keep)
    }
}

impl Db {
    /// Series matching all `matchers` with their samples in `[mint_ms, maxt_ms]`, sorted by labels.
    /// Series without samples in the window are left out.
    pub fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<SelectedSeries>, Error> {
        self.select_projected(matchers, mint_ms, maxt_ms, None)
    }

    /// The start of a read window once retention hides what is older, and the sorted ids of the
    /// series matching `matchers`; `None` when nothing of `[mint_ms, maxt_ms]` is readable.
    fn readable_ids(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Option<(i64, Arc<[u32]>)> {
        let mint_ms = self.retention_cutoff_ms().map_or(mint_ms, |cutoff| mint_ms.max(cutoff));
        (mint_ms <= maxt_ms).then(|| (mint_ms, self.sorted_ids(matchers)))
    }

    /// [`Db::select`] returning only the labels named in `keep` (all when `None`); the order is
    /// still that of the full label sets. For readers that look at a few labels only.
    pub fn select_projected(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        keep: Option<&[String]>,
    ) -> Result<Vec<SelectedSeries>, Error> {
        let plan = self.plan_selection(matchers, mint_ms, maxt_ms);
        Ok(plan.select(0..plan.len(), keep))
    }

    /// The series [`Db::select_projected`] would read, found but not copied yet, so a reader can
    /// copy consecutive parts of them at once on threads of its own ([`PlannedSelection::select`]).
    pub fn plan_selection(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> PlannedSelection<'_> {
        let (mint_ms, ids) = self.readable_ids(matchers, mint_ms, maxt_ms).unwrap_or((mint_ms, Arc::from([])));
        PlannedSelection { db: self, ids, mint_ms, maxt_ms }
    }

    /// The newest sample in `[mint_ms, maxt_ms]` of each series matching `matchers`, sorted by
    /// labels: what an instant vector selector reads at one time. When the window reaches the
    /// series' newest sample and that sample is in the open chunk, it is read from memory without
    /// decoding anything; otherwise the window is decoded as [`Db::select`] does.
    pub fn select_latest(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        keep: Option<&[String]>,
    ) -> Result<Vec<LatestSample>, Error> {
        let Some((mint_ms, ids)) = self.readable_ids(matchers, mint_ms, maxt_ms) else {
            return Ok(Vec::new());
        };
        let mut found: Vec<Option<(u32, Sample)>> = Vec::with_capacity(ids.len().min(1 << 16));
        let mut needs_decoding: Vec<u32> = Vec::new();
        {
            let table = self.table.read();
            for &id in ids.iter() {
                let Some(cell) = table.get(id) else {
                    continue;
                };
                let s = cell.lock();
                if s.enc.num_samples > 0 && s.newest_ts_ms() <= maxt_ms {
                    if s.newest_ts_ms() >= mint_ms {
                        found.push(Some((id, Sample::new(s.newest_ts_ms(), f64::from_bits(s.newest_value_bits())))));
                    }
                } else if s.has_samples() {
                    found.push(None);
                    needs_decoding.push(id);
                }
            }
        }
        let mut decoded = self
            .select_ids(&needs_decoding, mint_ms, maxt_ms, Some(&[]))
            .into_iter()
            .filter_map(|series| series.samples().last().map(|sample| (series.id.0 as u32, sample)))
            .peekable();
        // `None` slots stand for `needs_decoding`, in order; `decoded` holds those with a sample.
        let mut pending = needs_decoding.iter();
        let index = self.index.read();
        let projection = index.projection(keep);
        let mut out = Vec::with_capacity(found.len());
        for slot in found {
            let entry = match slot {
                Some(entry) => Some(entry),
                None => {
                    let id = pending.next().copied();
                    match decoded.peek() {
                        Some((decoded_id, _)) if Some(*decoded_id) == id => decoded.next(),
                        _ => None,
                    }
                }
            };
            if let Some((id, sample)) = entry {
                out.push(LatestSample {
                    id: SeriesId(u64::from(id)),
                    labels: index.labels_projected(id, &projection),
                    sample,
                });
            }
        }
        Ok(out)
    }

    /// Ids of the series matching `matchers`, ordered by their label sets.
    pub(super) fn sorted_ids(&self, matchers: &[Matcher]) -> Arc<[u32]> {
        self.selections.sorted_ids(&self.index.read(), matchers)
    }

    /// [`Db::select`] of the series `ids` (in that order), the window already clamped.
    pub(super) fn select_ids(
        &self,
        ids: &[u32],
        mint_ms: i64,
        maxt_ms: i64,
        keep: Option<&[String]>,
    ) -> Vec<SelectedSeries> {
        let mut out = Vec::with_capacity(ids.len().min(1 << 16));
        {
            let table = self.table.read();
            let mut refs: Vec<ChunkRef> = Vec::new();
            let mut head = [0u8; SLOT_PAYLOAD_BYTES];
            for &id in ids {
                let Some(cell) = table.get(id) else {
                    continue;
                };
                refs.clear();
                let (head_len, head_samples, head_last_ts, head_resume) = {
                    let s = cell.lock();
                    if s.window_chunks(mint_ms, maxt_ms, &mut refs) {
                        let e = &s.enc;
                        // The newest checkpoint before the window: decoding resumes there, so
                        // only the bytes from its position on are copied.
                        let mut resume =
                            s.checkpoints().iter().find(|c| c.num_samples > 0 && c.last_ts_ms < mint_ms).copied();
                        let skip = resume.map_or(0, |c| (c.bit_len / 8) as usize);
                        if let Some(c) = resume.as_mut() {
                            c.bit_len -= skip as u32 * 8;
                        }
                        let len = e.bit_len.div_ceil(8) as usize - skip;
                        match s.slot() {
                            Some(slot) => {
                                slot.read_payload_from(&self.heads, skip, &mut head[..len]);
                                (len, e.num_samples, e.last_ts_ms, resume)
                            }
                            None => (0, 0, i64::MIN, None),
                        }
                    } else {
                        (0, 0, i64::MIN, None)
                    }
                };
                let mut series = SelectedSeries {
                    id: SeriesId(u64::from(id)),
                    labels: Labels::default(),
                    mint_ms,
                    maxt_ms,
                    chunks: Vec::with_capacity(refs.len() + 1),
                    bytes: Vec::new(),
                    head_resume: None,
                };
                // A chunk whose newest sample is inside the window proves the series has samples
                // there without decoding anything; otherwise look for one.
                let in_window = |ts: i64| ts >= mint_ms && ts <= maxt_ms;
                let mut known_non_empty = head_samples > 0 && in_window(head_last_ts);
                for r in &refs {
                    let start = series.bytes.len();
                    if let Some(h) = self.ring.read_chunk(r, id, &mut series.bytes) {
                        known_non_empty |= in_window(r.max_ts_ms);
                        series.chunks.push(ChunkSpan {
                            start: start as u32,
                            len: h.payload_len,
                            num_samples: h.num_samples,
                        });
                    }
                }
                if head_samples > 0 {
                    let start = series.bytes.len();
                    series.bytes.extend_from_slice(&head[..head_len]);
                    series.chunks.push(ChunkSpan {
                        start: start as u32,
                        len: head_len as u16,
                        num_samples: head_samples,
                    });
                    series.head_resume = head_resume;
                }
                series.bytes.extend_from_slice(&[0; READ_PADDING_BYTES]);
                if known_non_empty || series.samples().next().is_some() {
                    out.push(series);
                }
            }
        }
        let index = self.index.read();
        let projection = index.projection(keep);
        // A series removed since its chunks were copied has no labels left: it is left out.
        out.retain(|series| index.contains(series.id.0 as u32));
        for series in &mut out {
            series.labels = index.labels_projected(series.id.0 as u32, &projection);
        }
        drop(index);
        out
    }

    /// Label sets of the series matching `matchers` with samples in `[mint_ms, maxt_ms]`, sorted:
    /// the label sets of [`Db::select`]'s results, without copying chunks. Each series is decided
    /// from the time bounds it keeps in memory (open chunk, chunk references) and the headers of
    /// its closed chunks; only a window that lies strictly inside one chunk's span (after its
    /// first sample, before its last) has that series decoded as `select` does, to see whether a
    /// sample falls in between.
    pub fn series(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<Labels>, Error> {
        let Some((mint_ms, ids)) = self.readable_ids(matchers, mint_ms, maxt_ms) else {
            return Ok(Vec::new());
        };
        let mut found: Vec<u32> = Vec::with_capacity(ids.len().min(1 << 16));
        let mut undecided: Vec<u32> = Vec::new();
        {
            let table = self.table.read();
            let mut refs: Vec<ChunkRef> = Vec::new();
            for &id in ids.iter() {
                let Some(cell) = table.get(id) else {
                    continue;
                };
                refs.clear();
                // The chunks and open-chunk bounds `select_ids` would look at, copied under the
                // series lock; the ring is asked after it is released, as `select_ids` does.
                let head_bounds = {
                    let s = cell.lock();
                    s.window_chunks(mint_ms, maxt_ms, &mut refs).then_some((s.enc.first_ts_ms, s.enc.last_ts_ms))
                };
                let mut verdict =
                    head_bounds.map_or(Window::Empty, |(first, last)| Window::of(first, last, mint_ms, maxt_ms));
                for r in &refs {
                    if verdict == Window::HasSamples {
                        break;
                    }
                    if let Some(header) = self.ring.chunk_header(r, id) {
                        verdict = verdict.or(Window::of(header.min_ts_ms, header.max_ts_ms, mint_ms, maxt_ms));
                    }
                }
                match verdict {
                    Window::HasSamples => found.push(id),
                    Window::Empty => {}
                    Window::Undecided => {
                        found.push(id);
                        undecided.push(id);
                    }
                }
            }
        }
        if !undecided.is_empty() {
            // Both lists are in label order: walk them together, keeping an undecided series only
            // when decoding found a sample in the window.
            let decoded = self.select_ids(&undecided, mint_ms, maxt_ms, Some(&[]));
            let mut confirmed = decoded.iter().map(|series| series.id.0 as u32).peekable();
            let mut pending = undecided.iter().copied().peekable();
            found.retain(|&id| {
                if pending.peek() != Some(&id) {
                    return true;
                }
                pending.next();
                let keep = confirmed.peek() == Some(&id);
                if keep {
                    confirmed.next();
                }
                keep
            });
        }
        let index = self.index.read();
        let projection = index.projection(None);
        Ok(found.into_iter().map(|id| index.labels_projected(id, &projection)).collect())
    }

    /// Sorted label names of the series matching `matchers` (all series when empty).
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let index = self.index.read();
        if matchers.is_empty() {
            return Ok(index.label_names(None));
        }
        let ids = index.select(matchers);
        Ok(index.label_names(Some(&ids)))
    }

    /// Sorted values of label `name` among the series matching `matchers` (all series when empty).
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let index = self.index.read();
        if matchers.is_empty() {
            return Ok(index.label_values(name, None));
        }
        let ids = index.select(matchers);
        Ok(index.label_values(name, Some(&ids)))
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn window_verdict_from_chunk_bounds() {
        // A chunk with samples from 100 to 200 against windows around it.
        let of = |mint, maxt| Window::of(100, 200, mint, maxt);
        assert_eq!(of(0, 100), Window::HasSamples, "first sample on the window's end");
        assert_eq!(of(200, 300), Window::HasSamples, "last sample on the window's start");
        assert_eq!(of(50, 250), Window::HasSamples);
        assert_eq!(of(0, 99), Window::Empty);
        assert_eq!(of(201, 300), Window::Empty);
        assert_eq!(of(101, 199), Window::Undecided, "between the first and the last sample");
        assert_eq!(Window::Undecided.or(Window::HasSamples), Window::HasSamples);
        assert_eq!(Window::Empty.or(Window::Undecided), Window::Undecided);
        assert_eq!(Window::Empty.or(Window::Empty), Window::Empty);
    }
}
