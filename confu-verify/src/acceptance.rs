//! Deciding which drafted tokens the target accepts, on the host.
//!
//! Greedy: along each root-to-leaf path accept the longest prefix whose tokens equal the target's
//! argmax at their parent; the first path (in leaf order) reaching the longest wins, exactly as
//! `evaluate_posterior` of the official EAGLE code; the bonus token is the argmax after it.
//!
//! Sampling (lossless): walk down from the root; at each node try its children in draft order,
//! accepting child `x` with probability `p(x)` under the target distribution (temperature, top-k,
//! top-p applied; the draft probability counts as 1 because children were picked
//! deterministically); on rejection set `p(x) = 0` and renormalise; when no child is accepted, the
//! bonus token is drawn from what is left of `p`. The output distribution equals the target's.

use confu_core::sampling::{argmax, normalize};
use confu_core::DraftTree;
use confu_core::Sampler;

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
/// (temperature, top-k, top-p applied), computed only for nodes the walk reaches.
pub fn sample_accept(
    tree: &DraftTree,
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
            if px > 0.0 && sampler.uniform() < px as f64 {
                accepted = Some(child);
                break;
            }
            if x < p.len() {
                p[x] = 0.0;
                normalize(&mut p);
            }
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
        let acc = sample_accept(&tree(), |n| one_hot([8, 0, 9, 0, 3][n]), &mut s);
        assert_eq!((acc.path, acc.bonus), (vec![0, 2, 4], 3));
    }
}
