//! # confu-verify
//!
//! Owns the target side of a speculative round (METHOD.md §3–4): the [`RowLayout`] that describes
//! one verification pass on the host (which rows are tree nodes and which extra rows, positions,
//! visibility, which rows return logits and features), [`score`] that executes it in one target
//! forward, greedy and lossless-sampling [`acceptance`], and compacting the target's KV cache to
//! the accepted path. ConFu's contemplate rows, soft prompt and choice of the future vector join
//! here as further layouts.

pub mod acceptance;
pub mod contemplate;
pub mod row_layout;
pub mod verify;

pub use acceptance::{accept, evaluate_posterior, greedy_accept, sample_accept, Acceptance};
pub use contemplate::{covered_nodes, future_source, Contemplator, PrefillFuture};
pub use row_layout::{RowKind, RowLayout};
pub use verify::{compact_to_path, score, verify_tree, Scores};
