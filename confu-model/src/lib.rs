//! # confu-model
//!
//! The target transformer and the building blocks every model in confu is made of.
//!
//! - **Blocks, written once as burn modules** ([`Linear`], [`RmsNorm`], [`Embedding`],
//!   [`Attention`], [`Mlp`], [`DecoderLayer`], the [`Llama`] stack): the same module type runs on
//!   a plain backend for decoding and on `Autodiff<_>` for training (`valid()` turns a trained
//!   module into its inference form; `no_grad()` freezes it). What a layer attends over is an
//!   [`AttentionKeys`] strategy — the KV cache with a visibility mask when decoding, whole
//!   sequences when training — so the layer body exists once. Kernel overrides (`Ops`) apply
//!   when decoding; training uses the portable bodies.
//! - **Names, written once** ([`naming`]): a module's field names are its checkpoint names, and
//!   loading, seeded initialisation, benchmark weights and safetensors export all walk them.
//!   This follows candle's `vb.pp("self_attn")`, with burn's module walk doing the prefixing.
//! - **Checkpoints**: Hugging Face `config.json` (classic and `rope_parameters` forms) and
//!   safetensors (single or sharded; f32, bf16, f16 on disk; f32 in memory, except that linear
//!   weights stored bf16/f16 stay so where the backend's `Ops::linear` reads them — the CPU —
//!   see [`half_weights`]), Llama-3.x and Qwen3
//!   with small switches, `tokenizer.json` via `tokenizers`.
//! - **[`TargetModel::forward`]**, shaped for speculative decoding and ConFu: ids or raw
//!   embeddings in, explicit positions, a visibility mask over the KV cache, logits only for the
//!   rows asked for, hidden-state taps for the draft's features ([`feature_layers`]).

pub mod attention;
pub mod config;
pub mod embedding;
pub mod features;
pub mod half_weights;
pub mod hf_config;
pub mod keys;
pub mod layer;
pub mod linear;
pub mod llama;
pub mod mlp;
pub mod model;
pub mod naming;
pub mod norm;
pub mod param;
pub mod rope_rows;
pub mod safetensors_file;
pub mod tokenizer;
pub mod weights;

pub use attention::{Attention, AttentionShape};
pub use config::{Architecture, ModelConfig};
pub use embedding::Embedding;
pub use features::{feature_layers, feature_taps};
pub use half_weights::{keep_half_precision, param_bytes};
pub use keys::{AttentionKeys, BatchKeys, CachedKeys, Qkv};
pub use layer::DecoderLayer;
pub use linear::Linear;
pub use llama::{Llama, LlamaBody};
pub use mlp::Mlp;
pub use model::{ForwardOutput, ForwardRequest, LogitRows, ModelInput, Tap, TargetModel};
pub use naming::{fill, named_values, NamedValues, TensorValues};
pub use norm::RmsNorm;
pub use rope_rows::RopeRows;
pub use safetensors_file::{write_safetensors, NamedTensor};
pub use tokenizer::{TextStream, Tokenizer};
pub use weights::WeightFiles;
