//! RMSNorm and the SwiGLU gate as single passes over each row. burn-flex builds them from five
//! and three element-wise ops, each allocating its output and walking strided iterators: on the
//! testbed that was about a seventh of a prefill (docs/performance.md). Every element here is
//! computed as the portable bodies compute it (the same operations in the same order), except
//! RMSNorm's sum of squares, which takes `exact_dot::dot_body`'s order, and the SiLU's
//! exponential, which is [`crate::exp::exp`] (within 2 ulp of libm's, and vectorised).

use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::exact_dot::{dot, has_avx2_fma};
use crate::exp::exp;
use crate::flex_view::float;
use crate::Cpu;

/// Rows per parallel task: small passes stay on one thread.
const ROWS_PER_TASK: usize = 16;

/// `w * x / sqrt(mean(x^2) + eps)` over the last axis, or `None` when a tensor is not contiguous
/// f32 (the caller falls back to the portable body).
pub fn rms_norm<const D: usize>(
    x: &Tensor<Cpu, D>,
    w: &Tensor<Cpu, 1>,
    eps: f64,
) -> Option<Tensor<Cpu, D>> {
    let dims = x.dims();
    let d = dims[D - 1];
    let (xt, wt) = (float(x.clone()), float(w.clone()));
    if xt.dtype() != DType::F32 || wt.dtype() != DType::F32 || w.dims()[0] != d || d == 0 {
        return None;
    }
    let (xs, ws) = (xt.as_slice::<f32>()?, wt.as_slice::<f32>()?);
    let eps = eps as f32;
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(xs.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let inv = 1.0 / (dot(x, x) / d as f32 + eps).sqrt();
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(ws) {
                    *o = (x * inv) * w;
                }
            }
        });
    Some(Tensor::from_data(TensorData::new(out, dims), &x.device()))
}

/// `silu(gate) * up`, or `None` when a tensor is not contiguous f32 or the shapes differ.
pub fn swiglu(gate: &Tensor<Cpu, 2>, up: &Tensor<Cpu, 2>) -> Option<Tensor<Cpu, 2>> {
    let dims = gate.dims();
    let (gt, ut) = (float(gate.clone()), float(up.clone()));
    if gt.dtype() != DType::F32 || ut.dtype() != DType::F32 || up.dims() != dims || dims[1] == 0 {
        return None;
    }
    let (gs, us) = (gt.as_slice::<f32>()?, ut.as_slice::<f32>()?);
    let chunk = dims[1] * ROWS_PER_TASK;
    let mut out = vec![0f32; gs.len()];
    out.par_chunks_mut(chunk)
        .zip(gs.par_chunks(chunk).zip(us.par_chunks(chunk)))
        .for_each(|(o, (g, u))| silu_times(o, g, u));
    Some(Tensor::from_data(
        TensorData::new(out, dims),
        &gate.device(),
    ))
}

/// `o = silu(g) * u`, in an AVX2+FMA copy where the CPU has them (the exponential vectorises).
fn silu_times(o: &mut [f32], g: &[f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { silu_times_avx2(o, g, u) };
            return;
        }
    }
    silu_times_body(o, g, u);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_times_avx2(o: &mut [f32], g: &[f32], u: &[f32]) {
    silu_times_body(o, g, u);
}

#[inline(always)]
fn silu_times_body(o: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        // burn's silu: x * sigmoid(x), sigmoid(x) = 1 / (1 + exp(-x)).
        *o = g * (1.0 / (1.0 + exp(-g))) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex_view::test_tensors::{close, tensor};
    use burn::tensor::activation::silu;
    use confu_core::ops::portable;

    #[test]
    fn rms_norm_matches_the_portable_body() {
        for rows in [1, 5, 40] {
            let x = tensor([rows, 67], rows) * 3.0;
            let w = tensor([67], 9);
            let ours = rms_norm(&x, &w, 1e-5).expect("contiguous f32");
            assert!(
                close(ours, portable::rms_norm(x, &w, 1e-5)) < 1e-5,
                "{rows} rows"
            );
        }
        let x3 = tensor([3, 2, 16], 4);
        let w = tensor([16], 5);
        let ours = rms_norm(&x3, &w, 1e-6).expect("contiguous f32");
        assert!(close(ours, portable::rms_norm(x3, &w, 1e-6)) < 1e-5);
    }

    #[test]
    fn swiglu_matches_silu_times_up() {
        for rows in [1, 3, 33] {
            let g = tensor([rows, 50], 1) * 8.0;
            let u = tensor([rows, 50], 2);
            let ours = swiglu(&g, &u).expect("contiguous f32");
            assert!(close(ours, silu(g) * u) < 1e-6, "{rows} rows");
        }
    }

    #[test]
    fn strided_inputs_are_left_to_the_portable_body() {
        let x = tensor([4, 6], 1).swap_dims(0, 1);
        assert!(rms_norm(&x, &tensor([4], 2), 1e-5).is_none());
        assert!(swiglu(&x, &tensor([6, 4], 3)).is_none());
    }
}
