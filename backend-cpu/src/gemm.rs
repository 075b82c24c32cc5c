//! Linear layers with many rows (prefill, large trees, training batches) on AVX-512 (this module
//! is compiled on x86-64 only).
//!
//! The input rows are packed once per call in groups of 6, so that every 6 rows x 16 inner
//! elements are one contiguous piece. The weight rows are read in place, in blocks that stay in
//! the L2 cache, each block re-read once per group of input rows. The kernel keeps 24
//! accumulators in registers (4 weight rows x 6 input rows), half-precision weights widened in
//! registers, and each accumulator holds exactly the 16 lanes of
//! [`crate::exact_dot::dot_body`]: a row of a prefill is bit-identical to the same row computed
//! alone by the GEMV, whatever else shares the call.
//!
//! burn-flex's GEMM (the `gemm` crate on stable Rust) runs its AVX2 kernel on this machine;
//! measurements are in docs/performance.md.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::exact_dot::{lane_sums, tail_dot, Grid};
use crate::weight_elem::WeightElem;

/// Bytes of weights per block: a block is re-read from L2 once per group of input rows.
const BLOCK_BYTES: usize = 256 << 10;

/// Input rows per tile: 24 accumulators + 4 weight registers + 1 input register of AVX-512's 32.
const TILE_ROWS: usize = 6;

/// Weight rows per tile.
const TILE_OUTS: usize = 4;

/// Lanes of an accumulator.
const L: usize = 16;

/// `x @ w^T` as `[rows, out]`: `xs` are the input rows (`inner` values each), `w` holds `out`
/// rows of `inner` values. Only for CPUs with AVX-512F (`has_avx512f`).
pub(crate) fn gemm<W: WeightElem>(xs: &[&[f32]], w: &[W], out: usize, inner: usize) -> Vec<f32> {
    let rows = xs.len();
    let chunks = inner / L;
    let body = chunks * L;
    let xp = pack(xs, TILE_ROWS, chunks);
    // Blocks small enough for L2 and numerous enough to keep every thread busy.
    let per_thread = out.div_ceil(2 * rayon::current_num_threads());
    let block = (BLOCK_BYTES / (inner * std::mem::size_of::<W>()).max(1)).min(per_thread);
    let block = block.next_multiple_of(TILE_OUTS).max(TILE_OUTS);
    let fill = |grid: Grid| {
        (0..out.div_ceil(block)).into_par_iter().for_each(|b| {
            let first = b * block;
            let n = block.min(out - first);
            let w_row = |j: usize| &w[(first + j) * inner..(first + j + 1) * inner];
            for g in 0..rows.div_ceil(TILE_ROWS) {
                let xg = &xp[g * TILE_ROWS * body..(g + 1) * TILE_ROWS * body];
                let r_n = TILE_ROWS.min(rows - g * TILE_ROWS);
                for t in 0..n.div_ceil(TILE_OUTS) {
                    let j_n = TILE_OUTS.min(n - t * TILE_OUTS);
                    let wt: [&[W]; TILE_OUTS] =
                        std::array::from_fn(|j| w_row(t * TILE_OUTS + j.min(j_n - 1)));
                    // The next tile's rows (in this block, or the block's first for the next group).
                    let ahead = if (t + 1) * TILE_OUTS < n {
                        TILE_OUTS * inner
                    } else {
                        0
                    };
                    // SAFETY: the CPU has AVX-512F (the caller's check); the panel holds `chunks`
                    // pieces and every weight row `inner >= chunks * 16` elements.
                    let acc = unsafe { kernel(&wt, xg, chunks, ahead) };
                    let tile = grid.at(first + t * TILE_OUTS, g * TILE_ROWS);
                    let mut sums = [0f32; 2 * L];
                    // SAFETY: as `kernel`.
                    unsafe { lane_sums(&acc, &mut sums) };
                    // `sums[r * 4 + j]`: each input row's outputs are consecutive features.
                    for r in 0..r_n {
                        let run = &mut sums[r * TILE_OUTS..r * TILE_OUTS + j_n];
                        if body < inner {
                            let x = &xs[g * TILE_ROWS + r][body..];
                            for (j, v) in run.iter_mut().enumerate() {
                                *v += tail_dot(x, &w_row(t * TILE_OUTS + j)[body..]);
                            }
                        }
                        // SAFETY: this task alone writes output features first..first + n.
                        unsafe { tile.set_run(r, run) };
                    }
                }
            }
        });
    };
    // SAFETY: the blocks cover every output feature, each block's tiles every input row and
    // feature of it, and each tile writes its rows' runs whole.
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

/// The 24 accumulators of one tile (`r * 4 + j` for weight row `j`, input row `r`) over
/// `chunks` pieces of the weight rows `w` and the packed input panel `x` (6 x 16 per piece);
/// `ahead` is the distance in elements from each weight row to the next tile's (0: none).
#[target_feature(enable = "avx512f")]
// The tile's (j, r) indices name registers; iterator chains over them read worse.
#[allow(clippy::needless_range_loop)]
unsafe fn kernel<W: WeightElem>(
    w: &[&[W]; TILE_OUTS],
    x: &[f32],
    chunks: usize,
    ahead: usize,
) -> [__m512; TILE_OUTS * TILE_ROWS] {
    assert!(x.len() >= chunks * TILE_ROWS * L && w.iter().all(|r| r.len() >= chunks * L));
    let mut acc = [[_mm512_setzero_ps(); TILE_ROWS]; TILE_OUTS];
    let wp: [*const W; TILE_OUTS] = std::array::from_fn(|j| w[j].as_ptr());
    let mut xp = x.as_ptr();
    for c in 0..chunks {
        let i = c * L;
        let ws: [__m512; TILE_OUTS] = std::array::from_fn(|j| W::load16(wp[j].add(i)));
        if ahead > 0 {
            for p in wp {
                // A hint only (prefetches never fault).
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + i) as *const i8);
            }
        }
        for r in 0..TILE_ROWS {
            let xr = _mm512_loadu_ps(xp.add(r * L));
            for j in 0..TILE_OUTS {
                acc[j][r] = _mm512_fmadd_ps(xr, ws[j], acc[j][r]);
            }
        }
        xp = xp.add(TILE_ROWS * L);
    }
    std::array::from_fn(|t| acc[t % TILE_OUTS][t / TILE_OUTS])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{FloatDType, Tensor};
    use confu_core::{Ops, PortableOps};

    use crate::exact_dot::{dot_body, has_avx512f};
    use crate::flex_view::test_tensors::{close, tensor};
    use crate::{Cpu, CpuOps};

    fn rows(t: Tensor<Cpu, 2>) -> Vec<Vec<f32>> {
        let [n, d] = t.dims();
        let v: Vec<f32> = t.into_data().to_vec().unwrap();
        (0..n).map(|r| v[r * d..(r + 1) * d].to_vec()).collect()
    }

    #[test]
    fn many_rows_give_each_row_alone_bit_for_bit() {
        // Row counts past the GEMV's (16) that leave partial tile groups of 6 input rows, output
        // counts that leave partial groups of 4 weight rows, and an inner size with a tail.
        for (n_rows, out, inner) in [(17, 130, 67), (40, 37, 64), (100, 9, 256)] {
            let x = tensor([n_rows, inner], n_rows);
            let w = tensor([out, inner], out);
            let many = rows(CpuOps.linear(x.clone(), &w));
            let xs = rows(x.clone());
            let ws = rows(w.clone());
            for r in 0..n_rows {
                let alone = rows(CpuOps.linear(x.clone().slice([r..r + 1, 0..inner]), &w));
                assert_eq!(many[r], alone[0], "row {r} of {n_rows}");
                if has_avx512f() {
                    for j in 0..out {
                        assert_eq!(many[r][j], dot_body(&xs[r], &ws[j]), "({r}, {j})");
                    }
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
