//! One question's measurements in an evaluation: vanilla's and a drafter's tokens and seconds,
//! the drafter's rounds and where their time went, and `--tree auto`'s predictions; repeats of
//! the question are summed into one.

use serde::{Deserialize, Serialize};

use crate::eval::Question;
use crate::Generation;

/// Per-question measurements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub question_id: serde_json::Value,
    pub category: String,
    pub vanilla_tokens: usize,
    pub vanilla_s: f64,
    pub spec_tokens: usize,
    pub spec_s: f64,
    pub rounds: usize,
    /// Accepted drafts per round (for the histogram of acceptance lengths).
    pub accepted: Vec<usize>,
    pub equal_to_vanilla: bool,
    /// Where the speculative decode phase spent its time, summed over rounds.
    #[serde(default)]
    pub draft_s: f64,
    #[serde(default)]
    pub verify_s: f64,
    #[serde(default)]
    pub update_s: f64,
    /// The drafter's part of `update_s`.
    #[serde(default)]
    pub head_s: f64,
    /// Vanilla's decode phase: time and tokens after the first.
    #[serde(default)]
    pub vanilla_decode_s: f64,
    #[serde(default)]
    pub vanilla_decode_tokens: usize,
    /// `--tree auto`: rounds it planned, those that drafted nothing, those that verified a
    /// prompt-lookup chain, and its predictions summed over them (tokens, seconds).
    #[serde(default)]
    pub auto_rounds: usize,
    #[serde(default)]
    pub plain_rounds: usize,
    #[serde(default)]
    pub lookup_rounds: usize,
    #[serde(default)]
    pub predicted_tokens: f64,
    #[serde(default)]
    pub predicted_s: f64,
}

impl QuestionResult {
    /// Add another run of the same question (a repeat): tokens, seconds, rounds and predictions
    /// are summed, acceptance lengths appended, and the outputs are equal only if every run's
    /// were.
    pub fn absorb(&mut self, other: QuestionResult) {
        // Destructured whole, so that a new field cannot be left out of the sum unnoticed.
        let QuestionResult {
            question_id: _,
            category: _,
            vanilla_tokens,
            vanilla_s,
            spec_tokens,
            spec_s,
            rounds,
            accepted,
            equal_to_vanilla,
            draft_s,
            verify_s,
            update_s,
            head_s,
            vanilla_decode_s,
            vanilla_decode_tokens,
            auto_rounds,
            plain_rounds,
            lookup_rounds,
            predicted_tokens,
            predicted_s,
        } = other;
        self.vanilla_tokens += vanilla_tokens;
        self.vanilla_s += vanilla_s;
        self.spec_tokens += spec_tokens;
        self.spec_s += spec_s;
        self.rounds += rounds;
        self.accepted.extend(accepted);
        self.equal_to_vanilla &= equal_to_vanilla;
        self.draft_s += draft_s;
        self.verify_s += verify_s;
        self.update_s += update_s;
        self.head_s += head_s;
        self.vanilla_decode_s += vanilla_decode_s;
        self.vanilla_decode_tokens += vanilla_decode_tokens;
        self.auto_rounds += auto_rounds;
        self.plain_rounds += plain_rounds;
        self.lookup_rounds += lookup_rounds;
        self.predicted_tokens += predicted_tokens;
        self.predicted_s += predicted_s;
    }
}

/// One run of question `q`: vanilla's generation `v` against a drafter's `s`.
pub(crate) fn measure(q: &Question, v: &Generation, s: &Generation) -> QuestionResult {
    let auto: Vec<_> = s.rounds.iter().filter_map(|r| r.auto).collect();
    QuestionResult {
        question_id: q.question_id.clone(),
        category: q.category.clone(),
        vanilla_tokens: v.generated_ids.len(),
        vanilla_s: v.timings.prefill_s + v.timings.decode_s,
        spec_tokens: s.generated_ids.len(),
        spec_s: s.timings.prefill_s + s.timings.decode_s,
        rounds: s.rounds.len(),
        accepted: s.rounds.iter().map(|r| r.accepted_drafts).collect(),
        equal_to_vanilla: v.generated_ids == s.generated_ids,
        draft_s: s.rounds.iter().map(|r| r.draft_s).sum(),
        verify_s: s.rounds.iter().map(|r| r.verify_s).sum(),
        update_s: s.rounds.iter().map(|r| r.update_s).sum(),
        head_s: s.rounds.iter().map(|r| r.head_s).sum(),
        vanilla_decode_s: v.timings.decode_s,
        vanilla_decode_tokens: v.timings.decode_tokens,
        auto_rounds: auto.len(),
        plain_rounds: auto.iter().filter(|a| a.nodes == 1).count(),
        lookup_rounds: auto.iter().filter(|a| a.lookup_ngram > 0).count(),
        predicted_tokens: auto.iter().map(|a| a.predicted_tokens).sum(),
        predicted_s: auto.iter().map(|a| a.predicted_s).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_summary::summarize;

    fn run(tokens: usize, vanilla_s: f64, spec_s: f64, accepted: Vec<usize>) -> QuestionResult {
        QuestionResult {
            category: "c".into(),
            vanilla_tokens: tokens,
            vanilla_s,
            spec_tokens: tokens,
            spec_s,
            rounds: accepted.len(),
            accepted,
            equal_to_vanilla: true,
            verify_s: spec_s / 2.0,
            auto_rounds: 2,
            plain_rounds: 1,
            ..Default::default()
        }
    }

    #[test]
    fn repeats_sum_into_one_result_that_summarises_as_the_runs_together() {
        let (a, b) = (
            run(8, 1.0, 0.5, vec![3, 3]),
            run(8, 3.0, 2.5, vec![1, 1, 2]),
        );
        let mut m = a.clone();
        m.absorb(b.clone());
        assert_eq!((m.vanilla_tokens, m.spec_tokens, m.rounds), (16, 16, 5));
        assert_eq!(m.accepted, vec![3, 3, 1, 1, 2]);
        assert_eq!((m.vanilla_s, m.spec_s, m.verify_s), (4.0, 3.0, 1.5));
        assert_eq!((m.auto_rounds, m.plain_rounds), (4, 2));
        // Speedup of the sum (16/3 over 16/4), not the mean of the runs' speedups (2 and 1.2).
        let s = summarize(&[&m], true);
        assert!((s.speedup - 4.0 / 3.0).abs() < 1e-12, "{}", s.speedup);
        // τ counts every round's root: (4 + 4 + 2 + 2 + 3) / 5.
        assert!((s.tau - 3.0).abs() < 1e-12, "{}", s.tau);
        assert_eq!(s.all_equal, Some(true));
        // One run that differs from vanilla makes the question differ.
        let mut c = b;
        c.equal_to_vanilla = false;
        m.absorb(c);
        assert_eq!(summarize(&[&m], true).all_equal, Some(false));
    }
}
