//! Shared shapes for the training tests.

use confu_core::{RopeConfig, RopeScaling};
use confu_model::{Architecture, ModelConfig};

/// A tiny untied Llama: BOS 0, EOS 1, RoPE theta 10000, `head_dim = hidden / heads`.
pub fn tiny_llama(
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    max_positions: usize,
) -> ModelConfig {
    let head_dim = hidden / heads;
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: 1e-5,
        max_position_embeddings: max_positions,
        tie_word_embeddings: false,
        attention_bias: false,
        rope: RopeConfig {
            head_dim,
            theta: 10000.0,
            scaling: RopeScaling::None,
        },
        bos_token_id: Some(0),
        eos_token_ids: vec![1],
        declared_dtype: None,
    }
}
