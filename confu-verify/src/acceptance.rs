//! Deciding which drafted tokens the target accepts, on the host.
//!
//! Greedy: along each root-to-leaf path accept the longest prefix whose tokens equal the target's
//! argmax at their parent; the first path (in leaf order) reaching the longest wins, exactly as
//! `evaluate_posterior` of the official EAGLE code; the bonus token is the argmax after it.
//!
//! Sampling (lossless): walk down from the root; at each node try its children in draft order
//! against `p`, the target distribution (temperature, top-k, top-p applied). A child picked
//! deterministically (EAGLE's top-k, prompt lookup) is accepted with probability `p(x)`, and on
//! rejection `p(x)` is set to 0 and `p` renormalised: the draft probability counts as 1. A child
//! drawn from a draft distribution `q` ([`DrawnFrom`]) is accepted with `min(1, p(x) / q(x))`, and
//! on rejection `p` becomes `max(0, p − q)` renormalised: speculative sampling, which accepts
//! `1 − TV(p, q)` on average where the deterministic rule accepts `p(argmax q)`. Siblings drawn
//! independently from the same `q` follow the same rule (SpecInfer's multi-step walk). When no
//! child is accepted, the bonus token is drawn from what is left of `p`. Either way the output
//! distribution equals the target's.

use confu_core::sampling::{argmax, filtered_probs, normalize};
use confu_core::Sampler;
use confu_core::{DraftTree, DrawnFrom};

/// The outcome of verifying one tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    /// Accepted nodes from the root (always node 0) to the last accepted draft.
    pub path: Vec<usize>,
    /// The target's token after the last accepted node (the next round's root).
    pub bonus: u32,
}

impl Acceptance {
    /// Drafted tokens accepted (root and bonus excluded) — `accept_length` of the EAGLE code.
    pub fn accepted_drafts(&self) -> usize {
        self.path.len() - 1
    }
}

/// `evaluate_posterior` at temperature 0: `candidates[r][j]` is the token at column `j` of path
/// `r` (padding may be anything that never matches, e.g. `-1`); `predictions[r][j]` is the target's
/// argmax after column `j`. Returns `(best row, accepted drafts on it)`.
pub fn evaluate_posterior(candidates: &[Vec<i64>], predictions: &[Vec<u32>]) -> (usize, usize) {
    let mut best = (0, 0);
    for (r, (cand, pred)) in candidates.iter().zip(predictions).enumerate() {
        let run = cand
            .iter()
            .skip(1)
            .zip(pred)
            .take_while(|(&c, &p)| c == p as i64)
            .count();
        if run > best.1 {
            best = (r, run);
        }
    }
    best
}

/// Greedy acceptance over a tree given the target's argmax at every node.
pub fn greedy_accept(tree: &DraftTree, argmax_per_node: &[u32]) -> Acceptance {
    let paths = tree.paths();
    let candidates: Vec<Vec<i64>> = paths
        .iter()
        .map(|p| p.iter().map(|&n| tree.tokens[n] as i64).collect())
        .collect();
    let predictions: Vec<Vec<u32>> = paths
        .iter()
        .map(|p| p.iter().map(|&n| argmax_per_node[n]).collect())
        .collect();
    let (best, len) = evaluate_posterior(&candidates, &predictions);
    let path = paths[best][..len + 1].to_vec();
    let bonus = argmax_per_node[*path.last().expect("root")];
    Acceptance { path, bonus }
}

/// Lossless sampling acceptance. `probs(node)` gives the target distribution after `node`
/// (temperature, top-k, top-p applied), computed only for nodes the walk reaches; `drawn[node]`
/// is the distribution a node's token was drawn from (`None`, or `drawn` shorter than the tree:
/// picked deterministically).
pub fn sample_accept(
    tree: &DraftTree,
    drawn: &[Option<DrawnFrom>],
    mut probs: impl FnMut(usize) -> Vec<f32>,
    sampler: &mut Sampler,
) -> Acceptance {
    let children = tree.children();
    let mut path = vec![0];
    loop {
        let node = *path.last().expect("root");
        let mut p = probs(node);
        let mut accepted = None;
        for &child in &children[node] {
            let x = tree.tokens[child] as usize;
            let px = p.get(x).copied().unwrap_or(0.0);
            // A deterministic pick is a point mass, q(x) = 1; so is a token its q gives no mass
            // (it was not drawn from that q).
            let q = drawn
                .get(child)
                .and_then(Option::as_ref)
                .map(|q| (q, q.prob(x as u32)))
                .filter(|&(_, qx)| qx > 0.0);
            let qx = q.map_or(1.0, |(_, qx)| qx);
            if px > 0.0 && sampler.uniform() * (qx as f64) < px as f64 {
                accepted = Some(child);
                break;
            }
            match q {
                Some((q, _)) => q.subtract_from(&mut p),
                None if x < p.len() => p[x] = 0.0,
                None => continue,
            }
            normalize(&mut p);
        }
        match accepted {
            Some(child) => path.push(child),
            None => {
                let bonus = if p.iter().any(|&v| v > 0.0) {
                    sampler.draw(&p) as u32
                } else {
                    argmax(&p) as u32
                };
                return Acceptance { path, bonus };
            }
        }
    }
}

/// Accept from the target's logits at every node: the greedy walk at temperature 0, the
/// lossless sampling walk otherwise (`drawn`: the distributions drawn nodes came from).
pub fn accept(
    tree: &DraftTree,
    drawn: &[Option<DrawnFrom>],
    logits: &[Vec<f32>],
    sampler: &mut Sampler,
) -> Acceptance {
    if sampler.params().is_greedy() {
        let argmax: Vec<u32> = logits.iter().map(|l| argmax(l) as u32).collect();
        greedy_accept(tree, &argmax)
    } else {
        let params = sampler.params().clone();
        sample_accept(
            tree,
            drawn,
            |n| filtered_probs(&logits[n], &params),
            sampler,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> DraftTree {
        // 0 root (5); 1 = 7, 2 = 8 children of 0; 3 = 9 child of 1; 4 = 9 child of 2.
        DraftTree {
            tokens: vec![5, 7, 8, 9, 9],
            parents: vec![None, Some(0), Some(0), Some(1), Some(2)],
            depths: vec![0, 1, 1, 2, 2],
        }
    }

    #[test]
    fn greedy_takes_the_longest_and_first_path() {
        // Target: after root 8, after 2 → 9, after 4 → 3.
        let acc = greedy_accept(&tree(), &[8, 0, 9, 0, 3]);
        assert_eq!(acc.path, vec![0, 2, 4]);
        assert_eq!(acc.bonus, 3);
        // Nothing matches: root alone, bonus = argmax at root.
        let acc = greedy_accept(&tree(), &[1, 0, 0, 0, 0]);
        assert_eq!((acc.path, acc.bonus), (vec![0], 1));
    }

    #[test]
    fn posterior_ties_keep_the_first_row() {
        let cands = vec![vec![5, 7, -1], vec![5, 7, 9]];
        let preds = vec![vec![7, 1, 1], vec![7, 2, 2]];
        assert_eq!(evaluate_posterior(&cands, &preds), (0, 1));
    }

    #[test]
    fn certain_distributions_accept_deterministically() {
        let mut s = Sampler::new(confu_core::SamplingParams {
            temperature: 1.0,
            ..Default::default()
        })
        .unwrap();
        let one_hot = |t: usize| {
            let mut v = vec![0.0f32; 10];
            v[t] = 1.0;
            v
        };
        // Root → 8 (node 2), then → 9 (node 4), then → 3 as bonus.
        let acc = sample_accept(&tree(), &[], |n| one_hot([8, 0, 9, 0, 3][n]), &mut s);
        assert_eq!((acc.path, acc.bonus), (vec![0, 2, 4], 3));
    }

    /// One node `x` drawn from `q` below the root, many times: the first token emitted follows
    /// `p`, and the draft is accepted `Σ min(p, q)` of the time.
    #[test]
    fn drawn_drafts_are_lossless_and_accepted_at_one_minus_tv() {
        let p = [0.05f32, 0.4, 0.0, 0.25, 0.3];
        let q = DrawnFrom::new([(0, 0.3), (1, 0.2), (2, 0.1), (3, 0.4)]);
        let overlap: f64 = (0..5u32).map(|t| p[t as usize].min(q.prob(t)) as f64).sum();
        let params = confu_core::SamplingParams {
            temperature: 1.0,
            seed: 11,
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        let dense: Vec<f32> = (0..5u32).map(|t| q.prob(t)).collect();
        let n = 200_000;
        let mut counts = [0usize; 5];
        let mut accepted = 0usize;
        for _ in 0..n {
            let x = s.draw(&dense) as u32;
            let tree = DraftTree {
                tokens: vec![9, x],
                parents: vec![None, Some(0)],
                depths: vec![0, 1],
            };
            let acc = sample_accept(&tree, &[None, Some(q.clone())], |_| p.to_vec(), &mut s);
            let first = match acc.path.len() {
                1 => acc.bonus,
                _ => {
                    accepted += 1;
                    x
                }
            };
            counts[first as usize] += 1;
        }
        let within = |got: usize, want: f64, what: &str| {
            let sd = (n as f64 * want * (1.0 - want)).sqrt().max(1.0);
            let z = (got as f64 - n as f64 * want) / sd;
            assert!(
                z.abs() < 5.0,
                "{what}: {got} of {n}, expected {want} (z = {z:.1})"
            );
        };
        for t in 0..5 {
            within(counts[t], p[t] as f64, &format!("token {t}"));
        }
        within(accepted, overlap, "accepted drafts");
        // The deterministic rule on the same draws would accept only p(x) of them.
        let point_mass: f64 = (0..5u32).map(|t| (q.prob(t) * p[t as usize]) as f64).sum();
        assert!(overlap > point_mass + 0.1, "{overlap} vs {point_mass}");
    }

    #[test]
    fn a_token_outside_its_q_falls_back_to_the_deterministic_rule() {
        let mut s = Sampler::new(confu_core::SamplingParams {
            temperature: 1.0,
            ..Default::default()
        })
        .unwrap();
        let tree = DraftTree {
            tokens: vec![9, 4],
            parents: vec![None, Some(0)],
            depths: vec![0, 1],
        };
        // q has no mass on 4 and p none either: never accepted, and the bonus never 4.
        let q = DrawnFrom::new([(0, 1.0)]);
        for _ in 0..100 {
            let acc = sample_accept(
                &tree,
                &[None, Some(q.clone())],
                |_| vec![0.5, 0.5, 0.0, 0.0, 0.0],
                &mut s,
            );
            assert_eq!(acc.path, vec![0]);
            assert!(acc.bonus < 2);
        }
    }
}
