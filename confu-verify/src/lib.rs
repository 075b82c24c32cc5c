//! # confu-verify
//!
//! Owns the target side of a speculative round (METHOD.md §3–4): running the target once over a
//! draft tree with the tree mask ([`verify_tree`]), greedy and lossless-sampling acceptance
//! ([`acceptance`]), and compacting the target's KV cache to the accepted path. ConFu's contemplate
//! rows, soft prompt and choice of the future vector join here.

pub mod acceptance;
pub mod verify;

pub use acceptance::{evaluate_posterior, greedy_accept, sample_accept, Acceptance};
pub use verify::{compact_to_path, verify_tree, TreeVerification};
