//! Software prefetch of the weights a kernel reads next, spread evenly over the pieces of the
//! call that reads the weights before them. Each new tile starts fresh streams, which the
//! hardware prefetcher picks up late; and a tile whose input rows take several passes over the
//! same weight rows (AVX2) would otherwise leave memory idle during every pass after the first.
//! Spreading keeps the requests flowing through all of them, a few cache lines per piece.
//!
//! Measured on AVX-512 when the GEMV first prefetched the next tile (four-row tiles, 492 M
//! model): bf16 decode 24.6 -> 16.3 ms, f32 30.4 -> 29.4 ms. On AVX2, where two input rows take
//! two passes over a tile and four rows four, spreading the next tile over all of them (it was
//! fetched during the first only) brought the testbed's verification of two rows from 1.45 to
//! 1.0–1.1 one-row passes (docs/performance.md).
//!
//! Weights streamed from memory take the other way, [`Ahead::fetch_heads`]: prefetches into L1
//! each hold one of the core's few L1 miss buffers for a whole memory latency, which caps a
//! core's read rate, while the L2's hardware prefetcher, once a stream is started, runs many
//! more requests in flight. So the kernel reads several weight rows at once (several streams)
//! and only starts the next rows' streams, two lines each, into L2. Measured on an AVX2 host
//! (Zen 3, 2 threads): the 492 M model's f32 decode GEMVs 0.78 of the time with one row at a time
//! and the spread L1 prefetch, 0.87 with bf16 weights (docs/performance.md).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Bytes per cache line.
const LINE: usize = 64;

/// Lines at the start of each row that [`Ahead::fetch_heads`] asks for: the first two accesses
/// of a stream, what the hardware prefetcher needs to take it up.
const HEAD_LINES: usize = 2;

/// A byte range of weights to prefetch. Only a hint: nothing is read through it.
#[derive(Clone, Copy)]
pub(crate) struct Ahead {
    ptr: *const u8,
    bytes: usize,
}

impl Ahead {
    /// The elements of `s`.
    pub(crate) fn of<T>(s: &[T]) -> Self {
        Self {
            ptr: s.as_ptr().cast(),
            bytes: std::mem::size_of_val(s),
        }
    }

    /// The range in shares of `per` bytes (see [`per_piece`]): [`Spread::fetch`] of piece `c`
    /// asks for the `c`-th share.
    #[inline(always)]
    pub(crate) fn spread(self, per: usize) -> Spread {
        Spread {
            ptr: self.ptr,
            bytes: self.bytes,
            per,
        }
    }

    /// Prefetches the first [`HEAD_LINES`] lines of every row of `row_bytes` in the range into
    /// L2, starting those rows' streams for the hardware prefetcher. Once per tile of a few
    /// rows, so the iterator's cost does not matter.
    #[inline(always)]
    pub(crate) fn fetch_heads(self, row_bytes: usize) {
        for off in self.heads(row_bytes) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint and never faults; the address is inside the range.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(self.ptr.add(off) as *const i8)
            };
        }
    }

    /// The byte offsets of the lines [`Self::fetch_heads`] asks for.
    fn heads(self, row_bytes: usize) -> impl Iterator<Item = usize> {
        let bytes = self.bytes;
        (0..bytes)
            .step_by(row_bytes.max(1))
            .flat_map(move |row| (row..(row + HEAD_LINES * LINE).min(bytes)).step_by(LINE))
    }
}

/// The share of each of `pieces` pieces in `bytes`, in whole cache lines. A kernel computes it
/// once per call: a division per tile cost as much as a small tile's arithmetic.
pub(crate) fn per_piece(bytes: usize, pieces: usize) -> usize {
    bytes.div_ceil(pieces.max(1)).next_multiple_of(LINE)
}

/// An [`Ahead`] split into equal shares of whole cache lines, one per piece.
#[derive(Clone, Copy)]
pub(crate) struct Spread {
    ptr: *const u8,
    bytes: usize,
    per: usize,
}

impl Spread {
    /// Nothing to prefetch.
    pub(crate) fn none() -> Self {
        Self {
            ptr: std::ptr::null(),
            bytes: 0,
            per: LINE,
        }
    }

    /// Prefetches piece `c`'s share of the lines into L1.
    #[inline(always)]
    pub(crate) fn fetch(&self, c: usize) {
        let from = c * self.per;
        let to = self.bytes.min(from + self.per);
        let mut off = from;
        while off < to {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint and never faults; the address is inside the range.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(self.ptr.add(off) as *const i8)
            };
            off += LINE;
        }
    }

    /// The offsets of the lines that piece `c` fetches (for tests).
    #[cfg(test)]
    fn lines(&self, c: usize) -> Vec<usize> {
        let from = c * self.per;
        (from..self.bytes.min(from + self.per))
            .step_by(LINE)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pieces_fetch_every_line_once() {
        for bytes in [0, 4, 64, 1000, 4096, 16_448] {
            let buf = vec![0u8; bytes];
            for pieces in [1, 4, 16, 67, 256] {
                let spread = Ahead::of(&buf).spread(per_piece(bytes, pieces));
                let got: Vec<usize> = (0..pieces).flat_map(|c| spread.lines(c)).collect();
                let lines: Vec<usize> = (0..bytes).step_by(LINE).collect();
                assert_eq!(got, lines, "{bytes} bytes, {pieces} pieces");
            }
        }
    }

    #[test]
    fn heads_are_the_first_two_lines_of_each_row() {
        let buf = vec![0u8; 3 * 1000];
        let lines: Vec<usize> = Ahead::of(&buf).heads(1000).collect();
        assert_eq!(lines, [0, 64, 1000, 1064, 2000, 2064]);
        // Rows shorter than two lines: the range's end bounds each row's head.
        let short = vec![0u8; 100];
        let lines: Vec<usize> = Ahead::of(&short).heads(40).collect();
        assert_eq!(lines, [0, 64, 40, 80]);
    }
}
