//! The learned ConFu parameters of a draft folder (`confu.safetensors`): the soft prompt and the
//! two MoEs, as one module whose field names are the tensor names (`soft_prompt`,
//! `contemplate.router.weight`, `contemplate.experts`, `future.router.weight`, `future.experts`,
//! and with `future_slot_gain` on, `slot_gain.log_k` and `slot_gain.log_v`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Result;
use confu_model::naming::{fill, named_values, normal_values, SeededUniform, TensorValues};
use confu_model::param::lazy;
use confu_model::{write_safetensors, NamedTensor, WeightFiles};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::options::ConfuOptions;
use crate::router::Moe;
use crate::slot_gain::SlotGain;

/// Soft prompt `[s, d]`, contemplate MoE (routes a `3d` target feature to a `d` embedding) and
/// future MoE (routes the draft's `d_draft` fused feature to a `d_draft` embedding).
#[derive(Module, Debug)]
pub struct ConfuParams<B: Backend> {
    pub soft_prompt: Param<Tensor<B, 2>>,
    pub contemplate: Moe<B>,
    pub future: Moe<B>,
    /// Present iff the options' `future_slot_gain` is on.
    pub slot_gain: Option<SlotGain<B>>,
}

/// The widths the parameters must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfuDims {
    /// The target's hidden size `d`.
    pub target_hidden: usize,
    /// The draft head's hidden size.
    pub draft_hidden: usize,
    /// The draft head's key/value heads.
    pub draft_kv_heads: usize,
}

impl<B: Backend> ConfuParams<B> {
    /// A skeleton for `options` and `dims`.
    pub fn new(o: &ConfuOptions, dims: ConfuDims, device: &B::Device) -> Self {
        let (d, dd, n) = (dims.target_hidden, dims.draft_hidden, o.n_expert);
        Self {
            soft_prompt: lazy([o.soft_prompt_len, d], device),
            contemplate: Moe::new(n, 3 * d, d, device),
            future: Moe::new(n, dd, dd, device),
            slot_gain: o
                .future_slot_gain
                .then(|| SlotGain::new(dims.draft_kv_heads, device)),
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

    /// Where training starts: soft-prompt rows and expert embeddings are the target's embeddings
    /// of seeded random tokens (so they start at the scale real inputs have), routers N(0, 0.02²)
    /// (near-uniform routing), slot log-gains 0 (the paper's slot). `embed` is the target's table, row-major `[vocab, d]`.
    pub fn init_for_training(
        o: &ConfuOptions,
        dims: ConfuDims,
        embed: &[f32],
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        let mut init = FromTokenEmbeddings {
            rng: ChaCha8Rng::seed_from_u64(seed),
            embed,
            width: dims.target_hidden,
        };
        Self::from_values(o, dims, &mut init, device)
    }

    /// Write `dir/confu.safetensors` and `dir/confu.json` (each atomically): with the official
    /// EAGLE-3 files beside them, a ConFu draft folder.
    pub fn save(&self, o: &ConfuOptions, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| confu_core::Error::io(dir, e))?;
        let tensors: Vec<NamedTensor> =
            named_values(self, "").into_iter().map(Into::into).collect();
        write_safetensors(&dir.join("confu.safetensors"), &tensors, None)?;
        confu_core::write_atomic(&dir.join("confu.json"), o.to_json().as_bytes())
    }
}

/// Training initialisation, see [`ConfuParams::init_for_training`].
struct FromTokenEmbeddings<'a> {
    rng: ChaCha8Rng,
    embed: &'a [f32],
    width: usize,
}

impl TensorValues for FromTokenEmbeddings<'_> {
    fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if name.starts_with("slot_gain.") {
            return Ok(vec![0.0; n]);
        }
        let vocab = self.embed.len() / self.width.max(1);
        let rows_of_embeddings = !name.ends_with("router.weight")
            && shape.len() == 2
            && shape[1] == self.width
            && vocab > 0;
        if !rows_of_embeddings {
            return Ok(normal_values(&mut self.rng, n, 0.02));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..shape[0] {
            let t = self.rng.random_range(0..vocab);
            out.extend_from_slice(&self.embed[t * self.width..(t + 1) * self.width]);
        }
        Ok(out)
    }
}
