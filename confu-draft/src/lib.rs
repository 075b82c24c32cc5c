//! # confu-draft
//!
//! Owns the drafting side of a speculative round (METHOD.md §1–2): the EAGLE-3 draft head as one
//! burn module used for decoding and training ([`Eagle3`]) and its decoding form loaded from the
//! official checkpoint layout unchanged ([`Eagle3Head`], [`export_official`]), the draft
//! vocabulary ([`DraftVocab`]), the stateful drafter with its own KV cache ([`Eagle3Drafter`]),
//! the EAGLE-2 dynamic tree builder ([`build_tree`]), drafts drawn from the head's distribution
//! when the target samples ([`DraftSampling`]) and the chain-shaped prompt-lookup drafter
//! ([`PromptLookup`]), and `--tree auto` ([`AutoTree`]: the tree chosen each round from a
//! [`CostModel`] of the device and [`AcceptanceStats`] gathered online). The ConFu future-token
//! slot joins the head here.

pub mod acceptance_prior;
pub mod acceptance_stats;
pub mod auto_tree;
pub mod config;
pub mod cost_model;
pub mod draft_sampling;
pub mod drafter;
pub mod export;
pub mod head;
pub mod lookup;
pub mod tree;
pub mod vocab;

pub use acceptance_prior::AcceptancePrior;
pub use acceptance_stats::AcceptanceStats;
pub use auto_tree::{AutoChoice, AutoTree, AutoTreeOptions, CatchUp, Plan};
pub use config::DraftConfig;
pub use cost_model::CostModel;
pub use draft_sampling::{DraftDraws, DraftSampling};
pub use drafter::Eagle3Drafter;
pub use export::export_official;
pub use head::{DraftOutput, Eagle3, Eagle3Head, Eagle3Layer};
pub use lookup::{LookupMatch, PromptLookup};
pub use tree::{
    build_picked_tree, build_scored_tree, build_tree, DraftTree, FrontierNode, TreeSettings,
};
pub use vocab::DraftVocab;
