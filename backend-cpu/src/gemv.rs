//! Linear layers with few rows (decode, small trees): a streaming matrix-vector product. Each
//! output is one dot product over a contiguous weight row, so the weights are read once at memory
//! speed, and a row's result never depends on which other rows share the call. Larger matmuls
//! (prefill) stay with burn-flex's blocked GEMM.
//!
//! Weights may be f32, bf16 or f16 ([`WeightElem`]): half-precision rows are widened in registers
//! and then summed exactly as f32 rows are, so a half-precision weight gives bit-for-bit the
//! result of the same weight widened to f32 at load, at half the bytes read.

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use confu_core::ops::portable;
use half::{bf16, f16};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::flex_view::{float, host_f32};
use crate::weight_elem::WeightElem;
use crate::Cpu;

/// Up to this many rows, `linear` streams the weights instead of calling the blocked GEMM.
pub const GEMV_MAX_ROWS: usize = 16;

/// Output features per parallel task in the GEMV: big enough to amortise scheduling, small enough
/// to balance two to a few dozen cores.
const GEMV_CHUNK: usize = 64;

/// [`confu_core::Ops::linear`] on the CPU.
pub fn linear(x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    let rows = x.dims()[0];
    let wt = float(w.clone());
    let dtype = wt.dtype();
    if rows == 0 || rows > GEMV_MAX_ROWS {
        // burn-flex's GEMM takes f32 operands: a half-precision weight is widened for the call.
        let out = match dtype {
            DType::BF16 => wt
                .as_slice::<bf16>()
                .map(|d| widened_linear(x.clone(), d, w.dims())),
            DType::F16 => wt
                .as_slice::<f16>()
                .map(|d| widened_linear(x.clone(), d, w.dims())),
            _ => None,
        };
        return match (dtype, out) {
            (DType::F32, _) => portable::linear(x, w),
            (_, Some(y)) => y,
            _ => portable::linear(x, &w.clone().cast(FloatDType::F32)),
        };
    }
    match dtype {
        DType::BF16 => {
            if let Some(w_data) = wt.as_slice::<bf16>() {
                return gemv(x, w_data, w.dims());
            }
        }
        DType::F16 => {
            if let Some(w_data) = wt.as_slice::<f16>() {
                return gemv(x, w_data, w.dims());
            }
        }
        _ => {
            if let Some(w_data) = wt.as_slice::<f32>() {
                return gemv(x, w_data, w.dims());
            }
        }
    }
    // A strided weight view: the portable matmul, widened if need be.
    match dtype {
        DType::F32 => portable::linear(x, w),
        _ => portable::linear(x, &w.clone().cast(FloatDType::F32)),
    }
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

fn gemv<W: WeightElem>(x: Tensor<Cpu, 2>, w_data: &[W], [out, _]: [usize; 2]) -> Tensor<Cpu, 2> {
    let [rows, inner] = x.dims();
    let device = x.device();
    let x_host = host_f32(x);
    let xs: Vec<&[f32]> = x_host.chunks_exact(inner).collect();
    let mut result = vec![0f32; out * rows];
    // Computed as [out, rows] so each task owns a contiguous piece, then transposed.
    #[cfg(target_arch = "x86_64")]
    let wide = has_avx512f() && W::simd_ok();
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    result
        .par_chunks_mut(GEMV_CHUNK * rows)
        .enumerate()
        .for_each(|(chunk, dst)| {
            let first = chunk * GEMV_CHUNK;
            let w_row = |j: usize| &w_data[(first + j) * inner..(first + j + 1) * inner];
            if wide {
                // Tiles of 4 weight rows x 4 input rows: each load feeds four multiply-adds.
                for (g, outs) in dst.chunks_mut(4 * rows).enumerate() {
                    let n = outs.len() / rows;
                    let ws: [&[W]; 4] = std::array::from_fn(|j| w_row(4 * g + j.min(n - 1)));
                    // The next four weight rows, fetched while these stream: each group starts
                    // four new streams, which the hardware prefetcher picks up late (measured:
                    // bf16 decode of a 492 M model 24.6 -> 16.3 ms, f32 30.4 -> 29.4 ms).
                    let next = ((first + 4 * g + 4) * inner).min(w_data.len());
                    let ahead = &w_data[next..(next + 4 * inner).min(w_data.len())];
                    for (b, block) in xs.chunks(4).enumerate() {
                        let ahead = if b == 0 { ahead } else { &ahead[..0] };
                        tile(&ws[..n], block, &mut outs[4 * b..], rows, ahead);
                    }
                }
            } else {
                // Each weight row is loaded once for up to four input rows.
                for (j, outs) in dst.chunks_mut(rows).enumerate() {
                    for (block, o) in xs.chunks(4).zip(outs.chunks_mut(4)) {
                        dots(block, w_row(j), o);
                    }
                }
            }
        });
    let data = if rows == 1 {
        result
    } else {
        let mut t = vec![0f32; out * rows];
        for j in 0..out {
            for r in 0..rows {
                t[r * out + j] = result[j * rows + r];
            }
        }
        t
    };
    Tensor::from_data(TensorData::new(data, [rows, out]), &device)
}

/// `out[r] = dot_body(xs[r], w)` for up to four rows, loading each piece of `w` once for all of them.
/// Every row keeps its own 16 accumulators and the summation order of [`dot_body`], so a row's
/// result is bit-identical whichever rows share the call (the property the readiness tests and
/// ConFu's hidden rows rely on).
#[inline]
fn dots<W: WeightElem>(xs: &[&[f32]], w: &[W], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() && W::simd_ok() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe {
                match xs.len() {
                    1 => dots_avx2::<W, 1>(xs, w, out),
                    2 => dots_avx2::<W, 2>(xs, w, out),
                    3 => dots_avx2::<W, 3>(xs, w, out),
                    _ => dots_avx2::<W, 4>(xs, w, out),
                }
            }
            return;
        }
    }
    for (x, o) in xs.iter().zip(out.iter_mut()) {
        *o = dot_body(x, w);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    // F16C comes with every AVX2 CPU; the GEMV's half-precision loads need it.
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// [`dots`] for `R` rows with AVX2 FMA: lanes 0..8 and 8..16 of a row's accumulators live in
/// two registers, so `R = 4` keeps 8 accumulators and the two weight registers in the 16 ymm
/// registers. Lane `i` sees exactly the fused multiply-adds of `dot_body`'s `acc[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_avx2<W: WeightElem, const R: usize>(xs: &[&[f32]], w: &[W], out: &mut [f32]) {
    const L: usize = 16;
    let n = w.len();
    let body = n - n % L;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let mut i = 0;
    while i < body {
        // SAFETY: i + 16 <= body <= n, and every row has n elements.
        let w0 = W::load8(w.as_ptr().add(i));
        let w1 = W::load8(w.as_ptr().add(i + 8));
        for r in 0..R {
            let x = xs[r].as_ptr().add(i);
            lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(8)), w1, hi[r]);
        }
        i += L;
    }
    for r in 0..R {
        let mut acc = [0f32; L];
        _mm256_storeu_ps(acc.as_mut_ptr(), lo[r]);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi[r]);
        let mut tail = 0f32;
        for (x, y) in xs[r][body..].iter().zip(&w[body..]) {
            tail = x.mul_add(y.widen(), tail);
        }
        let mut s = 0f32;
        for v in acc {
            s += v;
        }
        out[r] = s + tail;
    }
}

/// Dot product with 16 independent accumulators so that LLVM vectorises it; the summation order
/// depends only on the length, which keeps results reproducible across calls. Inlined into
/// callers compiled for AVX2+FMA, `mul_add` becomes the FMA instruction.
/// `out[j * stride + r] = dot_body(xs[r], ws[j])` for up to four weight rows and four input
/// rows, with AVX-512: one 16-lane register per (weight row, input row) holds exactly the
/// accumulators of [`dot_body`], so every output is bit-identical to it (and to the other
/// kernels) whatever rows share the tile.
#[cfg(target_arch = "x86_64")]
fn tile<W: WeightElem>(ws: &[&[W]], xs: &[&[f32]], out: &mut [f32], stride: usize, ahead: &[W]) {
    macro_rules! go {
        ($($j:literal, $r:literal);*) => {
            match (ws.len(), xs.len()) {
                // SAFETY: only called when the CPU supports AVX-512F (`has_avx512f`).
                $(($j, $r) => unsafe { tile_avx512::<W, $j, $r>(ws, xs, out, stride, ahead) },)*
                _ => unreachable!("tiles are at most 4 x 4"),
            }
        };
    }
    go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4)
}

#[cfg(not(target_arch = "x86_64"))]
fn tile<W: WeightElem>(_: &[&[W]], _: &[&[f32]], _: &mut [f32], _: usize, _: &[W]) {
    unreachable!("AVX-512 tiles exist only on x86-64")
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<W: WeightElem, const J: usize, const R: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: &mut [f32],
    stride: usize,
    ahead: &[W],
) {
    const L: usize = 16;
    let n = ws[0].len();
    let body = n - n % L;
    let mut acc = [[_mm512_setzero_ps(); R]; J];
    let mut i = 0;
    while i < body {
        // A hint only: the address stays inside `ahead`.
        for j in 0..4 {
            if j * n + i < ahead.len() {
                _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(j * n + i) as *const i8);
            }
        }
        // SAFETY: i + 16 <= body <= n, and every row has n elements.
        let mut w = [_mm512_setzero_ps(); J];
        for j in 0..J {
            w[j] = W::load16(ws[j].as_ptr().add(i));
        }
        for r in 0..R {
            let x = _mm512_loadu_ps(xs[r].as_ptr().add(i));
            for j in 0..J {
                acc[j][r] = _mm512_fmadd_ps(x, w[j], acc[j][r]);
            }
        }
        i += L;
    }
    for j in 0..J {
        for r in 0..R {
            let mut lanes = [0f32; L];
            _mm512_storeu_ps(lanes.as_mut_ptr(), acc[j][r]);
            let mut tail = 0f32;
            for (x, y) in xs[r][body..].iter().zip(&ws[j][body..]) {
                tail = x.mul_add(y.widen(), tail);
            }
            let mut s = 0f32;
            for v in lanes {
                s += v;
            }
            out[j * stride + r] = s + tail;
        }
    }
}

#[inline(always)]
pub(crate) fn dot_body<W: WeightElem>(a: &[f32], b: &[W]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] = x[i].mul_add(y[i].widen(), acc[i]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail = x.mul_add(y.widen(), tail);
    }
    let mut s = 0f32;
    for v in acc {
        s += v;
    }
    s + tail
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
