//! The EAGLE-3 draft head, loaded from the official checkpoint layout unchanged
//! (`config.json` + `model.safetensors` with `fc`, `midlayer.*`, `norm`, `lm_head`, `d2t`, `t2d`).
//!
//! ```text
//! g   = fc(h)            when h is the target's 3-layer taps (3d wide); h itself when d wide
//! x   = [input_layernorm(emb(token)) ; hidden_norm(g)]                     (2d, embedding first)
//! h1  = g + o_proj(attn(rope(q_proj x), rope(k_proj x), v_proj x))         (residual from g)
//! out = h1 + mlp(post_attention_layernorm(h1));   logits = lm_head(norm(out))   (draft vocab)
//! ```
//! The token embedding is the target's table: EAGLE-3 training freezes it and the official
//! checkpoint does not store it.

use std::path::Path;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{kv_cache::Region, DenseKvCache, Error, Ops, Result, RopeConfig, Visibility};
use confu_model::weights::{FileSource, RandomSource, WeightSource};
use confu_model::{
    rope_tables, Attention, AttentionShape, LayerContext, Mlp, ModelConfig, TargetModel,
    WeightFiles,
};

use crate::vocab::DraftVocab;

/// Shape of a draft head, from the official `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct DraftConfig {
    pub hidden_size: usize,
    /// Width of one target feature; `fc` takes three of them.
    pub target_hidden_size: usize,
    pub intermediate_size: usize,
    pub shape: AttentionShape,
    pub rms_norm_eps: f64,
    pub vocab_size: usize,
    pub draft_vocab_size: usize,
    pub rope: RopeConfig,
}

impl DraftConfig {
    /// Read the official draft `config.json` (a Llama config with `draft_vocab_size`; without
    /// `rope_theta` the official code uses 10000, which the shared parser also defaults to).
    pub fn from_file(path: &Path) -> Result<Self> {
        let obj = confu_model::config::read_json_object(path)?;
        let base = ModelConfig::from_json(&obj, path)?;
        let field = |k: &str| obj.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        Ok(Self {
            hidden_size: base.hidden_size,
            target_hidden_size: field("target_hidden_size").unwrap_or(base.hidden_size),
            intermediate_size: base.intermediate_size,
            shape: AttentionShape::of(&base),
            rms_norm_eps: base.rms_norm_eps,
            vocab_size: base.vocab_size,
            draft_vocab_size: field("draft_vocab_size").unwrap_or(base.vocab_size),
            rope: base.rope,
        })
    }
}

impl DraftConfig {
    /// The usual EAGLE-3 shape for a target: one Llama layer of the target's width, its head
    /// layout, RoPE theta 10000, and a draft vocabulary of at most 32000 entries.
    pub fn for_target(t: &ModelConfig) -> Self {
        let shape = AttentionShape::of(t);
        Self {
            hidden_size: t.hidden_size,
            target_hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            shape,
            rms_norm_eps: t.rms_norm_eps,
            vocab_size: t.vocab_size,
            draft_vocab_size: t.vocab_size.min(32000),
            rope: RopeConfig {
                head_dim: shape.head_dim,
                theta: 10000.0,
                scaling: confu_core::RopeScaling::None,
            },
        }
    }
}

/// The draft head's weights.
#[derive(Debug, Clone)]
pub struct Eagle3Head<B: Backend> {
    pub config: DraftConfig,
    pub fc: Tensor<B, 2>,
    pub hidden_norm: Tensor<B, 1>,
    pub input_norm: Tensor<B, 1>,
    pub attn: Attention<B>,
    pub post_attention_norm: Tensor<B, 1>,
    pub mlp: Mlp<B>,
    pub norm: Tensor<B, 1>,
    pub lm_head: Tensor<B, 2>,
    pub vocab: DraftVocab,
    /// The target's token embedding `[vocab, d]` (shared, not copied).
    pub embed_tokens: Tensor<B, 2>,
    inv_freq: Vec<f32>,
}

/// One draft forward's outputs.
#[derive(Debug)]
pub struct DraftOutput<B: Backend> {
    /// `[rows, d]`, before the final norm: the feature deeper draft steps feed back.
    pub hidden: Tensor<B, 2>,
    /// `[rows, draft_vocab]`.
    pub logits: Tensor<B, 2>,
}

impl<B: Backend> Eagle3Head<B> {
    /// Load a draft folder for `target`, checking that the two fit together.
    pub fn load(dir: &Path, target: &TargetModel<B>) -> Result<Self> {
        let config = DraftConfig::from_file(&dir.join("config.json"))?;
        let t = target.config();
        let config_path = dir.join("config.json");
        let mismatch = |field: &str, msg: String| Error::Config {
            path: config_path.clone(),
            field: field.into(),
            msg,
        };
        if config.target_hidden_size != t.hidden_size {
            return Err(mismatch(
                "hidden_size / target_hidden_size",
                format!(
                    "the draft expects target features of width {}, but the target's hidden size is {}",
                    config.target_hidden_size, t.hidden_size
                ),
            ));
        }
        if config.vocab_size != t.vocab_size {
            return Err(mismatch(
                "vocab_size",
                format!(
                    "{} does not match the target's vocabulary of {}",
                    config.vocab_size, t.vocab_size
                ),
            ));
        }
        if config.hidden_size != t.hidden_size {
            return Err(mismatch(
                "hidden_size",
                format!(
                    "{} differs from the target's {}: the draft shares the target's embedding table",
                    config.hidden_size, t.hidden_size
                ),
            ));
        }
        let files = WeightFiles::open(dir)?;
        let d2t = files.read_i64("d2t", &[config.draft_vocab_size])?;
        let vocab =
            DraftVocab::from_offsets(&d2t, config.vocab_size).map_err(|msg| Error::Tensor {
                path: files.path_of("d2t").to_path_buf(),
                name: "d2t".into(),
                msg,
            })?;
        let mut src = FileSource::<B> {
            files: &files,
            device: target.device().clone(),
        };
        Self::from_source(config, vocab, &mut src, target)
    }

    /// A head of the given shape with seeded random weights and the identity draft vocabulary
    /// (for benchmarks).
    pub fn random(config: DraftConfig, seed: u64, target: &TargetModel<B>) -> Result<Self> {
        let vocab = DraftVocab::identity(config.draft_vocab_size);
        let mut src = RandomSource::<B>::new(seed, target.device().clone());
        Self::from_source(config, vocab, &mut src, target)
    }

    /// Build from any weight source under the official tensor names.
    pub fn from_source(
        config: DraftConfig,
        vocab: DraftVocab,
        src: &mut dyn WeightSource<B>,
        target: &TargetModel<B>,
    ) -> Result<Self> {
        let (d, i, vd) = (
            config.hidden_size,
            config.intermediate_size,
            config.draft_vocab_size,
        );
        let s = config.shape;
        let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let attn = Attention {
            q_proj: src.matrix("midlayer.self_attn.q_proj.weight", [q, 2 * d])?,
            k_proj: src.matrix("midlayer.self_attn.k_proj.weight", [kv, 2 * d])?,
            v_proj: src.matrix("midlayer.self_attn.v_proj.weight", [kv, 2 * d])?,
            o_proj: src.matrix("midlayer.self_attn.o_proj.weight", [d, q])?,
            q_bias: None,
            k_bias: None,
            v_bias: None,
            q_norm: None,
            k_norm: None,
        };
        let embed_tokens = if src.contains("embed_tokens.weight") {
            src.matrix("embed_tokens.weight", [config.vocab_size, d])?
        } else {
            target.embed_tokens().clone()
        };
        let inv_freq = config.rope.inv_freq();
        Ok(Self {
            fc: src.matrix("fc.weight", [d, 3 * config.target_hidden_size])?,
            hidden_norm: src.vector("midlayer.hidden_norm.weight", d)?,
            input_norm: src.vector("midlayer.input_layernorm.weight", d)?,
            attn,
            post_attention_norm: src.vector("midlayer.post_attention_layernorm.weight", d)?,
            mlp: Mlp {
                gate_proj: src.matrix("midlayer.mlp.gate_proj.weight", [i, d])?,
                up_proj: src.matrix("midlayer.mlp.up_proj.weight", [i, d])?,
                down_proj: src.matrix("midlayer.mlp.down_proj.weight", [d, i])?,
            },
            norm: src.vector("norm.weight", d)?,
            lm_head: src.matrix("lm_head.weight", [vd, d])?,
            vocab,
            embed_tokens,
            inv_freq,
            config,
        })
    }

    /// A one-layer cache for this head.
    pub fn new_cache(&self, capacity: usize) -> DenseKvCache<B> {
        let s = self.config.shape;
        DenseKvCache::new(1, s.kv_heads, s.head_dim, 0, capacity, &self.fc.device())
    }

    /// `fc` applied to target taps `[rows, 3 * target_hidden]`.
    pub fn fuse(&self, ops: &dyn Ops<B>, taps: Tensor<B, 2>) -> Tensor<B, 2> {
        ops.linear(taps, &self.fc)
    }

    /// Run the head on `rows` (feature, next token) pairs, appending their K/V to `cache`.
    /// `hidden` is either target taps (`3 * target_hidden` wide, fused by `fc`) or the head's own
    /// output states (`hidden` wide).
    pub fn forward(
        &self,
        ops: &dyn Ops<B>,
        cache: &mut DenseKvCache<B>,
        hidden: Tensor<B, 2>,
        tokens: &[u32],
        positions: &[usize],
        visibility: &Visibility,
    ) -> Result<DraftOutput<B>> {
        let c = &self.config;
        let [rows, width] = hidden.dims();
        if rows != tokens.len() || rows != positions.len() || visibility.rows() != rows {
            return Err(Error::shape(
                "draft forward",
                format!(
                    "{rows} feature rows, {} tokens, {} positions, {} mask rows",
                    tokens.len(),
                    positions.len(),
                    visibility.rows()
                ),
            ));
        }
        if visibility.cols() != cache.key_slots_after(rows) {
            return Err(Error::shape(
                "draft visibility",
                format!(
                    "{} columns for {} key slots",
                    visibility.cols(),
                    cache.key_slots_after(rows)
                ),
            ));
        }
        cache.check_room(Region::Main, rows)?;
        let g = if width == 3 * c.target_hidden_size {
            self.fuse(ops, hidden)
        } else if width == c.hidden_size {
            hidden
        } else {
            return Err(Error::shape(
                "draft features",
                format!(
                    "width {width}; expected {} (target taps) or {} (draft states)",
                    3 * c.target_hidden_size,
                    c.hidden_size
                ),
            ));
        };
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::invalid(
                "draft input token",
                bad,
                format!("vocabulary has {}", c.vocab_size),
            ));
        }
        let idx: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let device = g.device();
        let idx = Tensor::<B, 1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(idx, [rows]),
            &device,
        );
        let e = self.embed_tokens.clone().select(0, idx);
        let eps = c.rms_norm_eps;
        let x = Tensor::cat(
            vec![
                ops.rms_norm2(e, &self.input_norm, eps),
                ops.rms_norm2(g.clone(), &self.hidden_norm, eps),
            ],
            1,
        );
        let (cos, sin) = rope_tables::<B>(&c.rope, &self.inv_freq, positions, &device);
        let mask = (!visibility.is_all_visible()).then(|| visibility.to_hidden_mask::<B>(&device));
        let ctx = LayerContext {
            ops,
            cos: &cos,
            sin: &sin,
            hidden_mask: mask.as_ref(),
            region: Region::Main,
        };
        let h1 = g + self.attn.forward(x, &c.shape, &ctx, cache, 0);
        cache.commit(Region::Main, rows);
        let out = h1.clone()
            + self
                .mlp
                .forward(ops.rms_norm2(h1, &self.post_attention_norm, eps), ops);
        let logits = ops.linear(ops.rms_norm2(out.clone(), &self.norm, eps), &self.lm_head);
        Ok(DraftOutput {
            hidden: out,
            logits,
        })
    }
}

/// Target layers whose inputs form EAGLE-3's features: `2`, `L/2`, `L-3` (0-based, in that order,
/// duplicates kept, clamped to the model for very shallow targets).
pub fn feature_layers(num_layers: usize) -> [usize; 3] {
    let clamp = |i: usize| i.min(num_layers.saturating_sub(1));
    [
        clamp(2),
        clamp(num_layers / 2),
        clamp(num_layers.saturating_sub(3)),
    ]
}
