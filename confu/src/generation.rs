//! Generation settings and results shared by every decoding mode.

use confu_core::{Error, Result, SamplingParams};
use serde::{Deserialize, Serialize};

/// What to generate and how to pick tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens (the model's position limit may stop earlier).
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Stop after the model emits one of its end-of-sequence ids (the id is kept in the output).
    pub stop_at_eos: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: SamplingParams::default(),
            stop_at_eos: true,
        }
    }
}

impl GenerationConfig {
    /// Reject impossible settings, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(Error::invalid("max-new-tokens", 0, "must be >= 1"));
        }
        self.sampling.validate()
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxNewTokens,
    Eos,
    PositionLimit,
}

/// Wall-clock time spent, split into the prompt pass and the token-by-token phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tokens: usize,
    pub decode_tokens: usize,
}

impl Timings {
    /// Prompt tokens processed per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_s)
    }

    /// Generated tokens per second after the first (the first comes out of the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_s)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// The outcome of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub stop_reason: StopReason,
    pub timings: Timings,
    /// One entry per target verification after the prefill.
    pub rounds: Vec<RoundTrace>,
}

impl Generation {
    /// τ: tokens added per target forward in the decode rounds, bonus included (vanilla = 1.00).
    pub fn tau(&self) -> f64 {
        if self.rounds.is_empty() {
            return 1.0;
        }
        let added: usize = self.rounds.iter().map(|r| r.accepted_drafts + 1).sum();
        added as f64 / self.rounds.len() as f64
    }
}

/// What one speculative round did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundTrace {
    /// Nodes verified, root included.
    pub tree_size: usize,
    /// ConFu: `[con]` rows in the verification pass (0 otherwise).
    #[serde(default)]
    pub contemplate_rows: usize,
    /// ConFu: the node whose `[con]` row gave the next round's future vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub future_node: Option<usize>,
    /// Drafted tokens accepted (root and bonus excluded).
    pub accepted_drafts: usize,
    /// Tokens this round added to the output: the root and the accepted drafts.
    pub tokens: Vec<u32>,
    pub draft_s: f64,
    pub verify_s: f64,
    pub update_s: f64,
    /// The part of `update_s` the drafter spent on the accepted positions (an EAGLE-3 head's
    /// forward over them, which also gives the next tree's first level; ConFu's routing).
    #[serde(default)]
    pub head_s: f64,
    /// `--tree auto`: the tree it chose and what it predicted for the round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<confu_draft::AutoChoice>,
}
