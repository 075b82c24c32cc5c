//! A linear layer with the Hugging Face `[out, in]` weight layout (`weight`, optional `bias`).

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Ops;

use crate::param::lazy;

/// `y = x @ weight^T (+ bias)`.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// A skeleton `in_features → out_features`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: lazy([out_features, in_features], device),
            bias: bias.then(|| lazy([out_features], device)),
        }
    }

    /// Apply to rows `[rows, in]` with the given op implementation (a backend's GEMV when
    /// decoding, the portable matmul when training).
    pub fn forward(&self, x: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        let y = ops.linear(x, &self.weight.val());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze::<2>(),
            None => y,
        }
    }
}
