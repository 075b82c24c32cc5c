//! The GEMV's register tiles ([`crate::gemv`]): a chunk of weight rows against up to 16 input
//! rows, in tiles of weight rows x input rows with the widest vectors the CPU has: AVX-512 (one
//! 16-lane register per output, [`crate::tiles_avx512`]) or AVX2 (two 8-lane registers per
//! output, lanes 0..8 and 8..16). Either way each output's accumulators hold exactly the 16
//! lanes of [`crate::exact_dot::dot_body`] and are summed by its tree, so every output is
//! bit-identical to `dot_body` and to every other kernel, whatever rows share the tile.
//!
//! A tile exists to reuse loads: a weight piece feeds every input row of the tile and an input
//! piece every weight row, and the independent accumulators hide the multiply-add latency (one
//! row against one weight row has only one or two dependency chains, a quarter of what two FMA
//! units need). The kernel is chosen once per call ([`Tiles::of_this_cpu`]) and sweeps a whole
//! chunk, so the per-tile dispatch is a jump inside one function.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use crate::ahead::{per_piece, Ahead, Spread};
use crate::exact_dot::Grid;
#[cfg(target_arch = "x86_64")]
use crate::exact_dot::{has_avx2_fma, tail_dot};
#[cfg(target_arch = "x86_64")]
use crate::lane_sums::lane_sum_avx2;
use crate::weight_elem::WeightElem;

/// A GEMV task's weight rows: `n` rows of `inner` values from the start of `w`, taken
/// `per_tile` (1 to 4) at a time. `w` may go on past them: the last tile prefetches what
/// follows (the next task's rows).
#[derive(Clone, Copy)]
pub(crate) struct Chunk<'a, W> {
    pub(crate) w: &'a [W],
    pub(crate) n: usize,
    pub(crate) inner: usize,
    pub(crate) per_tile: usize,
    pub(crate) prefetch: Prefetch,
}

/// How a tile asks for the next tile's weight rows ([`crate::ahead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefetch {
    /// All of them into L1, spread over the tile's pieces: for weights that L3 may hold, and
    /// for tiles that take several passes.
    Spread,
    /// The first lines of each row into L2 as the tile starts, the rest left to the hardware
    /// prefetcher: for weights streamed from memory.
    Heads,
}

#[cfg(target_arch = "x86_64")]
impl<'a, W> Chunk<'a, W> {
    /// Weight rows `g..g + k` (`k` of at most 4; the last row repeated in the unused slots),
    /// and the next tile's rows to prefetch while they are read.
    #[inline(always)]
    pub(crate) fn tile(&self, g: usize) -> (usize, [&'a [W]; 4], Ahead) {
        let k = self.per_tile.min(self.n - g);
        let row = |j: usize| &self.w[(g + j.min(k - 1)) * self.inner..][..self.inner];
        let next = ((g + self.per_tile) * self.inner).min(self.w.len());
        let end = (next + self.per_tile * self.inner).min(self.w.len());
        let rows = [row(0), row(1), row(2), row(3)];
        (k, rows, Ahead::of(&self.w[next..end]))
    }

    /// What a tile's pieces prefetch of the next tile's rows `ahead` (shares of `per` bytes),
    /// after the tile itself has asked for what [`Prefetch::Heads`] asks for.
    #[inline(always)]
    pub(crate) fn ahead(&self, ahead: Ahead, per: usize) -> Spread {
        match self.prefetch {
            Prefetch::Spread => ahead.spread(per),
            Prefetch::Heads => {
                ahead.fetch_heads(self.inner * std::mem::size_of::<W>());
                Spread::none()
            }
        }
    }
}

/// The tile kernel of this CPU for weights of type `W`.
#[derive(Clone, Copy)]
pub(crate) struct Tiles<W> {
    sweep: unsafe fn(Chunk<W>, &[&[f32]], Grid),
    /// Whether the kernel is AVX-512's (one register per output) rather than AVX2's.
    wide: bool,
}

impl<W: WeightElem> Tiles<W> {
    /// `None` where the CPU has neither AVX-512F nor AVX2 with FMA and F16C (or not what `W`'s
    /// loads need).
    pub(crate) fn of_this_cpu() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if !W::simd_ok() {
                return None;
            }
            if has_avx512f() {
                return Some(Self {
                    sweep: crate::tiles_avx512::chunk_avx512::<W>,
                    wide: true,
                });
            }
            if has_avx2_fma() {
                return Some(Self {
                    sweep: chunk_avx2::<W>,
                    wide: false,
                });
            }
        }
        None
    }

    /// Weight rows per tile and prefetch for `rows` input rows against a matrix streamed from
    /// memory (one too big for the caches to keep between calls).
    ///
    /// With AVX2 and one or two input rows, four weight rows at a time, [`Prefetch::Heads`]:
    /// four streams keep more reads in flight than one, and L1 prefetches would hold the miss
    /// buffers they need (measured, Zen 3, 2 threads, paired steps: the 492 M model's decode
    /// GEMVs in 0.78 of the time of one row per tile with [`Prefetch::Spread`], bf16 0.87; two
    /// rows 0.87; 155 M model 0.84 and 0.92). Three and four input rows take several passes
    /// over a tile of four, and one weight row per tile stays best for them (1.01–1.06 the
    /// other way). AVX-512 keeps one row per tile, its best measured way (an AVX-512 host was
    /// not at hand to measure this one: `docs/performance.md`).
    pub(crate) fn streamed(&self, rows: usize) -> (usize, Prefetch) {
        if !self.wide && rows <= 2 {
            (4, Prefetch::Heads)
        } else {
            (1, Prefetch::Spread)
        }
    }

    /// Output `(j, r)` of `out` = `dot_body(xs[r], row j of the chunk)` for every row of the
    /// chunk and up to 16 input rows of `chunk.inner` values.
    ///
    /// # Safety
    /// As for [`Grid::set`], for every output of the chunk.
    pub(crate) unsafe fn run(&self, chunk: Chunk<W>, xs: &[&[f32]], out: Grid) {
        assert!(
            (1..=4).contains(&chunk.per_tile)
                && chunk.n > 0
                && chunk.w.len() >= chunk.n * chunk.inner
                && (1..=16).contains(&xs.len())
                && xs.iter().all(|x| x.len() == chunk.inner),
            "a chunk of 1 to 4 weight rows per tile against 1 to 16 input rows of its width"
        );
        // SAFETY: the kernel was chosen for this CPU; the shapes are checked above.
        (self.sweep)(chunk, xs, out)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// The AVX2 passes over one tile of `k` weight rows: for each group of input rows (`take` rows
/// from `r0`), the weight rows in groups of `outs`. Each pass keeps at most 12 accumulators of
/// AVX2's 16 registers (two per output): 4 x 1, 2 x 2 and 2 x 3 (weight rows x input rows; a
/// 2 x 3 pass reads its input rows from memory in the multiply-adds), 1 x 4 for one weight row.
/// The weight rows stay in L1 between passes.
#[cfg(target_arch = "x86_64")]
fn avx2_passes(rows: usize, k: usize, mut pass: impl FnMut(usize, usize, usize, usize)) {
    let mut r0 = 0;
    while r0 < rows {
        let left = rows - r0;
        let take = match (k, left) {
            (1, _) => left.min(4),
            (_, 1) => 1,
            (_, 2 | 4) => 2,
            _ => 3,
        };
        let outs = if take == 1 { 4 } else { 2 };
        for j0 in (0..k).step_by(outs) {
            pass(j0, outs.min(k - j0), r0, take);
        }
        r0 += take;
    }
}

/// [`Tiles`]' sweep with AVX2: every tile's passes ([`avx2_passes`]), the next tile's rows
/// prefetched across all of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk_avx2<W: WeightElem>(c: Chunk<W>, xs: &[&[f32]], out: Grid) {
    let pieces = c.inner / 16;
    let mut passes = 0;
    avx2_passes(xs.len(), c.per_tile.min(c.n), |_, _, _, _| passes += 1);
    let per = per_piece(
        c.per_tile * c.inner * std::mem::size_of::<W>(),
        passes * pieces,
    );
    for g in (0..c.n).step_by(c.per_tile) {
        let (k, ws, ahead) = c.tile(g);
        let ahead = c.ahead(ahead, per);
        let mut first = 0;
        avx2_passes(xs.len(), k, |j0, jn, r0, rn| {
            let (ws, rows, out) = (&ws[j0..j0 + jn], &xs[r0..r0 + rn], out.at(g + j0, r0));
            macro_rules! go {
                ($($j:literal, $r:literal);*) => {
                    match (jn, rn) {
                        // SAFETY: the CPU has AVX2, FMA and F16C (this function's features).
                        $(($j, $r) => unsafe { tile_avx2::<W, $j, $r>(ws, rows, out, ahead, first) },)*
                        _ => unreachable!("AVX2 passes are 4 x 1, 2 x 2, 2 x 3 or 1 x 4 at most"),
                    }
                };
            }
            go!(1,1; 2,1; 3,1; 4,1; 1,2; 2,2; 1,3; 2,3; 1,4);
            first += pieces;
        });
    }
}

/// One piece of 16 inner elements with AVX2: `J` weight rows (`w[j]` at the piece's first
/// element) against `R` input rows (`x[r]` likewise), lanes 0..8 of output `(j, r)` into
/// `lo[j][r]` and lanes 8..16 into `hi[j][r]`, each lane with exactly the fused multiply-add of
/// `dot_body`'s accumulator. The step of every AVX2 kernel (the tiles here, `gemm`'s).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C (inlined into a function compiled for them); 16 elements are
/// readable at every pointer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn piece_avx2<W: WeightElem, const J: usize, const R: usize>(
    w: [*const W; J],
    x: [*const f32; R],
    lo: &mut [[__m256; R]; J],
    hi: &mut [[__m256; R]; J],
) {
    let w0: [__m256; J] = std::array::from_fn(|j| W::load8(w[j]));
    let w1: [__m256; J] = std::array::from_fn(|j| W::load8(w[j].add(8)));
    for r in 0..R {
        let (x0, x1) = (_mm256_loadu_ps(x[r]), _mm256_loadu_ps(x[r].add(8)));
        for j in 0..J {
            lo[j][r] = _mm256_fmadd_ps(x0, w0[j], lo[j][r]);
            hi[j][r] = _mm256_fmadd_ps(x1, w1[j], hi[j][r]);
        }
    }
}

/// A tile of `J` weight rows x `R` input rows with AVX2 ([`piece_avx2`] over the inner axis),
/// piece `c` prefetching `ahead`'s share `first + c`; writes output `(j, r)` of `out`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; as for [`Grid::set`], for every output of the tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn tile_avx2<W: WeightElem, const J: usize, const R: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: Grid,
    ahead: Spread,
    first: usize,
) {
    const L: usize = 16;
    let n = ws[0].len();
    assert!(ws.len() == J && xs.len() == R);
    assert!(ws.iter().all(|w| w.len() == n) && xs.iter().all(|x| x.len() == n));
    let body = n - n % L;
    let mut lo = [[_mm256_setzero_ps(); R]; J];
    let mut hi = [[_mm256_setzero_ps(); R]; J];
    for c in 0..body / L {
        ahead.fetch(first + c);
        let i = c * L;
        // SAFETY: i + 16 <= body <= n, and every row has n elements (asserted above).
        piece_avx2::<W, J, R>(
            std::array::from_fn(|j| ws[j].as_ptr().add(i)),
            std::array::from_fn(|r| xs[r].as_ptr().add(i)),
            &mut lo,
            &mut hi,
        );
    }
    for j in 0..J {
        for r in 0..R {
            let sum = lane_sum_avx2(lo[j][r], hi[j][r]);
            out.set(j, r, sum + tail_dot(&xs[r][body..], &ws[j][body..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact_dot::dot_body;
    use crate::exact_dot::tests::values;
    use half::bf16;

    /// Every tile and pass shape against `dot_body`, for f32 and bf16 weights, on whichever
    /// kernel this CPU runs (AVX-512 or AVX2): chunks that leave partial tiles, one and four
    /// weight rows per tile, 1 to 16 input rows.
    fn check_chunks<W: WeightElem>(widen: impl Fn(f32) -> W) {
        let Some(tiles) = Tiles::<W>::of_this_cpu() else {
            return;
        };
        // 67: four pieces of 16 and a tail of 3.
        for inner in [16, 67, 256] {
            let xs: Vec<Vec<f32>> = (0..16).map(|r| values(inner, r)).collect();
            // Two rows past the chunk: what its last tile prefetches.
            let w: Vec<W> = (0..9 + 2)
                .flat_map(|j| values(inner, 20 + j))
                .map(&widen)
                .collect();
            let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
            for n in [1, 2, 3, 5, 9] {
                for (per_tile, prefetch) in [
                    (1, Prefetch::Spread),
                    (4, Prefetch::Spread),
                    (4, Prefetch::Heads),
                ] {
                    for nr in 1..=16 {
                        let (stride, pad) = (n + 3, 2);
                        let mut buf = vec![f32::NAN; (nr + pad) * stride];
                        let chunk = Chunk {
                            w: &w,
                            n,
                            inner,
                            per_tile,
                            prefetch,
                        };
                        // One output row of `stride` per input row, the chunk's outputs from
                        // column 1 of row 1: everything else must stay untouched.
                        let out = Grid::rows_major(&mut buf, stride).at(1, 1);
                        // SAFETY: one thread writes the buffer, and it holds every output.
                        unsafe { tiles.run(chunk, &rows[..nr], out) };
                        for (k, v) in buf.iter().enumerate() {
                            let (r, j) = (k / stride, k % stride);
                            let inside = (1..=nr).contains(&r) && (1..=n).contains(&j);
                            if !inside {
                                assert!(v.is_nan(), "wrote ({r}, {j}) outside the chunk");
                                continue;
                            }
                            let wj = &w[(j - 1) * inner..j * inner];
                            assert_eq!(
                                v.to_bits(),
                                dot_body(rows[r - 1], wj).to_bits(),
                                "{n} rows by {per_tile} ({prefetch:?}), output ({}, {}) of {nr}, inner {inner}",
                                j - 1,
                                r - 1
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_tile_gives_dot_body_bit_for_bit() {
        check_chunks::<f32>(|v| v);
        check_chunks::<bf16>(bf16::from_f32);
        check_chunks::<half::f16>(half::f16::from_f32);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_passes_cover_each_output_once_within_twelve_accumulators() {
        for k in 1..=4 {
            for rows in 1..=16 {
                let mut seen = vec![0; k * rows];
                avx2_passes(rows, k, |j0, jn, r0, rn| {
                    assert!(2 * jn * rn <= 12 && jn >= 1 && rn >= 1, "{jn} x {rn}");
                    for j in j0..j0 + jn {
                        for r in r0..r0 + rn {
                            seen[j * rows + r] += 1;
                        }
                    }
                });
                assert!(seen.iter().all(|&s| s == 1), "{k} x {rows}: {seen:?}");
            }
        }
    }
}
