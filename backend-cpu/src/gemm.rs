//! Linear layers with many rows (prefill, large trees, training batches) on CPUs with AVX-512 or
//! AVX2 (this module is compiled on x86-64 only).
//!
//! The input rows are packed once per call in groups (6 rows on AVX-512, 3 on AVX2), so that a
//! group's rows x 16 inner elements are one contiguous piece. The weight rows are read in place,
//! in blocks that stay in the L2 cache, each block re-read once per group of input rows. The
//! kernel keeps a tile of accumulators in registers (4 weight rows x 6 input rows on AVX-512's 32
//! registers, 2 x 3 on AVX2's 16, where an output takes two), half-precision weights widened in
//! registers, and each accumulator holds exactly the 16 lanes of
//! [`crate::exact_dot::dot_body`]: a row of a prefill is bit-identical to the same row computed
//! alone by the GEMV, whatever else shares the call.
//!
//! burn-flex's GEMM (the `gemm` crate on stable Rust) would sum in its own order, so a prompt's
//! rows would differ from the same rows decoded one at a time; measurements are in
//! docs/performance.md.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::exact_dot::{lane_sum_avx2, tail_dot, Grid};
use crate::tiles::{has_avx512f, lane_sums};
use crate::weight_elem::WeightElem;

/// Bytes of weights per block: a block is re-read from L2 once per group of input rows.
const BLOCK_BYTES: usize = 256 << 10;

/// Lanes of an accumulator.
const L: usize = 16;

/// The register tile of a CPU (weight rows x input rows) and its kernel: for one packed group
/// of `rows` input rows and a block of `n` weight rows (`inner` values each), it writes
/// `out[r * n + j]`, the dot product of input row `r` and weight row `j` over `chunks` pieces,
/// tile after tile (the next tile's rows prefetched while one is read).
#[derive(Clone, Copy)]
struct Tile<W> {
    outs: usize,
    rows: usize,
    sweep: Sweep<W>,
}

/// A tile kernel's signature: `(block, n, inner, panel, chunks, out)`, as [`sweep_avx2`].
type Sweep<W> = unsafe fn(&[W], usize, usize, &[f32], usize, &mut [f32]);

impl<W: WeightElem> Tile<W> {
    /// The tile of this CPU. Only for CPUs with AVX-512F or AVX2, FMA and F16C
    /// ([`crate::tiles::has_tiles`]).
    fn of_this_cpu() -> Self {
        if has_avx512f() {
            Self {
                outs: 4,
                rows: 6,
                sweep: sweep_avx512::<W>,
            }
        } else {
            Self {
                outs: 2,
                rows: 3,
                sweep: sweep_avx2::<W>,
            }
        }
    }
}

/// `x @ w^T` as `[rows, out]`: `xs` are the input rows (`inner` values each), `w` holds `out`
/// rows of `inner` values. Only where [`crate::tiles::has_tiles`] holds.
pub(crate) fn gemm<W: WeightElem>(xs: &[&[f32]], w: &[W], out: usize, inner: usize) -> Vec<f32> {
    let tile = Tile::<W>::of_this_cpu();
    let t_rows = tile.rows;
    let rows = xs.len();
    let chunks = inner / L;
    let body = chunks * L;
    let xp = pack(xs, t_rows, chunks);
    // Blocks small enough for L2 and numerous enough to keep every thread busy.
    let per_thread = out.div_ceil(2 * rayon::current_num_threads());
    let block = (BLOCK_BYTES / (inner * std::mem::size_of::<W>()).max(1)).min(per_thread);
    let block = block.next_multiple_of(tile.outs).max(tile.outs);
    let fill = |grid: Grid| {
        (0..out.div_ceil(block)).into_par_iter().for_each(|b| {
            let first = b * block;
            let n = block.min(out - first);
            let w_block = &w[first * inner..(first + n) * inner];
            let mut sums = vec![0f32; t_rows * n];
            for g in 0..rows.div_ceil(t_rows) {
                let xg = &xp[g * t_rows * body..(g + 1) * t_rows * body];
                // SAFETY: the CPU has the kernel's instructions (the caller's check); the panel
                // holds `chunks` pieces of `t_rows` rows, the block `n` rows of `inner` values.
                unsafe { (tile.sweep)(w_block, n, inner, xg, chunks, &mut sums) };
                let at = grid.at(first, g * t_rows);
                for r in 0..t_rows.min(rows - g * t_rows) {
                    let run = &mut sums[r * n..(r + 1) * n];
                    if body < inner {
                        let x = &xs[g * t_rows + r][body..];
                        for (j, v) in run.iter_mut().enumerate() {
                            *v += tail_dot(x, &w_block[j * inner + body..(j + 1) * inner]);
                        }
                    }
                    // SAFETY: this task alone writes output features first..first + n.
                    unsafe { at.set_run(r, run) };
                }
            }
        });
    };
    // SAFETY: the blocks cover every output feature, each block's groups every input row, and
    // each group writes its rows' runs whole.
    unsafe { Grid::written_rows_major(out * rows, out, fill) }
}

/// `rows` packed in groups of `group` rows (the last padded with zero rows): group `g`'s piece
/// `c` holds elements `16c..16c + 16` of its rows, one after the other, at
/// `(g * chunks + c) * group * 16`. Elements after the last whole piece are left out.
fn pack(rows: &[&[f32]], group: usize, chunks: usize) -> Vec<f32> {
    let mut p = vec![0f32; rows.len().div_ceil(group) * group * chunks * L];
    for (g, panel) in p.chunks_mut(group * chunks * L).enumerate() {
        let members = &rows[g * group..rows.len().min((g + 1) * group)];
        for (c, piece) in panel.chunks_mut(group * L).enumerate() {
            for (lanes, row) in piece.chunks_exact_mut(L).zip(members) {
                lanes.copy_from_slice(&row[c * L..(c + 1) * L]);
            }
        }
    }
    p
}

/// The weight rows of tile `t` of a block of `n` rows: `OUTS` rows from `t * OUTS`, the last
/// repeated past the block's end (its outputs are computed and dropped), how many are real, and
/// the distance in elements to the next tile's rows (0 for the block's last tile).
#[inline(always)]
fn tile_rows<W, const OUTS: usize>(
    w: &[W],
    n: usize,
    inner: usize,
    t: usize,
) -> ([*const W; OUTS], usize, usize) {
    let j_n = OUTS.min(n - t * OUTS);
    let rows = std::array::from_fn(|j| w[(t * OUTS + j.min(j_n - 1)) * inner..].as_ptr());
    let ahead = if (t + 1) * OUTS < n { OUTS * inner } else { 0 };
    (rows, j_n, ahead)
}

/// AVX-512's tile, 4 weight rows x 6 input rows: 24 accumulators + 4 weight registers + 1 input
/// register of 32.
#[target_feature(enable = "avx512f")]
// The tile's (j, r) indices name registers; iterator chains over them read worse.
#[allow(clippy::needless_range_loop)]
unsafe fn sweep_avx512<W: WeightElem>(
    w: &[W],
    n: usize,
    inner: usize,
    x: &[f32],
    chunks: usize,
    out: &mut [f32],
) {
    const OUTS: usize = 4;
    const ROWS: usize = 6;
    assert!(w.len() >= n * inner && inner >= chunks * L && n > 0);
    assert!(x.len() >= chunks * ROWS * L && out.len() >= ROWS * n);
    for t in 0..n.div_ceil(OUTS) {
        let (wp, j_n, ahead) = tile_rows::<W, OUTS>(w, n, inner, t);
        let mut acc = [[_mm512_setzero_ps(); ROWS]; OUTS];
        let mut xp = x.as_ptr();
        for c in 0..chunks {
            let i = c * L;
            let ws: [__m512; OUTS] = std::array::from_fn(|j| W::load16(wp[j].add(i)));
            if ahead > 0 {
                for p in wp {
                    // A hint only (prefetches never fault).
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + i) as *const i8);
                }
            }
            for r in 0..ROWS {
                let xr = _mm512_loadu_ps(xp.add(r * L));
                for j in 0..OUTS {
                    acc[j][r] = _mm512_fmadd_ps(xr, ws[j], acc[j][r]);
                }
            }
            xp = xp.add(ROWS * L);
        }
        let flat: [__m512; OUTS * ROWS] = std::array::from_fn(|s| acc[s % OUTS][s / OUTS]);
        let mut sums = [0f32; 2 * L];
        lane_sums(&flat, &mut sums);
        for r in 0..ROWS {
            out[r * n + t * OUTS..][..j_n].copy_from_slice(&sums[r * OUTS..r * OUTS + j_n]);
        }
    }
}

/// AVX2's tile, 2 weight rows x 3 input rows: lanes 0..8 and 8..16 of each output in two
/// registers (12 accumulators), the tree's first level one add.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
unsafe fn sweep_avx2<W: WeightElem>(
    w: &[W],
    n: usize,
    inner: usize,
    x: &[f32],
    chunks: usize,
    out: &mut [f32],
) {
    const OUTS: usize = 2;
    const ROWS: usize = 3;
    assert!(w.len() >= n * inner && inner >= chunks * L && n > 0);
    assert!(x.len() >= chunks * ROWS * L && out.len() >= ROWS * n);
    for t in 0..n.div_ceil(OUTS) {
        let (wp, j_n, ahead) = tile_rows::<W, OUTS>(w, n, inner, t);
        let mut lo = [[_mm256_setzero_ps(); ROWS]; OUTS];
        let mut hi = [[_mm256_setzero_ps(); ROWS]; OUTS];
        let mut xp = x.as_ptr();
        for c in 0..chunks {
            let i = c * L;
            let w0: [__m256; OUTS] = std::array::from_fn(|j| W::load8(wp[j].add(i)));
            let w1: [__m256; OUTS] = std::array::from_fn(|j| W::load8(wp[j].add(i + 8)));
            if ahead > 0 {
                for p in wp {
                    // A hint only (prefetches never fault).
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + i) as *const i8);
                }
            }
            for r in 0..ROWS {
                let x0 = _mm256_loadu_ps(xp.add(r * L));
                let x1 = _mm256_loadu_ps(xp.add(r * L + 8));
                for j in 0..OUTS {
                    lo[j][r] = _mm256_fmadd_ps(x0, w0[j], lo[j][r]);
                    hi[j][r] = _mm256_fmadd_ps(x1, w1[j], hi[j][r]);
                }
            }
            xp = xp.add(ROWS * L);
        }
        for r in 0..ROWS {
            for j in 0..j_n {
                out[r * n + t * OUTS + j] = lane_sum_avx2(lo[j][r], hi[j][r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{FloatDType, Tensor};
    use confu_core::{Ops, PortableOps};

    use crate::exact_dot::dot_body;
    use crate::flex_view::test_tensors::{close, tensor};
    use crate::tiles::has_tiles;
    use crate::{Cpu, CpuOps};

    fn rows(t: Tensor<Cpu, 2>) -> Vec<Vec<f32>> {
        let [n, d] = t.dims();
        let v: Vec<f32> = t.into_data().to_vec().unwrap();
        (0..n).map(|r| v[r * d..(r + 1) * d].to_vec()).collect()
    }

    #[test]
    fn many_rows_give_each_row_alone_bit_for_bit() {
        // Row counts past the GEMV's (16) that leave partial tile groups of 6 (AVX-512) or 3
        // (AVX2) input rows, output counts that leave partial groups of 4 or 2 weight rows, and
        // an inner size with a tail.
        for (n_rows, out, inner) in [(17, 130, 67), (40, 37, 64), (100, 9, 256)] {
            let x = tensor([n_rows, inner], n_rows);
            let w = tensor([out, inner], out);
            let many = rows(CpuOps.linear(x.clone(), &w));
            let xs = rows(x.clone());
            let ws = rows(w.clone());
            // On CPUs without AVX2 burn-flex's GEMM sums in its own order.
            for r in (0..n_rows).filter(|_| has_tiles::<f32>()) {
                let alone = rows(CpuOps.linear(x.clone().slice([r..r + 1, 0..inner]), &w));
                assert_eq!(many[r], alone[0], "row {r} of {n_rows}");
                for j in 0..out {
                    assert_eq!(many[r][j], dot_body(&xs[r], &ws[j]), "({r}, {j})");
                }
            }
            let reference = PortableOps.linear(x, &w);
            assert!(
                close(
                    CpuOps.linear(tensor([n_rows, inner], n_rows), &w),
                    reference
                ) < 1e-4
            );
        }
    }

    #[test]
    fn many_rows_of_half_precision_weights_equal_the_widened_weights() {
        for dtype in [FloatDType::BF16, FloatDType::F16] {
            let half = tensor([70, 96], 3).cast(dtype);
            let widened = half.clone().cast(FloatDType::F32);
            let x = tensor([33, 96], 4);
            assert_eq!(
                rows(CpuOps.linear(x.clone(), &half)),
                rows(CpuOps.linear(x, &widened)),
                "{dtype:?}"
            );
        }
    }
}
