//! The Llama / Qwen3 transformer as one burn module, used for decoding (wrapped by
//! [`crate::TargetModel`]) and for training (on burn's `Autodiff` backend) alike.
//!
//! Its field names are the Hugging Face tensor names (`model.embed_tokens.weight`,
//! `model.layers.{i}.self_attn.q_proj.weight`, `model.norm.weight`, `lm_head.weight`), so loading,
//! initialisation and export walk it with [`crate::naming`] and no name is written twice. The
//! layers come first in the struct because walk order is also the order a seeded initialiser
//! draws in (the order of the original trainer, so a seed keeps giving the same model).

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{backend::Backend, Int, Tensor};
use confu_core::{Ops, PortableOps, Result};

use crate::config::ModelConfig;
use crate::embedding::Embedding;
use crate::keys::{AttentionKeys, BatchKeys};
use crate::layer::DecoderLayer;
use crate::linear::Linear;
use crate::naming::{fill, named_values, SeededNormal, SeededUniform, TensorValues};
use crate::norm::RmsNorm;
use crate::rope_rows::RopeRows;
use crate::safetensors_file::{write_safetensors, NamedTensor};
use crate::weights::WeightFiles;

/// The decoder stack (`model.*` in a checkpoint).
#[derive(Module, Debug)]
pub struct LlamaBody<B: Backend> {
    pub layers: Vec<DecoderLayer<B>>,
    pub embed_tokens: Embedding<B>,
    pub norm: RmsNorm<B>,
}

/// A causal LM: the decoder stack and its output head (`None` when tied to the embedding).
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub model: LlamaBody<B>,
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> Llama<B> {
    /// A skeleton of the shape `c` describes (no memory until filled).
    pub fn new(c: &ModelConfig, device: &B::Device) -> Self {
        let (v, d) = (c.vocab_size, c.hidden_size);
        Self {
            model: LlamaBody {
                layers: (0..c.num_hidden_layers)
                    .map(|_| DecoderLayer::new(c, device))
                    .collect(),
                embed_tokens: Embedding::new(v, d, device),
                norm: RmsNorm::new(d, c.rms_norm_eps, device),
            },
            // Some tied checkpoints still store lm_head.weight; a tied config reuses the embedding.
            lm_head: (!c.tie_word_embeddings).then(|| Linear::new(d, v, false, device)),
        }
    }

    /// A model of shape `c` with every tensor taken from `values` by name.
    pub fn from_values(
        c: &ModelConfig,
        values: &mut dyn TensorValues,
        device: &B::Device,
    ) -> Result<Self> {
        fill(Self::new(c, device), "", values, device)
    }

    /// Load from checkpoint files, checking every tensor's shape against `c`.
    pub fn load(files: &WeightFiles, c: &ModelConfig, device: &B::Device) -> Result<Self> {
        Self::from_values(c, &mut &*files, device)
    }

    /// Training initialisation: weight matrices N(0, 0.02²), norms 1, from one seeded stream.
    pub fn init(c: &ModelConfig, seed: u64, device: &B::Device) -> Result<Self> {
        Self::from_values(c, &mut SeededNormal::new(seed, 0.02), device)
    }

    /// Seeded uniform weights for benchmarks.
    pub fn random(c: &ModelConfig, seed: u64, device: &B::Device) -> Result<Self> {
        Self::from_values(c, &mut SeededUniform::new(seed), device)
    }

    /// Logits `[rows, vocab]` from final-normed rows.
    pub fn head(&self, normed: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(h) => h.forward(normed, ops),
            None => ops.linear(normed, &self.model.embed_tokens.weight.val()),
        }
    }

    /// Run every decoder layer over rows `x: [rows, hidden]`, returning the last layer's output
    /// (before the final norm). `record(i, x)` sees the state entering layer `i`, and
    /// `record(num_layers, y)` the output.
    pub fn forward_layers(
        &self,
        x: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
        keys: &mut dyn AttentionKeys<B>,
        record: &mut dyn FnMut(usize, &Tensor<B, 2>),
    ) -> Tensor<B, 2> {
        let mut x = x;
        for (i, layer) in self.model.layers.iter().enumerate() {
            record(i, &x);
            x = layer.forward(x, rope, ops, keys, i);
        }
        record(self.model.layers.len(), &x);
        x
    }

    /// Training forward: logits `[batch, time, vocab]` for ids `[batch, time]`, causal attention
    /// from position 0 within each sequence, portable ops.
    pub fn forward_batch(&self, c: &ModelConfig, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let x = self.model.embed_tokens.forward(ids.reshape([b * t]));
        let rope = RopeRows::batch(&c.rope, b, t, &device);
        let mut keys = BatchKeys::causal(b, t, &device);
        let ops = PortableOps;
        let y = self.forward_layers(x, &rope, &ops, &mut keys, &mut |_, _| {});
        let normed = self.model.norm.forward(y, &ops);
        self.head(normed, &ops).reshape([b, t, c.vocab_size])
    }

    /// Mean next-token cross-entropy over sequences `[batch, time + 1]`.
    pub fn loss(&self, c: &ModelConfig, seqs: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, t1] = seqs.dims();
        let t = t1 - 1;
        let inputs = seqs.clone().slice([0..b, 0..t]);
        let targets = seqs.slice([0..b, 1..t1]).reshape([b * t]);
        let logits = self.forward_batch(c, inputs).reshape([b * t, c.vocab_size]);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, targets)
    }

    /// Write `config.json` (classic Hugging Face form) and `model.safetensors` into `dir`, each
    /// atomically; transformers and [`crate::TargetModel::load`] read them unchanged.
    pub fn export(&self, c: &ModelConfig, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| confu_core::Error::io(dir, e))?;
        let tensors: Vec<NamedTensor> =
            named_values(self, "").into_iter().map(Into::into).collect();
        let meta = [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect();
        write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
        let json = serde_json::to_string_pretty(&c.to_hf_json()).expect("json");
        confu_core::write_atomic(&dir.join("config.json"), json.as_bytes())
    }
}
