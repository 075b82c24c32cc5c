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

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Bytes per cache line.
const LINE: usize = 64;

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
}
