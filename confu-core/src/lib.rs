//! # confu-core
//!
//! The backend-agnostic vocabulary every other confu crate speaks:
//! - [`Ops`]: the model-level tensor operations (linear, RMSNorm, RoPE, masked GQA attention) with
//!   portable bodies that backend crates may override with their own kernels;
//! - [`KvCache`] and the dense preallocated [`DenseKvCache`] (append, keep-and-compact, truncate, and
//!   a reserved region for ConFu's soft prompt);
//! - [`Visibility`]: host-side attention masks (causal, tree, arbitrary ConFu rules);
//! - [`rope`]: rotary embeddings with explicit positions and llama3 scaling;
//! - [`DraftTree`]: the topology of a speculative tree (parents, depths, root-to-leaf paths);
//! - [`sampling`]: temperature / top-k / top-p with a seeded RNG, validated parameters;
//! - [`DrawnFrom`]: the distribution a drafted token was drawn from, for speculative sampling;
//! - [`Error`]: the one error type; nothing a user can get wrong panics;
//! - [`write_atomic`] and [`index_tensor`]: the one atomic file write and the one host-index helper.
//!
//! Nothing here names a concrete backend: components are generic over burn's `Backend`.

pub mod contemplate_visibility;
pub mod drawn;
pub mod error;
pub mod fs;
pub mod host;
pub mod index;
pub mod kv_cache;
pub mod ops;
pub mod rope;
pub mod sampling;
pub mod tree;
pub mod visibility;

pub use drawn::DrawnFrom;
pub use error::{Error, Result};
pub use fs::write_atomic;
pub use host::{host_rows, ToHost};
pub use index::{id_tensor, index_tensor};
pub use kv_cache::{DenseKvCache, KvCache};
pub use ops::{Ops, PortableOps, WarmThreads};
pub use rope::{RopeConfig, RopeScaling};
pub use sampling::{Sampler, SamplingParams};
pub use tree::DraftTree;
pub use visibility::Visibility;

/// burn, re-exported so downstream crates use exactly the pinned version.
pub use burn;
