//! # confu
//!
//! The facade that the CLI and downstream research code use: the [`Engine`] decode loop (a round
//! in named phases: prefill, propose, score, accept, update, emit), the [`Drafter`] trait that
//! vanilla, lookup and EAGLE-3 implement and research drafters plug into, the generation
//! configuration and its results (timings, stop reason), and `--tree auto` (the engine calibrates
//! its cost model and shares one policy with its proposers). Speculative modes (EAGLE-3,
//! ConFu), metrics and the evaluation harness join here as they are built.

pub mod auto_round;
pub mod bootstrap;
pub mod calibration;
pub mod check;
pub mod confu_drafter;
pub mod drafting;
pub mod engine;
pub mod eval;
pub mod eval_summary;
pub mod generation;
pub mod greedy_rule;
pub mod question_result;
pub mod reference;

pub use auto_round::SharedAutoTree;
pub use confu_drafter::{ConfuHead, ConfuProposer};
pub use drafting::{Drafter, Eagle3Proposer, NoDraft, Observation, Pass};
pub use engine::{DraftMode, Engine};
pub use generation::{Generation, GenerationConfig, RoundTrace, StopReason, Timings};

pub use confu_core as core;
pub use confu_model as model;
