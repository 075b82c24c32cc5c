//! How a head picks its drafts when the target samples (temperature > 0).
//!
//! EAGLE's trees take the head's top-k tokens at every node, and the verifier accepts such a
//! token `x` with the target's probability `p(x)`: at T = 1 that is `p(argmax q)`, which on a
//! high-entropy target is small even when the head's `q` matches `p` well. Drawing the token
//! from `q` instead, and accepting it with `min(1, p(x) / q(x))` (speculative sampling), accepts
//! `Σ min(p, q) = 1 − TV(p, q)`: on the testbed at T = 1 with one draft a round, 0.66–0.70 of the
//! drafts accepted against 0.31–0.33 for the head's top token (`docs/auto-tree.md`). Drawn drafts form chains: a node's children are cut by
//! score, and a cut that looks at drawn tokens would bias what the verifier sees, so a drawn tree
//! has one child per node, and the number of levels verified never depends on which tokens were
//! drawn.

use std::str::FromStr;

use confu_core::sampling::filtered_probs;
use confu_core::{DrawnFrom, Error, Result, Sampler, SamplingParams};
use serde::{Deserialize, Serialize};

/// Which drafts a head proposes when the target samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DraftSampling {
    /// Chains drawn from the head's distribution (with the target's temperature, top-k and
    /// top-p), wherever the tree is a chain: `--tree auto` (which then drafts chains) and fixed
    /// trees of top-k 1. Fixed trees of wider top-k keep EAGLE's top-k rule.
    #[default]
    Draw,
    /// EAGLE's rule everywhere: the head's top-k tokens, whatever the temperature.
    Top,
}

impl FromStr for DraftSampling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "draw" => Ok(Self::Draw),
            "top" => Ok(Self::Top),
            other => Err(Error::invalid(
                "draft sampling",
                other,
                "expected `draw` (chains drawn from the head's distribution) or `top` (the head's top-k)",
            )),
        }
    }
}

/// The drawing state of one sequence: the target's sampling filters, applied to the head's
/// distribution, and the drafter's own random stream (seeded from the generation's seed, so a
/// seeded generation is reproducible).
#[derive(Clone, Debug)]
pub struct DraftDraws {
    sampler: Sampler,
}

/// Keeps the drafter's stream apart from the verifier's, which draws from the same seed.
const STREAM: u64 = 0x9E37_79B9_7F4A_7C15;

impl DraftDraws {
    /// Draws for a generation sampled with `params` under `mode` (`None`: greedy decoding, or
    /// `DraftSampling::Top`).
    pub fn new(mode: DraftSampling, params: &SamplingParams) -> Result<Option<Self>> {
        if mode == DraftSampling::Top || params.is_greedy() {
            return Ok(None);
        }
        let sampler = Sampler::new(SamplingParams {
            seed: params.seed ^ STREAM,
            ..params.clone()
        })?;
        Ok(Some(Self { sampler }))
    }

    /// Draw one draft id from the head's log-distribution `logp` (draft vocabulary), filtered as
    /// the target's; returns it with the distribution it was drawn from, over target ids.
    pub fn draw(&mut self, logp: &[f32], to_target: impl Fn(usize) -> u32) -> (usize, DrawnFrom) {
        let q = filtered_probs(logp, self.sampler.params());
        let x = self.sampler.draw(&q);
        let drawn = DrawnFrom::new(
            q.iter()
                .enumerate()
                .filter(|(_, &v)| v > 0.0)
                .map(|(i, &v)| (to_target(i), v)),
        );
        (x, drawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: Some(2),
            seed: 5,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_decoding_and_top_draw_nothing() {
        assert!(DraftDraws::new(DraftSampling::Draw, &params(0.0))
            .unwrap()
            .is_none());
        assert!(DraftDraws::new(DraftSampling::Top, &params(1.0))
            .unwrap()
            .is_none());
        assert_eq!("top".parse::<DraftSampling>().unwrap(), DraftSampling::Top);
        let err = "best".parse::<DraftSampling>().unwrap_err().to_string();
        assert!(
            err.contains("draft sampling") && err.contains("best"),
            "{err}"
        );
    }

    #[test]
    fn draws_follow_the_filtered_head_distribution() {
        let mut d = DraftDraws::new(DraftSampling::Draw, &params(1.0))
            .unwrap()
            .unwrap();
        // Top-2 of [0.5, 0.3, 0.2] renormalised: ids 0 and 1 at 0.625 / 0.375, mapped to 10 + id.
        let logp: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let n = 20_000;
        let mut zeros = 0;
        for _ in 0..n {
            let (x, q) = d.draw(&logp, |i| 10 + i as u32);
            assert!(x < 2, "drew {x} outside the top-2");
            assert_eq!(q.entries().len(), 2);
            assert!((q.prob(10) - 0.625).abs() < 1e-6 && q.prob(12) == 0.0);
            zeros += usize::from(x == 0);
        }
        let share = zeros as f64 / n as f64;
        assert!(
            (share - 0.625).abs() < 0.02,
            "id 0 drawn {share} of the time"
        );
    }
}
