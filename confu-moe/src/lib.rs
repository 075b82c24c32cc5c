//! # confu-moe
//!
//! Owns the learned parts of ConFu and their options, below both the drafting side
//! (`confu-draft`) and the target side (`confu-verify`):
//! - [`ConfuOptions`]: `confu.json`, every `[choice]` of METHOD.md §4–5 as a named option;
//! - [`Moe`]: the router of dynamic contemplate tokens (METHOD.md §5): linear router, softmax,
//!   top-K, (renormalised) weights, the weighted sum of expert embeddings; `n_expert = 1` is the
//!   static variant. Two instances: contemplate (target side) and future (draft side);
//! - [`ConfuParams`]: the soft prompt and both MoEs as one burn module (`confu.safetensors`),
//!   loadable for decoding and trainable on `Autodiff` like every model in confu;
//! - [`SlotGain`]: the optional learned gain on the future slot's key and value (ours).

pub mod options;
pub mod params;
pub mod router;
pub mod slot_gain;

pub use options::{ConPosition, ConfuOptions, ContemplateNodes, FutureLayers, Routing};
pub use params::{ConfuDims, ConfuParams};
pub use router::{Moe, RouteDecision};
pub use slot_gain::SlotGain;
