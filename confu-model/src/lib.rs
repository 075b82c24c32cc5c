//! # confu-model
//!
//! The target transformer: Hugging Face `config.json` (classic and `rope_parameters` forms),
//! safetensors weights (single file or sharded; f32, bf16, f16 on disk, f32 in memory), Llama-3.x
//! and Qwen3 in one model file with small switches, and `tokenizer.json` via `tokenizers`.
//!
//! Its single [`TargetModel::forward`] is shaped for speculative decoding and ConFu: ids or raw
//! embeddings in, explicit positions, a visibility mask over the KV cache, logits only for the
//! rows asked for, and hidden-state taps for the draft's features.

pub mod config;
pub mod layer;
pub mod model;
pub mod tokenizer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use layer::{Attention, AttentionShape, LayerContext, Mlp};
pub use model::{
    rope_tables, ForwardOutput, ForwardRequest, LogitRows, ModelInput, Tap, TargetModel,
};
pub use tokenizer::{TextStream, Tokenizer};
pub use weights::{WeightFiles, WeightSource};
