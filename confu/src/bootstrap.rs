//! How sure a comparison is: the ratio of two drafters' τ on the same prompts, and a drafter's
//! speedup over vanilla, each with a 95 % percentile bootstrap interval over prompts (paired:
//! each resample draws the same prompts for both sides, so prompt difficulty cancels).

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

/// Σ numerators / Σ denominators over prompts `idx` of both sides, as a ratio of the two.
fn ratio_of(variant: &[(f64, f64)], reference: &[(f64, f64)], idx: &[usize]) -> f64 {
    let sum = |v: &[(f64, f64)]| {
        idx.iter()
            .fold((0.0, 0.0), |a, &i| (a.0 + v[i].0, a.1 + v[i].1))
    };
    let (va, vr) = sum(variant);
    let (ra, rr) = sum(reference);
    let rate = |a: f64, r: f64| if r > 0.0 { a / r } else { 1.0 };
    rate(va, vr) / rate(ra, rr)
}

/// The paired percentile bootstrap of a ratio of two rates, each a sum of numerators over a sum
/// of denominators across prompts (`variant[i]` and `reference[i]` are the same prompt):
/// `(point, 2.5 %, 97.5 %)` from `resamples` draws seeded by `seed`.
pub fn paired_rate_ratio(
    variant: &[(f64, f64)],
    reference: &[(f64, f64)],
    resamples: usize,
    seed: u64,
) -> (f64, f64, f64) {
    let n = variant.len().min(reference.len());
    let all: Vec<usize> = (0..n).collect();
    let point = ratio_of(variant, reference, &all);
    if n == 0 || resamples == 0 {
        return (point, point, point);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            ratio_of(variant, reference, &idx)
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * resamples as f64) as usize).min(resamples - 1)];
    (point, at(0.025), at(0.975))
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
    paired_rate_ratio(&v, &r, resamples, seed)
}

/// The speedup of the speculative runs over the vanilla runs of the same prompts (tokens per
/// second over tokens per second), with its 95 % paired bootstrap interval over prompts: it
/// holds prompt mix and machine noise together, so an interval that straddles 1 says the
/// difference from vanilla is not measurable on these prompts.
pub fn speedup_interval(results: &[&QuestionResult]) -> (f64, f64, f64) {
    let spec: Vec<_> = results
        .iter()
        .map(|q| (q.spec_tokens as f64, q.spec_s))
        .collect();
    let vanilla: Vec<_> = results
        .iter()
        .map(|q| (q.vanilla_tokens as f64, q.vanilla_s))
        .collect();
    paired_rate_ratio(&spec, &vanilla, RESAMPLES, 0x5bd)
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

    fn timed(tokens: usize, vanilla_s: f64, spec_s: f64) -> QuestionResult {
        QuestionResult {
            vanilla_tokens: tokens,
            vanilla_s,
            spec_tokens: tokens,
            spec_s,
            ..result(vec![0])
        }
    }

    #[test]
    fn a_speedup_interval_is_tight_for_a_steady_gain_and_straddles_one_for_noise() {
        // Prompts of different lengths, every one 1.25x faster: the interval is the point.
        let steady: Vec<_> = (1..=20)
            .map(|i| timed(10 * i, 0.1 * i as f64, 0.08 * i as f64))
            .collect();
        let (p, lo, hi) = speedup_interval(&steady.iter().collect::<Vec<_>>());
        assert!((p - 1.25).abs() < 1e-9 && (lo - 1.25).abs() < 1e-9 && (hi - 1.25).abs() < 1e-9);
        // Half the prompts 10 % faster, half 10 % slower: no measurable difference.
        let noisy: Vec<_> = (0..40)
            .map(|i| timed(10, 1.0, if i % 2 == 0 { 0.9 } else { 1.1 }))
            .collect();
        let (p, lo, hi) = speedup_interval(&noisy.iter().collect::<Vec<_>>());
        assert!((p - 1.0).abs() < 1e-9, "{p}");
        assert!(lo < 0.99 && hi > 1.01, "{lo} {hi}");
        // The summary carries the same interval.
        let s = crate::eval_summary::summarize(&noisy.iter().collect::<Vec<_>>(), false);
        assert_eq!((s.speedup_low, s.speedup_high), (lo, hi));
    }
}
