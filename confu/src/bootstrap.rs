//! How sure a τ comparison is: the ratio of two drafters' τ on the same prompts, with a 95 %
//! percentile bootstrap interval over prompts (paired: each resample draws the same prompts for
//! both drafters, so prompt difficulty cancels).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::eval::{DrafterReport, EvalReport, QuestionResult};

/// τ(variant) / τ(reference) with its 95 % interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TauRatio {
    pub variant: String,
    pub reference: String,
    /// A category, or `overall`.
    pub category: String,
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    pub prompts: usize,
}

/// Tokens added (accepted drafts + 1 per round) and rounds of one prompt.
fn counts(r: &QuestionResult) -> (f64, f64) {
    let added: usize = r.accepted.iter().map(|a| a + 1).sum();
    (added as f64, r.rounds as f64)
}

/// τ over prompts `idx` of both drafters' results, as a ratio.
fn ratio_of(variant: &[(f64, f64)], reference: &[(f64, f64)], idx: &[usize]) -> f64 {
    let sum = |v: &[(f64, f64)]| {
        idx.iter()
            .fold((0.0, 0.0), |a, &i| (a.0 + v[i].0, a.1 + v[i].1))
    };
    let (va, vr) = sum(variant);
    let (ra, rr) = sum(reference);
    let tau = |a: f64, r: f64| if r > 0.0 { a / r } else { 1.0 };
    tau(va, vr) / tau(ra, rr)
}

/// The paired bootstrap of τ(variant) / τ(reference) over prompts (the same prompts, in the
/// same order, in both slices) with `resamples` draws from `seed`.
pub fn tau_ratio(
    variant: &[&QuestionResult],
    reference: &[&QuestionResult],
    resamples: usize,
    seed: u64,
) -> (f64, f64, f64) {
    let (v, r): (Vec<_>, Vec<_>) = (
        variant.iter().map(|q| counts(q)).collect(),
        reference.iter().map(|q| counts(q)).collect(),
    );
    let n = v.len().min(r.len());
    let all: Vec<usize> = (0..n).collect();
    let point = ratio_of(&v, &r, &all);
    if n == 0 || resamples == 0 {
        return (point, point, point);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            ratio_of(&v, &r, &idx)
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * resamples as f64) as usize).min(resamples - 1)];
    (point, at(0.025), at(0.975))
}

/// Bootstrap resamples behind every interval.
const RESAMPLES: usize = 2000;

/// τ of every drafter after the first relative to the first, per category and overall.
pub fn ratios_to_first(drafters: &[DrafterReport]) -> Vec<TauRatio> {
    let Some((first, rest)) = drafters.split_first() else {
        return Vec::new();
    };
    let base = &first.report;
    let cats: Vec<String> = base
        .per_category
        .keys()
        .cloned()
        .chain(["overall".to_string()])
        .collect();
    let mut out = Vec::new();
    for d in rest {
        for c in &cats {
            let pick = |r: &'_ EvalReport| -> Vec<QuestionResult> {
                r.results
                    .iter()
                    .filter(|q| c == "overall" || &q.category == c)
                    .cloned()
                    .collect()
            };
            let (v, r) = (pick(&d.report), pick(base));
            let (ratio, low, high) = tau_ratio(
                &v.iter().collect::<Vec<_>>(),
                &r.iter().collect::<Vec<_>>(),
                RESAMPLES,
                0x7a0,
            );
            out.push(TauRatio {
                variant: d.name.clone(),
                reference: first.name.clone(),
                category: c.clone(),
                ratio,
                low,
                high,
                prompts: v.len(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(accepted: Vec<usize>) -> QuestionResult {
        QuestionResult {
            question_id: serde_json::Value::Null,
            category: "c".into(),
            vanilla_tokens: 0,
            vanilla_s: 0.0,
            spec_tokens: 0,
            spec_s: 0.0,
            rounds: accepted.len(),
            accepted,
            equal_to_vanilla: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_uniform_gain_has_a_tight_interval_and_noise_a_wide_one() {
        // Every prompt: reference τ 2, variant τ 3 -> ratio exactly 1.5 in every resample.
        let reference: Vec<QuestionResult> = (0..30).map(|_| result(vec![1, 1])).collect();
        let variant: Vec<QuestionResult> = (0..30).map(|_| result(vec![2, 2])).collect();
        fn refs(v: &[QuestionResult]) -> Vec<&QuestionResult> {
            v.iter().collect()
        }
        let (p, lo, hi) = tau_ratio(&refs(&variant), &refs(&reference), 500, 1);
        assert_eq!((p, lo, hi), (1.5, 1.5, 1.5));
        // Gains on some prompts, losses on others: the interval straddles the point.
        let mixed: Vec<QuestionResult> = (0..30)
            .map(|i| result(if i % 2 == 0 { vec![3, 3] } else { vec![0, 0] }))
            .collect();
        let (p, lo, hi) = tau_ratio(&refs(&mixed), &refs(&reference), 2000, 1);
        assert!((p - 1.25).abs() < 1e-12, "{p}");
        assert!(lo < 1.1 && hi > 1.4, "{lo} {hi}");
    }
}
