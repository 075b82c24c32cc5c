//! The learned ConFu parameters of a draft folder (`confu.safetensors`): the soft prompt and the
//! two MoEs, as one module whose field names are the tensor names (`soft_prompt`,
//! `contemplate.router.weight`, `contemplate.experts`, `future.router.weight`, `future.experts`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Result;
use confu_model::naming::{fill, SeededUniform, TensorValues};
use confu_model::param::lazy;
use confu_model::WeightFiles;

use crate::options::ConfuOptions;
use crate::router::Moe;

/// Soft prompt `[s, d]`, contemplate MoE (routes a `3d` target feature to a `d` embedding) and
/// future MoE (routes the draft's `d_draft` fused feature to a `d_draft` embedding).
#[derive(Module, Debug)]
pub struct ConfuParams<B: Backend> {
    pub soft_prompt: Param<Tensor<B, 2>>,
    pub contemplate: Moe<B>,
    pub future: Moe<B>,
}

/// The widths the parameters must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfuDims {
    /// The target's hidden size `d`.
    pub target_hidden: usize,
    /// The draft head's hidden size.
    pub draft_hidden: usize,
}

impl<B: Backend> ConfuParams<B> {
    /// A skeleton for `options` and `dims`.
    pub fn new(o: &ConfuOptions, dims: ConfuDims, device: &B::Device) -> Self {
        let (d, dd, n) = (dims.target_hidden, dims.draft_hidden, o.n_expert);
        Self {
            soft_prompt: lazy([o.soft_prompt_len, d], device),
            contemplate: Moe::new(n, 3 * d, d, device),
            future: Moe::new(n, dd, dd, device),
        }
    }

    /// Every tensor from `values` by name.
    pub fn from_values(
        o: &ConfuOptions,
        dims: ConfuDims,
        values: &mut dyn TensorValues,
        device: &B::Device,
    ) -> Result<Self> {
        fill(Self::new(o, dims, device), "", values, device)
    }

    /// Load `dir/confu.safetensors`, checking every shape against the options and the widths.
    pub fn load(dir: &Path, o: &ConfuOptions, dims: ConfuDims, device: &B::Device) -> Result<Self> {
        let files = WeightFiles::open_file(&dir.join("confu.safetensors"))?;
        Self::from_values(o, dims, &mut &files, device)
    }

    /// Seeded random parameters (benchmarks, tests).
    pub fn random(o: &ConfuOptions, dims: ConfuDims, seed: u64, device: &B::Device) -> Self {
        Self::from_values(o, dims, &mut SeededUniform::new(seed), device)
            .expect("seeded values never fail")
    }
}
