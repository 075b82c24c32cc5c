//! A learned per-head gain on the future slot's key and value (`future_slot_gain`, off by
//! default; beyond the paper).
//!
//! Why: the slot is one key among the whole context, and its key and value come from the head's
//! shared norms and projections, so nothing slot-specific can make it louder — only the direction
//! of `e_f` and `fc f` can change. Our pilots (docs/confu.md) measured rows putting under 2 % of
//! their attention on the slot even when `f` was the target's real next feature. A gain
//! `exp(γ_k)` on the slot's key scales its attention logit per head, and `exp(γ_v)` on its value
//! scales what it contributes; `γ = 0` (the initialisation) is exactly the paper's slot. Decoding
//! applies the same gains when it writes the reserved draft-cache slot; RoPE is linear, so scaling
//! the rotated key is the same as scaling before rotation.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu_core::ToHost;
use confu_model::param::lazy;

/// Log-gains `[kv_heads]` of the future slot's key (`log_k`) and value (`log_v`).
#[derive(Module, Debug)]
pub struct SlotGain<B: Backend> {
    pub log_k: Param<Tensor<B, 1>>,
    pub log_v: Param<Tensor<B, 1>>,
}

impl<B: Backend> SlotGain<B> {
    /// A skeleton for a head with `kv_heads` key/value heads.
    pub fn new(kv_heads: usize, device: &B::Device) -> Self {
        Self {
            log_k: lazy([kv_heads], device),
            log_v: lazy([kv_heads], device),
        }
    }

    /// Scale slot keys and values `[rows, kv_heads, head_dim]` by their head's gain.
    pub fn apply(&self, k: Tensor<B, 3>, v: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let heads = k.dims()[1];
        let gain = |log: &Param<Tensor<B, 1>>| log.val().exp().reshape([1, heads, 1]);
        (k * gain(&self.log_k), v * gain(&self.log_v))
    }

    /// The gains themselves (`exp γ`), key then value, per head: what decoding multiplies by.
    pub fn gains(&self) -> (Vec<f32>, Vec<f32>) {
        (
            self.log_k.val().exp().to_host(),
            self.log_v.val().exp().to_host(),
        )
    }
}
