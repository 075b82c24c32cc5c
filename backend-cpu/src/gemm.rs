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

use crate::exact_dot::{tail_dot, Grid};
use crate::lane_sums::{lane_sum_avx2, lane_sums};
use crate::tiles::{has_avx512f, piece_avx2};
use crate::weight_elem::WeightElem;

/// Bytes of weights per block: a block is re-read from L2 once per group of input rows.
const BLOCK_BYTES: usize = 256 << 10;

/// Lanes of an accumulator.
const L: usize = 16;

/// The register tile of a CPU (weight rows x input rows) and its kernel ([`Sweep`]).
#[derive(Clone, Copy)]
struct Tile<W> {
    outs: usize,
    rows: usize,
    /// Pieces of 16 inner elements per kernel call: a group's input panel and a tile's weight
    /// rows over that many pieces stay in L1 together.
    k_pieces: usize,
    /// Floats of accumulator state a tile keeps between calls over successive pieces.
    state: usize,
    sweep: Sweep<W>,
}

/// A block of `n` weight rows of `inner` values each.
#[derive(Clone, Copy)]
struct Block<'a, W> {
    w: &'a [W],
    n: usize,
    inner: usize,
}

/// A tile kernel: for one packed group of input rows (`panel`, all `chunks` pieces) and a
/// weight block, every tile of the block over the pieces `pieces`, the next tile's rows
/// prefetched while one is read. A call that starts at piece 0 starts from zero accumulators,
/// else from the ones a tile left in its `state`; a call that ends at `chunks` writes
/// `out[r * n + j]`, the dot product of input row `r` and weight row `j` (without the tail past
/// the last piece), else leaves the accumulators in `state`. Splitting the pieces so changes
/// nothing in the summation order.
type Sweep<W> = unsafe fn(Block<W>, &[f32], std::ops::Range<usize>, usize, &mut [f32], &mut [f32]);

impl<W: WeightElem> Tile<W> {
    /// The tile of this CPU. Only for CPUs with AVX-512F or AVX2, FMA and F16C
    /// ([`crate::tiles::Tiles::of_this_cpu`] is `Some`).
    fn of_this_cpu() -> Self {
        if has_avx512f() {
            Self {
                outs: 4,
                rows: 6,
                k_pieces: usize::MAX,
                state: 0,
                sweep: sweep_avx512::<W>,
            }
        } else {
            // 64 pieces: a 3-row panel of 12 KB and two f32 weight rows of 8 KB, in a 32 KB
            // L1 (measured at an inner size of 2048: 82 GFLOP/s with the whole rows, which
            // stream from L2).
            Self {
                outs: 2,
                rows: 3,
                k_pieces: 64,
                state: 2 * 3 * 16,
                sweep: sweep_avx2::<W>,
            }
        }
    }
}

/// `x @ w^T` as `[rows, out]`: `xs` are the input rows (`inner` values each), `w` holds `out`
/// rows of `inner` values. Only where [`crate::tiles::Tiles::of_this_cpu`] is `Some`.
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
            let w_block = Block {
                w: &w[first * inner..(first + n) * inner],
                n,
                inner,
            };
            let mut sums = vec![0f32; t_rows * n];
            let mut state = vec![0f32; tile.state * n.div_ceil(tile.outs)];
            for g in 0..rows.div_ceil(t_rows) {
                let xg = &xp[g * t_rows * body..(g + 1) * t_rows * body];
                let mut from = 0;
                while from < chunks.max(1) {
                    let to = chunks.min(from.saturating_add(tile.k_pieces));
                    // SAFETY: the CPU has the kernel's instructions (the caller's check); the
                    // panel holds `chunks` pieces of `t_rows` rows, the block `n` rows of
                    // `inner` values, and the state one tile's floats per tile.
                    unsafe { (tile.sweep)(w_block, xg, from..to, chunks, &mut state, &mut sums) };
                    from = to.max(1);
                }
                let at = grid.at(first, g * t_rows);
                for r in 0..t_rows.min(rows - g * t_rows) {
                    let run = &mut sums[r * n..(r + 1) * n];
                    if body < inner {
                        let x = &xs[g * t_rows + r][body..];
                        for (j, v) in run.iter_mut().enumerate() {
                            *v += tail_dot(x, &w_block.w[j * inner + body..(j + 1) * inner]);
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

/// The weight rows of tile `t` of a block: `OUTS` rows from `t * OUTS`, the last repeated past
/// the block's end (its outputs are computed and dropped), how many are real, and the distance
/// in elements to the next tile's rows (0 for the block's last tile).
#[inline(always)]
fn tile_rows<W, const OUTS: usize>(b: Block<W>, t: usize) -> ([*const W; OUTS], usize, usize) {
    let j_n = OUTS.min(b.n - t * OUTS);
    let rows = std::array::from_fn(|j| b.w[(t * OUTS + j.min(j_n - 1)) * b.inner..].as_ptr());
    let ahead = if (t + 1) * OUTS < b.n {
        OUTS * b.inner
    } else {
        0
    };
    (rows, j_n, ahead)
}

/// AVX-512's tile, 4 weight rows x 6 input rows: 24 accumulators + 4 weight registers + 1 input
/// register of 32. Never split over pieces (`k_pieces` is unbounded): `pieces` is all of them.
#[target_feature(enable = "avx512f")]
// The tile's (j, r) indices name registers; iterator chains over them read worse.
#[allow(clippy::needless_range_loop)]
unsafe fn sweep_avx512<W: WeightElem>(
    b: Block<W>,
    x: &[f32],
    pieces: std::ops::Range<usize>,
    chunks: usize,
    _state: &mut [f32],
    out: &mut [f32],
) {
    const OUTS: usize = 4;
    const ROWS: usize = 6;
    assert!(pieces.start == 0 && pieces.end == chunks);
    assert!(b.w.len() >= b.n * b.inner && b.inner >= chunks * L && b.n > 0);
    assert!(x.len() >= chunks * ROWS * L && out.len() >= ROWS * b.n);
    for t in 0..b.n.div_ceil(OUTS) {
        let (wp, j_n, ahead) = tile_rows::<W, OUTS>(b, t);
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
            out[r * b.n + t * OUTS..][..j_n].copy_from_slice(&sums[r * OUTS..r * OUTS + j_n]);
        }
    }
}

/// AVX2's tile, 2 weight rows x 3 input rows: lanes 0..8 and 8..16 of each output in two
/// registers (12 accumulators), kept in `state` (96 floats per tile) between calls.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
unsafe fn sweep_avx2<W: WeightElem>(
    b: Block<W>,
    x: &[f32],
    pieces: std::ops::Range<usize>,
    chunks: usize,
    state: &mut [f32],
    out: &mut [f32],
) {
    const OUTS: usize = 2;
    const ROWS: usize = 3;
    const STATE: usize = 2 * OUTS * ROWS * 8;
    let tiles = b.n.div_ceil(OUTS);
    assert!(pieces.start <= pieces.end && pieces.end <= chunks);
    assert!(b.w.len() >= b.n * b.inner && b.inner >= chunks * L && b.n > 0);
    assert!(x.len() >= chunks * ROWS * L && out.len() >= ROWS * b.n);
    assert!(state.len() >= tiles * STATE);
    for t in 0..tiles {
        let (wp, j_n, ahead) = tile_rows::<W, OUTS>(b, t);
        let st = state[t * STATE..(t + 1) * STATE].as_mut_ptr();
        // Accumulator (j, r, half) at st + ((j * ROWS + r) * 2 + half) * 8.
        let slot = |j: usize, r: usize, h: usize| st.add(((j * ROWS + r) * 2 + h) * 8);
        let mut lo = [[_mm256_setzero_ps(); ROWS]; OUTS];
        let mut hi = [[_mm256_setzero_ps(); ROWS]; OUTS];
        if pieces.start > 0 {
            for j in 0..OUTS {
                for r in 0..ROWS {
                    lo[j][r] = _mm256_loadu_ps(slot(j, r, 0));
                    hi[j][r] = _mm256_loadu_ps(slot(j, r, 1));
                }
            }
        }
        let mut xp = x.as_ptr().add(pieces.start * ROWS * L);
        for c in pieces.clone() {
            let i = c * L;
            if ahead > 0 {
                for p in wp {
                    // A hint only (prefetches never fault).
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + i) as *const i8);
                }
            }
            piece_avx2::<W, OUTS, ROWS>(
                std::array::from_fn(|j| wp[j].add(i)),
                std::array::from_fn(|r| xp.add(r * L)),
                &mut lo,
                &mut hi,
            );
            xp = xp.add(ROWS * L);
        }
        if pieces.end < chunks {
            for j in 0..OUTS {
                for r in 0..ROWS {
                    _mm256_storeu_ps(slot(j, r, 0), lo[j][r]);
                    _mm256_storeu_ps(slot(j, r, 1), hi[j][r]);
                }
            }
            continue;
        }
        for r in 0..ROWS {
            for j in 0..j_n {
                out[r * b.n + t * OUTS + j] = lane_sum_avx2(lo[j][r], hi[j][r]);
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
    use crate::tiles::Tiles;
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
        // an inner size with a tail; 2100 is split into three calls on AVX2 (`k_pieces`).
        for (n_rows, out, inner) in [(17, 130, 67), (40, 37, 64), (100, 9, 256), (20, 11, 2100)] {
            let x = tensor([n_rows, inner], n_rows);
            let w = tensor([out, inner], out);
            let many = rows(CpuOps.linear(x.clone(), &w));
            let xs = rows(x.clone());
            let ws = rows(w.clone());
            // On CPUs without AVX2 burn-flex's GEMM sums in its own order.
            for r in (0..n_rows).filter(|_| Tiles::<f32>::of_this_cpu().is_some()) {
                let alone = rows(CpuOps.linear(x.clone().slice([r..r + 1, 0..inner]), &w));
                assert_eq!(many[r], alone[0], "row {r} of {n_rows}");
                for j in 0..out {
                    assert_eq!(many[r][j], dot_body(&xs[r], &ws[j]), "({r}, {j})");
                }
            }
            // Another summation order: rounding grows with the number of terms.
            let reference = PortableOps.linear(x, &w);
            let err = close(
                CpuOps.linear(tensor([n_rows, inner], n_rows), &w),
                reference,
            );
            assert!(
                err < 1e-4 * (inner as f32 / 256.0).max(1.0),
                "{err} at {inner}"
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
