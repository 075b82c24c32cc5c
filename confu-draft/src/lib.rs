//! # confu-draft
//!
//! Owns the drafting side of a speculative round (METHOD.md §1–2): the EAGLE-3 draft head loaded
//! from the official checkpoint layout unchanged ([`Eagle3Head`]), the draft vocabulary
//! ([`DraftVocab`]), the stateful drafter with its own KV cache ([`Eagle3Drafter`]), the EAGLE-2
//! dynamic tree builder ([`build_tree`]) and the chain-shaped prompt-lookup drafter
//! ([`PromptLookup`]). The ConFu future-token slot joins the head here.

pub mod drafter;
pub mod head;
pub mod lookup;
pub mod tree;
pub mod vocab;

pub use drafter::Eagle3Drafter;
pub use head::{feature_layers, DraftConfig, DraftOutput, Eagle3Head};
pub use lookup::PromptLookup;
pub use tree::{build_tree, DraftTree, FrontierNode, TreeSettings};
pub use vocab::DraftVocab;
