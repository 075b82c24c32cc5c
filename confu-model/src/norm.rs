//! RMSNorm with a learned scale (`weight`).

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Ops;

use crate::param::lazy;

/// `weight * x / sqrt(mean(x²) + eps)` over the last axis.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    #[module(skip)]
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A skeleton over `width` features.
    pub fn new(width: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: lazy([width], device),
            eps,
        }
    }

    /// Rows `[rows, width]`.
    pub fn forward(&self, x: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        ops.rms_norm2(x, &self.weight.val(), self.eps)
    }

    /// Per-head rows `[rows, heads, width]` (Qwen3's q/k norms).
    pub fn forward_heads(&self, x: Tensor<B, 3>, ops: &dyn Ops<B>) -> Tensor<B, 3> {
        ops.rms_norm3(x, &self.weight.val(), self.eps)
    }
}
