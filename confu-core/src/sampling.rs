//! Turning logits into tokens: greedy argmax, or temperature → top-k → top-p → draw, in the order
//! Hugging Face's logits warpers apply them. The filtered distribution is exposed on its own
//! because lossless speculative sampling must accept drafts against exactly that distribution.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// User-facing sampling parameters. `temperature == 0` means greedy decoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Reject values outside their domain, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::invalid(
                "temperature",
                self.temperature,
                "must be a finite number >= 0 (0 = greedy)",
            ));
        }
        if self.top_k == Some(0) {
            return Err(Error::invalid(
                "top-k",
                0,
                "must be >= 1 (omit it to disable)",
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid("top-p", p, "must lie in (0, 1]"));
            }
        }
        Ok(())
    }

    /// Whether decoding is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// The target distribution after temperature, top-k and top-p (probabilities summing to 1;
/// filtered tokens get exactly 0). Requires `temperature > 0`.
pub fn filtered_probs(logits: &[f32], params: &SamplingParams) -> Vec<f32> {
    let t = params.temperature;
    // Shift by the largest logit before dividing: at tiny temperatures `l / t` overflows to
    // infinity and `inf - inf` would poison every probability; shifted, the limit is greedy.
    let top = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut scaled: Vec<f32> = logits.iter().map(|&l| (l - top) / t).collect();
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    let needs_order = params.top_k.is_some() || params.top_p.is_some_and(|p| p < 1.0);
    if needs_order {
        // Descending by logit; stable so that ties keep the smaller id first.
        order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]));
    }
    if let Some(k) = params.top_k {
        for &i in order.iter().skip(k) {
            scaled[i] = f32::NEG_INFINITY;
        }
    }
    let max = scaled.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = scaled.iter().map(|&s| (s - max).exp()).collect();
    normalize(&mut probs);
    if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
        // Keep the smallest prefix (by probability) whose mass reaches p; always keep the top one.
        let mut mass = 0.0f64;
        let mut cut = order.len();
        for (rank, &i) in order.iter().enumerate() {
            mass += probs[i] as f64;
            if mass >= p as f64 {
                cut = rank + 1;
                break;
            }
        }
        for &i in &order[cut..] {
            probs[i] = 0.0;
        }
        normalize(&mut probs);
    }
    probs
}

/// Scale non-negative weights to sum to one (in place).
pub fn normalize(probs: &mut [f32]) {
    let sum: f64 = probs.iter().map(|&p| p as f64).sum();
    if sum > 0.0 {
        for p in probs.iter_mut() {
            *p = (*p as f64 / sum) as f32;
        }
    }
}

/// A seeded token sampler. The RNG is ChaCha8, so a seed gives the same draws on every platform.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// Validate the parameters and seed the RNG.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    /// The parameters in force.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Pick the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> usize {
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let probs = filtered_probs(logits, &self.params);
        self.draw(&probs)
    }

    /// Draw an index from a probability vector (inverse CDF on one uniform number).
    pub fn draw(&mut self, probs: &[f32]) -> usize {
        let u: f64 = self.rng.random::<f64>();
        let mut acc = 0.0f64;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p as f64;
                last = i;
                if u < acc {
                    return i;
                }
            }
        }
        last
    }

    /// A uniform number in `[0, 1)` from the same stream (for acceptance tests).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, k: Option<usize>, p: Option<f32>) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: k,
            top_p: p,
            seed: 7,
        }
    }

    #[test]
    fn validation_names_the_parameter() {
        let e = params(-1.0, None, None).validate().unwrap_err().to_string();
        assert!(e.contains("temperature") && e.contains("-1"), "{e}");
        let e = params(1.0, None, Some(1.5))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("top-p") && e.contains("1.5"), "{e}");
        let e = params(1.0, None, Some(0.0))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("top-p"), "{e}");
        let e = params(1.0, Some(0), None)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("top-k"), "{e}");
        assert!(params(0.7, Some(5), Some(0.9)).validate().is_ok());
    }

    #[test]
    fn top_k_and_top_p_filter_like_transformers() {
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let p = filtered_probs(&logits, &params(1.0, Some(2), None));
        assert_eq!(p[2], 0.0);
        assert_eq!(p[3], 0.0);
        let e = (1.0f32).exp();
        assert!((p[0] - e / (e + 1.0)).abs() < 1e-6);
        // softmax = [.644, .237, .087, .032]: top-p 0.8 keeps the first two.
        let p = filtered_probs(&logits, &params(1.0, None, Some(0.8)));
        assert!(p[0] > 0.0 && p[1] > 0.0 && p[2] == 0.0 && p[3] == 0.0);
        // A tiny top-p keeps the top token alone.
        let p = filtered_probs(&logits, &params(1.0, None, Some(0.01)));
        assert_eq!(p, [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn draws_follow_the_distribution() {
        let mut s = Sampler::new(params(1.0, None, None)).unwrap();
        let probs = [0.1f32, 0.6, 0.3];
        let mut counts = [0usize; 3];
        let n = 60_000;
        for _ in 0..n {
            counts[s.draw(&probs)] += 1;
        }
        // Pearson chi-square with 2 degrees of freedom; 13.8 is the 0.999 quantile.
        let chi2: f64 = counts
            .iter()
            .zip(probs)
            .map(|(&c, p)| {
                let e = n as f64 * p as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 13.8, "chi2 = {chi2}, counts = {counts:?}");
    }
}
