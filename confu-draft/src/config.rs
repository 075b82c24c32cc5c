//! The shape of an EAGLE-3 draft head, read from (and written to) the official `config.json`.

use std::path::Path;

use confu_core::{Result, RopeConfig};
use confu_model::{AttentionShape, ModelConfig};

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

impl DraftConfig {
    /// The official `config.json` for this shape (a one-layer Llama config with
    /// `draft_vocab_size`), as the official EAGLE code and [`DraftConfig::from_file`] read it.
    pub fn to_official_json(&self, bos: Option<u32>, eos: Option<u32>) -> serde_json::Value {
        let s = self.shape;
        let mut config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "num_hidden_layers": 1,
            "vocab_size": self.vocab_size,
            "draft_vocab_size": self.draft_vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": false,
            "torch_dtype": "float32",
            "pad_token_id": 0,
        });
        if self.target_hidden_size != self.hidden_size {
            config["target_hidden_size"] = self.target_hidden_size.into();
        }
        if let Some(b) = bos {
            config["bos_token_id"] = b.into();
        }
        if let Some(e) = eos {
            config["eos_token_id"] = e.into();
        }
        if self.rope.theta != 10000.0 {
            config["rope_theta"] = self.rope.theta.into();
        }
        config
    }
}
