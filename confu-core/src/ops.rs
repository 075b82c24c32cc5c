//! The tensor operations every model in confu is written with, as one trait with portable default
//! bodies built from burn primitives. A backend crate hands the model its own implementation
//! (an `Arc<dyn Ops<B>>`) and overrides what it has a faster kernel for — a fused GEMV on CPU,
//! flash attention on CUDA — without any component naming a concrete backend.

use std::fmt::Debug;

use burn::tensor::{
    activation::{silu, softmax},
    backend::Backend,
    Bool, Tensor,
};

/// A guard from [`Ops::warm_threads`]: while it lives, the backend's worker threads poll for work
/// instead of parking, so the next pass does not wait for them to wake.
pub trait WarmThreads: Send {
    /// The loop is still running (a guard may stop polling after a stretch without beats, and a
    /// beat starts it again).
    fn beat(&self);
}

/// What [`Ops::warm_threads`] returns: beating it beats the guard, when there is one.
impl WarmThreads for Option<Box<dyn WarmThreads>> {
    fn beat(&self) {
        if let Some(w) = self {
            w.beat();
        }
    }
}

/// Model-level operations over burn tensors. Every method has a portable body.
///
/// Shapes use the batch-free layout of one sequence: activations are `[rows, features]`, attention
/// heads are `[heads, rows, head_dim]`, linear weights keep the Hugging Face `[out, in]` layout.
pub trait Ops<B: Backend>: Send + Sync + Debug {
    /// Keep the backend's worker threads ready for the next kernel while a decode loop runs its
    /// sequential parts between passes (`None`: the backend has nothing to keep warm). The loop
    /// calls [`WarmThreads::beat`] every round and drops the guard when it ends.
    fn warm_threads(&self) -> Option<Box<dyn WarmThreads>> {
        None
    }

    /// `x @ w^T` for `x: [rows, in]`, `w: [out, in]`.
    fn linear(&self, x: Tensor<B, 2>, w: &Tensor<B, 2>) -> Tensor<B, 2> {
        portable::linear(x, w)
    }

    /// Whether [`Self::linear`] reads bf16/f16 weights itself (widening them in registers), so
    /// that half-precision checkpoints may keep their linear weights half precision in memory.
    /// The portable body needs f32 operands.
    fn keeps_half_weights(&self) -> bool {
        false
    }

    /// RMSNorm over the last axis of `[rows, features]`: `w * x / sqrt(mean(x^2) + eps)`.
    fn rms_norm2(&self, x: Tensor<B, 2>, w: &Tensor<B, 1>, eps: f64) -> Tensor<B, 2> {
        portable::rms_norm(x, w, eps)
    }

    /// RMSNorm for `[rows, heads, head_dim]` (per-head q/k norms of Qwen3).
    fn rms_norm3(&self, x: Tensor<B, 3>, w: &Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
        portable::rms_norm(x, w, eps)
    }

    /// The SwiGLU gate `silu(gate) * up` of `[rows, intermediate]` activations.
    fn swiglu(&self, gate: Tensor<B, 2>, up: Tensor<B, 2>) -> Tensor<B, 2> {
        portable::swiglu(gate, up)
    }

    /// Rotate-half RoPE on `x: [rows, heads, head_dim]` with per-row `cos`, `sin`: `[rows, head_dim]`.
    fn rope(&self, x: Tensor<B, 3>, cos: &Tensor<B, 2>, sin: &Tensor<B, 2>) -> Tensor<B, 3> {
        portable::rope(x, cos, sin)
    }

    /// `dst` with `rows` written at slots `start..start + n` of axis 1 (`dst: [a, slots, d]`,
    /// `rows: [a, n, d]`). The KV cache writes through this; a backend whose tensors are
    /// copy-on-write overrides it to write in place when `dst` holds its storage alone, so a write
    /// costs the rows written rather than the whole cache.
    fn write_slots(&self, dst: Tensor<B, 3>, start: usize, rows: Tensor<B, 3>) -> Tensor<B, 3> {
        let [a, n, d] = rows.dims();
        dst.slice_assign([0..a, start..start + n, 0..d], rows)
    }

    /// Scaled dot-product attention with grouped KV heads and an arbitrary visibility mask.
    ///
    /// `q: [heads, rows, d]`, `k`, `v: [kv_heads, keys, d]`, `masked_out: [rows, keys]` (`true` = may
    /// not attend; `None` = every key visible). Query head `h` reads KV head `h / (heads / kv_heads)`.
    fn attention(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        masked_out: Option<Tensor<B, 2, Bool>>,
        scale: f64,
    ) -> Tensor<B, 3> {
        let batch = |t: Tensor<B, 3>| t.unsqueeze::<4>();
        portable::attention_batched([batch(q), batch(k), batch(v)], masked_out, scale)
            .squeeze_dim(0)
    }
}

/// The portable implementation: only burn primitives, correct on every backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortableOps;

impl<B: Backend> Ops<B> for PortableOps {}

/// Portable op bodies, usable directly by backend overrides that only replace some cases.
pub mod portable {
    use super::*;

    pub fn linear<B: Backend>(x: Tensor<B, 2>, w: &Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(w.clone().transpose())
    }

    pub fn rms_norm<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        w: &Tensor<B, 1>,
        eps: f64,
    ) -> Tensor<B, D> {
        let inv = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(eps)
            .sqrt()
            .recip();
        (x * inv) * w.clone().unsqueeze::<D>()
    }

    pub fn swiglu<B: Backend>(gate: Tensor<B, 2>, up: Tensor<B, 2>) -> Tensor<B, 2> {
        silu(gate) * up
    }

    pub fn rope<B: Backend>(
        x: Tensor<B, 3>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [rows, heads, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..rows, 0..heads, 0..half]);
        let x2 = x.clone().slice([0..rows, 0..heads, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
        let cos = cos.clone().unsqueeze_dim::<3>(1);
        let sin = sin.clone().unsqueeze_dim::<3>(1);
        x * cos + rotated * sin
    }

    /// [`Ops::attention`](super::Ops::attention) over a batch of sequences that share one mask: `q: [batch, heads, rows, d]`,
    /// `k`, `v: [batch, kv_heads, keys, d]`, `masked_out: [rows, keys]`. Training runs whole
    /// sequences through this; decoding uses the one-sequence form above.
    pub fn attention_batched<B: Backend>(
        [q, k, v]: [Tensor<B, 4>; 3],
        masked_out: Option<Tensor<B, 2, Bool>>,
        scale: f64,
    ) -> Tensor<B, 4> {
        let [batch, heads, rows, d] = q.dims();
        let [_, kv_heads, keys, _] = k.dims();
        let group = heads / kv_heads;
        // Query heads sharing a KV head are adjacent, so grouping them is a free reshape and the
        // KV heads are never repeated in memory.
        let q = q.reshape([batch, kv_heads, group * rows, d]);
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        if let Some(masked_out) = masked_out {
            let mask = masked_out
                .unsqueeze::<3>()
                .expand([group, rows, keys])
                .reshape([1, 1, group * rows, keys])
                .expand([batch, kv_heads, group * rows, keys]);
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let probs = softmax(scores, 3);
        probs.matmul(v).reshape([batch, heads, rows, d])
    }
}
