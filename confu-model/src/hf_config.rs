//! A [`ModelConfig`] written back as a classic Hugging Face `config.json`, which transformers and
//! [`ModelConfig::from_json`] read unchanged (trained targets are exported with it).

use confu_core::RopeScaling;
use serde_json::Value;

use crate::config::{Architecture, ModelConfig};

impl ModelConfig {
    /// This configuration as a classic Hugging Face `config.json` (`rope_theta` +
    /// `rope_scaling`), which transformers and [`ModelConfig::from_json`] read back unchanged.
    pub fn to_hf_json(&self) -> Value {
        let (arch, model_type) = match self.architecture {
            Architecture::Llama => ("LlamaForCausalLM", "llama"),
            Architecture::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
        };
        let scaling = match self.rope.scaling {
            RopeScaling::None => Value::Null,
            RopeScaling::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => serde_json::json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        let mut v = serde_json::json!({
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope.theta,
            "rope_scaling": scaling,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": false,
            "torch_dtype": "float32",
            "use_cache": true,
        });
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = b.into();
        }
        if let Some(&e) = self.eos_token_ids.first() {
            v["eos_token_id"] = e.into();
        }
        v
    }
}
