//! `SelectedSeries` is one result of `Db::select`: the series' labels and copies of its compressed
//! chunks overlapping the window, decoded lazily by `SampleIter`.
//!
//! Copying compressed bytes (about 1–2 bytes per sample) instead of decoded samples (16) keeps the
//! time a reader holds the series lock to one small memcpy per chunk, and keeps large range
//! queries cheap in memory.

use crate::chunk::{ChunkDecoder, EncoderState};
use crate::{Labels, Sample, SeriesId};

/// Zero bytes after the last copied chunk, so the bit reader can load whole 8-byte words up to a
/// chunk's last bit instead of falling back to bit-by-bit reads at the end.
pub(crate) const READ_PADDING_BYTES: usize = 8;

/// One copied chunk inside `SelectedSeries::bytes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkSpan {
    pub start: u32,
    pub len: u16,
    pub num_samples: u16,
}

/// A series found by `select`, with its samples inside the requested window.
#[derive(Debug, Clone)]
pub struct SelectedSeries {
    pub id: SeriesId,
    pub labels: Labels,
    pub(crate) mint_ms: i64,
    pub(crate) maxt_ms: i64,
    pub(crate) chunks: Vec<ChunkSpan>,
    pub(crate) bytes: Vec<u8>,
    /// For the last chunk (the open head chunk): an encoder checkpoint before the window, where
    /// decoding starts instead of at the chunk's first sample. Only the head's bytes from the
    /// checkpoint's byte on are copied, and `bit_len` is relative to that copy.
    pub(crate) head_resume: Option<EncoderState>,
}

impl SelectedSeries {
    /// The samples in `[mint, maxt]`, oldest first, decoded as the iterator advances.
    pub fn samples(&self) -> SampleIter<'_> {
        SampleIter { series: self, next_chunk: 0, decoder: None }
    }

    /// Calls `f` with every sample [`SelectedSeries::samples`] yields, in the same order,
    /// decoding each chunk in one loop (no iterator state between samples): what a query that
    /// decodes every selected series calls.
    pub fn for_each_sample(&self, mut f: impl FnMut(Sample)) {
        let (mint_ms, maxt_ms) = (self.mint_ms, self.maxt_ms);
        let last = self.chunks.len().saturating_sub(1);
        for (i, span) in self.chunks.iter().enumerate() {
            let resume = match self.head_resume {
                Some(state) if i == last => state,
                _ => EncoderState::default(),
            };
            let data = self.bytes.get(span.start as usize..).unwrap_or_default();
            let mut past_window = false;
            let decoded =
                ChunkDecoder::resume(data, span.len as usize, resume, span.num_samples).for_each_until(|sample| {
                    if sample.ts_ms > maxt_ms {
                        past_window = true;
                        return false;
                    }
                    if sample.ts_ms >= mint_ms {
                        f(sample);
                    }
                    true
                });
            if let Err(e) = decoded {
                debug_assert!(false, "BUG: stored chunk does not decode: {e:?}");
            }
            if past_window {
                // Chunks are time-ordered: nothing later can be inside the window.
                return;
            }
        }
    }

    /// An upper bound of the samples [`SelectedSeries::samples`] yields (for sizing buffers).
    pub fn max_samples(&self) -> usize {
        let all: usize = self.chunks.iter().map(|c| usize::from(c.num_samples)).sum();
        all - self.head_resume.map_or(0, |c| usize::from(c.num_samples))
    }

    /// Compressed bytes copied for this series (for accounting).
    pub fn compressed_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Iterator over the samples of a [`SelectedSeries`] inside its window, oldest first. Stops early
/// (without panicking) at a chunk that does not decode, which only a bug could produce: chunks are
/// checksummed when written and when the store is opened.
#[derive(Debug, Clone)]
pub struct SampleIter<'a> {
    series: &'a SelectedSeries,
    next_chunk: usize,
    decoder: Option<ChunkDecoder<'a>>,
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        loop {
            if let Some(decoder) = &mut self.decoder {
                match decoder.next() {
                    Some(Ok(sample)) if sample.ts_ms < self.series.mint_ms => continue,
                    Some(Ok(sample)) if sample.ts_ms <= self.series.maxt_ms => return Some(sample),
                    Some(Ok(_)) => {
                        // Past the window: chunks are time-ordered, nothing later can match.
                        self.next_chunk = self.series.chunks.len();
                        self.decoder = None;
                        return None;
                    }
                    Some(Err(e)) => {
                        debug_assert!(false, "BUG: stored chunk does not decode: {e:?}");
                        self.decoder = None;
                    }
                    None => self.decoder = None,
                }
            }
            let span = *self.series.chunks.get(self.next_chunk)?;
            self.next_chunk += 1;
            let resume = match self.series.head_resume {
                Some(state) if self.next_chunk == self.series.chunks.len() => state,
                _ => EncoderState::default(),
            };
            let data = self.series.bytes.get(span.start as usize..).unwrap_or_default();
            self.decoder = Some(ChunkDecoder::resume(data, span.len as usize, resume, span.num_samples));
        }
    }
}
