//! Per-category and overall aggregates of an evaluation: τ, tokens per second, speedup, greedy
//! equality, the cost of a round against a vanilla step, and `--tree auto`'s predicted against
//! achieved speed.

use serde::{Deserialize, Serialize};

use crate::eval::QuestionResult;

/// Aggregates over a set of questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub questions: usize,
    pub tau: f64,
    pub vanilla_tokens_per_s: f64,
    pub spec_tokens_per_s: f64,
    pub speedup: f64,
    /// The speedup's 95 % paired bootstrap interval over the questions (timing noise and prompt
    /// mix together): an interval that contains 1 is no measurable difference from vanilla.
    #[serde(default)]
    pub speedup_low: f64,
    #[serde(default)]
    pub speedup_high: f64,
    /// `None` when sampling (outputs are not expected to be equal).
    pub all_equal: Option<bool>,
    /// The cost of one speculative round, split in its parts, against one vanilla step: the
    /// break-even τ is `round / vanilla step`.
    #[serde(default)]
    pub round_ms: RoundCost,
    #[serde(default)]
    pub vanilla_step_ms: f64,
    /// `--tree auto` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoSummary>,
}

/// What `--tree auto` predicted against what it achieved, over the rounds it planned (decode
/// rounds: the prefill is not part of either).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoSummary {
    /// Predicted tokens over predicted seconds.
    pub predicted_tokens_per_s: f64,
    /// Tokens over measured seconds (draft + verify + update) of the same rounds.
    pub achieved_tokens_per_s: f64,
    /// Share of rounds that drafted nothing.
    pub plain_share: f64,
    /// Share of rounds that verified a prompt-lookup chain (the rest verified head trees).
    #[serde(default)]
    pub lookup_share: f64,
}

/// Mean milliseconds per round spent drafting, verifying and updating (KV compaction and the
/// drafter's feature update, which is `head` of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundCost {
    pub draft: f64,
    pub verify: f64,
    pub update: f64,
    #[serde(default)]
    pub head: f64,
}

impl RoundCost {
    pub fn total(&self) -> f64 {
        self.draft + self.verify + self.update
    }
}

pub(crate) fn summarize(results: &[&QuestionResult], greedy: bool) -> Summary {
    let rounds: usize = results.iter().map(|r| r.rounds).sum();
    let added: usize = results
        .iter()
        .map(|r| r.accepted.iter().map(|a| a + 1).sum::<usize>())
        .sum();
    let (vt, vs): (usize, f64) = results
        .iter()
        .fold((0, 0.0), |a, r| (a.0 + r.vanilla_tokens, a.1 + r.vanilla_s));
    let (st, ss): (usize, f64) = results
        .iter()
        .fold((0, 0.0), |a, r| (a.0 + r.spec_tokens, a.1 + r.spec_s));
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let (v, s) = (rate(vt, vs), rate(st, ss));
    let per_round = |f: fn(&QuestionResult) -> f64| {
        1e3 * results.iter().map(|r| f(r)).sum::<f64>() / rounds.max(1) as f64
    };
    let (_, speedup_low, speedup_high) = crate::bootstrap::speedup_interval(results);
    let (vd, vn) = results.iter().fold((0.0, 0), |a, r| {
        (a.0 + r.vanilla_decode_s, a.1 + r.vanilla_decode_tokens)
    });
    Summary {
        questions: results.len(),
        tau: if rounds > 0 {
            added as f64 / rounds as f64
        } else {
            1.0
        },
        vanilla_tokens_per_s: v,
        spec_tokens_per_s: s,
        speedup: if v > 0.0 { s / v } else { 0.0 },
        speedup_low,
        speedup_high,
        all_equal: greedy.then(|| results.iter().all(|r| r.equal_to_vanilla)),
        round_ms: RoundCost {
            draft: per_round(|r| r.draft_s),
            verify: per_round(|r| r.verify_s),
            update: per_round(|r| r.update_s),
            head: per_round(|r| r.head_s),
        },
        vanilla_step_ms: 1e3 * vd / vn.max(1) as f64,
        auto: auto_summary(results),
    }
}

fn auto_summary(results: &[&QuestionResult]) -> Option<AutoSummary> {
    let planned: usize = results.iter().map(|r| r.auto_rounds).sum();
    if planned == 0 {
        return None;
    }
    let sum = |f: fn(&QuestionResult) -> f64| results.iter().map(|r| f(r)).sum::<f64>();
    // Auto plans every decode round, so the rounds' tokens are the accepted drafts plus roots.
    let tokens = sum(|r| r.accepted.iter().map(|a| (a + 1) as f64).sum());
    let spent = sum(|r| r.draft_s + r.verify_s + r.update_s);
    let per = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
    Some(AutoSummary {
        predicted_tokens_per_s: per(sum(|r| r.predicted_tokens), sum(|r| r.predicted_s)),
        achieved_tokens_per_s: per(tokens, spent),
        plain_share: results.iter().map(|r| r.plain_rounds).sum::<usize>() as f64 / planned as f64,
        lookup_share: results.iter().map(|r| r.lookup_rounds).sum::<usize>() as f64
            / planned as f64,
    })
}
