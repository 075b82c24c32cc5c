//! The SwiGLU MLP: `down_proj(silu(gate_proj(x)) * up_proj(x))`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Ops;

use crate::linear::Linear;

/// SwiGLU weights under their Hugging Face names.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// A skeleton `hidden → intermediate → hidden`.
    pub fn new(hidden: usize, intermediate: usize, device: &B::Device) -> Self {
        Self {
            gate_proj: Linear::new(hidden, intermediate, false, device),
            up_proj: Linear::new(hidden, intermediate, false, device),
            down_proj: Linear::new(intermediate, hidden, false, device),
        }
    }

    /// Apply to rows `[rows, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        let gated = ops.swiglu(
            self.gate_proj.forward(x.clone(), ops),
            self.up_proj.forward(x, ops),
        );
        self.down_proj.forward(gated, ops)
    }
}
