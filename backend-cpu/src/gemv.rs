//! `linear` on the CPU, and its few-row path (decode, small trees): a streaming matrix-vector
//! product. Each output is one dot product over a contiguous weight row, so the weights are read
//! once at memory speed, and a row's result never depends on which other rows share the call.
//! Larger matmuls (prefill) go to the L2-blocked tiles of [`crate::gemm`], which sum in the same
//! order, or to burn-flex's GEMM on CPUs without AVX2 (or AVX-512).
//!
//! Weights may be f32, bf16 or f16 ([`WeightElem`]): half-precision rows are widened in registers
//! and then summed exactly as f32 rows are, so a half-precision weight gives bit-for-bit the
//! result of the same weight widened to f32 at load, at half the bytes read.

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use confu_core::ops::portable;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::exact_dot::{dots, Grid};
use crate::flex_view::{float, host_f32};
use crate::tiles::{Chunk, Prefetch, Tiles};
use crate::weight_elem::WeightElem;
use crate::Cpu;

/// Up to this many rows, `linear` streams the weights instead of calling the blocked GEMM.
pub const GEMV_MAX_ROWS: usize = 16;

/// Output features per parallel task in the GEMV: big enough to amortise scheduling, small enough
/// to balance two to a few dozen cores.
const GEMV_CHUNK: usize = 64;

/// Weight matrices of at least this many bytes are read from memory, not cache, on every call
/// (no L3 keeps a whole model's layers between steps). For them a one-row (to four-row) GEMV
/// takes the tiles and prefetch of [`Tiles::streamed`], which keep the most reads in flight:
/// on AVX-512 one weight row at a time (measured: 492 M model, f32 decode 40.4 -> 37.0 ms, bf16
/// 18.0 -> 15.4 ms against four rows with the spread prefetch), on AVX2 four rows, each started
/// into L2 (f32 decode GEMVs 0.78 of the one-row time). Cache-resident weights are compute-bound
/// and take four weight rows per tile, whose independent accumulators hide the multiply-add
/// latency (testbed decode 0.50 -> 0.41 ms).
const STREAMED_BYTES: usize = 8 << 20;

/// [`confu_core::Ops::linear`] on the CPU.
pub fn linear(x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    let rows = x.dims()[0];
    let wt = float(w.clone());
    let dtype = wt.dtype();
    if rows > 0 {
        let out = match dtype {
            DType::BF16 => wt
                .as_slice::<bf16>()
                .and_then(|d| exact_linear(&x, d, w.dims())),
            DType::F16 => wt
                .as_slice::<f16>()
                .and_then(|d| exact_linear(&x, d, w.dims())),
            DType::F32 => wt
                .as_slice::<f32>()
                .and_then(|d| exact_linear(&x, d, w.dims())),
            _ => None,
        };
        if let Some(y) = out {
            return y;
        }
    }
    // No AVX2 for many rows, or a strided weight view: burn-flex's GEMM, which takes f32
    // operands (a half-precision weight is widened for the call).
    let out = match dtype {
        DType::BF16 => wt
            .as_slice::<bf16>()
            .map(|d| widened_linear(x.clone(), d, w.dims())),
        DType::F16 => wt
            .as_slice::<f16>()
            .map(|d| widened_linear(x.clone(), d, w.dims())),
        _ => None,
    };
    match (dtype, out) {
        (DType::F32, _) => portable::linear(x, w),
        (_, Some(y)) => y,
        _ => portable::linear(x, &w.clone().cast(FloatDType::F32)),
    }
}

/// `x @ w^T` by this crate's kernels, which keep [`crate::exact_dot`]'s summation order: the
/// streaming GEMV up to [`GEMV_MAX_ROWS`] rows, the L2-blocked kernel of `gemm` above
/// (AVX-512 or AVX2; `None`, on other CPUs, sends the call to burn-flex's GEMM).
fn exact_linear<W: WeightElem>(
    x: &Tensor<Cpu, 2>,
    w: &[W],
    [out, inner]: [usize; 2],
) -> Option<Tensor<Cpu, 2>> {
    let rows = x.dims()[0];
    let many = rows > GEMV_MAX_ROWS;
    let tiles = Tiles::<W>::of_this_cpu();
    if many && tiles.is_none() {
        return None;
    }
    let x_host = host_f32(x);
    let xs: Vec<&[f32]> = x_host.values().chunks_exact(inner).collect();
    #[cfg(target_arch = "x86_64")]
    let data = if many {
        crate::gemm::gemm(&xs, w, out, inner)
    } else {
        gemv(&xs, w, out, inner, tiles)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let data = gemv(&xs, w, out, inner, tiles);
    Some(Tensor::from_data(
        TensorData::new(data, [rows, out]),
        &x.device(),
    ))
}

/// Bytes of f32 weight widened at a time for the GEMM: blocks this small are recycled by the
/// allocator, where a whole widened MLP matrix (46 MB on a 2048-wide model) would be mapped and
/// page-faulted afresh on every call — that made a bf16 prefill 4x slower than f32.
const WIDEN_BLOCK_BYTES: usize = 4 << 20;

/// `x @ w^T` for a half-precision `w: [out, inner]` with more rows than the GEMV takes: blocks of
/// output features widened to f32 on all threads, each multiplied by burn-flex's GEMM.
fn widened_linear<W: WeightElem>(
    x: Tensor<Cpu, 2>,
    w: &[W],
    [out, inner]: [usize; 2],
) -> Tensor<Cpu, 2> {
    const CHUNK: usize = 1 << 14;
    let block = (WIDEN_BLOCK_BYTES / 4 / inner.max(1)).clamp(1, out.max(1));
    let parts: Vec<Tensor<Cpu, 2>> = (0..out)
        .step_by(block)
        .map(|first| {
            let n = block.min(out - first);
            let src = &w[first * inner..(first + n) * inner];
            let mut wide = vec![0f32; src.len()];
            wide.par_chunks_mut(CHUNK)
                .zip(src.par_chunks(CHUNK))
                .for_each(|(o, i)| {
                    for (o, i) in o.iter_mut().zip(i) {
                        *o = i.widen();
                    }
                });
            let w32 = Tensor::from_data(TensorData::new(wide, [n, inner]), &x.device());
            portable::linear(x.clone(), &w32)
        })
        .collect();
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    Tensor::cat(parts, 1)
}

/// Each output feature's dot products with every row, weights streamed once, into `[rows, out]`.
fn gemv<W: WeightElem>(
    xs: &[&[f32]],
    w_data: &[W],
    out: usize,
    inner: usize,
    tiles: Option<Tiles<W>>,
) -> Vec<f32> {
    let rows = xs.len();
    let mut result = vec![0f32; out * rows];
    let grid = Grid::rows_major(&mut result, out);
    let streamed = rows <= 4 && std::mem::size_of_val(w_data) >= STREAMED_BYTES;
    let (per_tile, prefetch) = match tiles {
        Some(tiles) if streamed => tiles.streamed(rows),
        _ => (4, Prefetch::Spread),
    };
    (0..out.div_ceil(GEMV_CHUNK))
        .into_par_iter()
        .for_each(|chunk| {
            let first = chunk * GEMV_CHUNK;
            let n = GEMV_CHUNK.min(out - first);
            let w_row = |j: usize| &w_data[(first + j) * inner..(first + j + 1) * inner];
            if let Some(tiles) = tiles {
                let chunk = Chunk {
                    w: &w_data[first * inner..],
                    n,
                    inner,
                    per_tile,
                    prefetch,
                };
                // SAFETY: this task alone writes output features first..first + n.
                unsafe { tiles.run(chunk, xs, grid.at(first, 0)) };
            } else {
                // Each weight row is loaded once for up to four input rows.
                for j in 0..n {
                    for (b, block) in xs.chunks(4).enumerate() {
                        let mut o = [0f32; 4];
                        dots(block, w_row(j), &mut o);
                        for (r, v) in o[..block.len()].iter().enumerate() {
                            // SAFETY: this task alone writes output features first..first + n.
                            unsafe { grid.at(first + j, 4 * b).set(0, r, *v) };
                        }
                    }
                }
            }
        });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact_dot::dot_body;
    use crate::flex_view::test_tensors::*;
    use crate::CpuOps;
    use confu_core::{Ops, PortableOps};

    #[test]
    fn gemv_matches_portable_linear() {
        for rows in [1, 3, 8, 9] {
            let x = tensor([rows, 67], 1);
            let w = tensor([130, 67], 2);
            let ours = linear(x.clone(), &w);
            let theirs = Ops::<Cpu>::linear(&PortableOps, x, &w);
            assert!(close(ours, theirs) < 1e-4, "rows {rows}");
        }
    }

    #[test]
    fn half_precision_weights_give_the_widened_weights_results_bit_for_bit() {
        // The weights' values are those of a bf16 / f16 checkpoint; the reference holds the same
        // values widened to f32 (what loading with widening gives).
        for dtype in [FloatDType::BF16, FloatDType::F16] {
            let half = tensor([130, 67], 2).cast(dtype);
            assert_eq!(float(half.clone()).dtype(), DType::from(dtype));
            let widened = half.clone().cast(FloatDType::F32);
            for rows in [1, 3, 4, 8, 9, 16, 17, 40] {
                let x = tensor([rows, 67], rows);
                let ours: Vec<f32> = linear(x.clone(), &half).into_data().to_vec().unwrap();
                let reference: Vec<f32> = linear(x, &widened).into_data().to_vec().unwrap();
                assert_eq!(ours, reference, "{dtype:?}, {rows} rows");
            }
        }
    }

    #[test]
    fn gemv_rows_are_bit_identical_whatever_rows_share_the_call() {
        let x = tensor([7, 67], 4);
        let w = tensor([50, 67], 5);
        let all: Vec<f32> = linear(x.clone(), &w).into_data().to_vec().unwrap();
        for r in 0..7 {
            let one: Vec<f32> = CpuOps
                .linear(x.clone().slice([r..r + 1, 0..67]), &w)
                .into_data()
                .to_vec()
                .unwrap();
            assert_eq!(one, all[r * 50..(r + 1) * 50], "row {r}");
            let scalar: Vec<f32> = (0..50)
                .map(|j| {
                    let xr: Vec<f32> = x
                        .clone()
                        .slice([r..r + 1, 0..67])
                        .into_data()
                        .to_vec()
                        .unwrap();
                    let wj: Vec<f32> = w
                        .clone()
                        .slice([j..j + 1, 0..67])
                        .into_data()
                        .to_vec()
                        .unwrap();
                    dot_body(&xr, &wj)
                })
                .collect();
            assert_eq!(one, scalar, "row {r}: SIMD kernel differs from dot_body");
        }
    }

    #[test]
    fn streamed_weights_give_the_cached_kernels_bits() {
        // Matrices of STREAMED_BYTES and more take Tiles::streamed's tiles for up to four rows.
        for dtype in [FloatDType::F32, FloatDType::BF16] {
            let inner = 1040;
            let out = STREAMED_BYTES / inner / 2 + 8;
            let w = tensor([out, inner], 7).cast(dtype);
            assert!(out * inner * if dtype == FloatDType::F32 { 4 } else { 2 } >= STREAMED_BYTES);
            let wide: Vec<Vec<f32>> = (0..out)
                .map(|j| {
                    let row = w.clone().slice([j..j + 1, 0..inner]).cast(FloatDType::F32);
                    row.into_data().to_vec().unwrap()
                })
                .collect();
            for rows in [1, 2, 3, 5] {
                let x = tensor([rows, inner], rows);
                let xs: Vec<f32> = x.clone().into_data().to_vec().unwrap();
                let got: Vec<f32> = linear(x, &w).into_data().to_vec().unwrap();
                for r in 0..rows {
                    for j in (0..out).step_by(97) {
                        let expected = dot_body(&xs[r * inner..(r + 1) * inner], &wide[j]);
                        assert_eq!(
                            got[r * out + j],
                            expected,
                            "{dtype:?}: ({r}, {j}) of {rows}"
                        );
                    }
                }
            }
        }
    }
}
