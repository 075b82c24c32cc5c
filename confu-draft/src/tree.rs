//! The EAGLE-2 dynamic draft tree, as host-side logic on small vectors.
//!
//! Root = the last accepted token. Its top-k children form the first frontier. Each of `depth`
//! expansion steps runs the k frontier nodes in one batched draft forward; every node proposes its
//! top-k children scored `score(parent) + log q(child)`; the best k of those k² candidates become
//! the next frontier; every candidate is kept. Finally the `total_tokens − 1` best candidates by
//! score are kept and ordered by candidate index (depth, then frontier slot, then child rank), so
//! parents precede children. This follows `topK_genrate` of the official EAGLE code step by step,
//! including its tie-breaking (smaller index first), so trees match it exactly.

pub use confu_core::DraftTree;
use confu_core::{Error, Result};

/// `total_tokens` (nodes including the root), `depth` (expansion steps), `top_k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeSettings {
    pub total_tokens: usize,
    pub depth: usize,
    pub top_k: usize,
}

impl Default for TreeSettings {
    /// The EAGLE-3 paper's 30-node budget: 30 nodes, depth 4, top-k 8.
    fn default() -> Self {
        Self {
            total_tokens: 30,
            depth: 4,
            top_k: 8,
        }
    }
}

impl TreeSettings {
    /// These settings shrunk to a budget of `room` nodes and positions after the prefix: at most
    /// `room` nodes, and depths that keep the deepest node (`depth + 1`) inside it.
    pub fn within(self, room: usize) -> Self {
        Self {
            total_tokens: self.total_tokens.min(room),
            depth: self.depth.min(room.saturating_sub(2)),
            top_k: self.top_k,
        }
    }

    /// Draft-cache slots one tree's expansion writes (`depth` steps of `top_k` rows).
    pub fn expansion_slots(&self) -> usize {
        self.depth.saturating_mul(self.top_k)
    }

    /// Reject zero settings, naming them.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("tree total_tokens", self.total_tokens),
            ("tree top_k", self.top_k),
        ] {
            if v == 0 {
                return Err(Error::invalid(name, 0, "must be >= 1"));
            }
        }
        Ok(())
    }
}

/// Indices of the `k` largest values, largest first; ties keep the smaller index first.
/// Linear-time selection first, so that drafting over a 32k-entry vocabulary stays cheap.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}

/// `log_softmax` of one row.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    logits.iter().map(|&l| l - lse).collect()
}

/// A frontier node handed to the expansion callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontierNode {
    /// Target id of the node's token.
    pub token: u32,
    /// Frontier slot of its parent in the previous expansion step (`None` for the root's children,
    /// whose feature is the draft state at the last real position).
    pub parent_slot: Option<usize>,
}

/// Build a tree. `root_logp` is the draft's log-distribution after the root (draft vocabulary);
/// `to_target` maps draft ids to target ids; `expand(step, frontier)` runs the draft on the
/// frontier and returns one log-distribution per frontier node.
pub fn build_tree(
    root: u32,
    root_logp: &[f32],
    settings: TreeSettings,
    to_target: impl Fn(usize) -> u32,
    expand: impl FnMut(usize, &[FrontierNode]) -> Result<Vec<Vec<f32>>>,
) -> Result<DraftTree> {
    build_scored_tree(root, root_logp, settings, to_target, expand).map(|(tree, _)| tree)
}

/// [`build_tree`], also returning every node's score (cumulative draft log-probability; the
/// root's is 0), which ConFu's `contemplate_nodes = top:M` ranks nodes by.
pub fn build_scored_tree(
    root: u32,
    root_logp: &[f32],
    settings: TreeSettings,
    to_target: impl Fn(usize) -> u32,
    expand: impl FnMut(usize, &[FrontierNode]) -> Result<Vec<Vec<f32>>>,
) -> Result<(DraftTree, Vec<f32>)> {
    build_picked_tree(root, root_logp, settings, to_target, top_k, expand)
}

/// [`build_scored_tree`] with the children of each node chosen by `pick(logp, k)` (draft ids,
/// in draft order; at most `k`) instead of the top `k`: drawn chains
/// ([`crate::DraftDraws`]) pick one child at random.
pub fn build_picked_tree(
    root: u32,
    root_logp: &[f32],
    settings: TreeSettings,
    to_target: impl Fn(usize) -> u32,
    mut pick: impl FnMut(&[f32], usize) -> Vec<usize>,
    mut expand: impl FnMut(usize, &[FrontierNode]) -> Result<Vec<Vec<f32>>>,
) -> Result<(DraftTree, Vec<f32>)> {
    settings.validate()?;
    let k = settings.top_k.min(root_logp.len());
    if settings.total_tokens == 1 || k == 0 {
        return Ok((DraftTree::root_only(root), vec![0.0]));
    }
    // Every candidate: score, target token, parent candidate (0 = root, c + 1 = candidate c).
    let mut scores: Vec<f32> = Vec::new();
    let mut tokens: Vec<u32> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();

    let first = pick(root_logp, k);
    let mut frontier_scores: Vec<f32> = first.iter().map(|&i| root_logp[i]).collect();
    let mut frontier_cands: Vec<usize> = Vec::with_capacity(k);
    let mut frontier: Vec<FrontierNode> = Vec::with_capacity(k);
    for &i in &first {
        frontier_cands.push(scores.len());
        scores.push(root_logp[i]);
        tokens.push(to_target(i));
        parent.push(0);
        frontier.push(FrontierNode {
            token: to_target(i),
            parent_slot: None,
        });
    }

    for step in 0..settings.depth {
        let logps = expand(step, &frontier)?;
        if logps.len() != frontier.len() {
            return Err(Error::shape(
                "tree expansion",
                format!(
                    "{} distributions for {} frontier nodes",
                    logps.len(),
                    frontier.len()
                ),
            ));
        }
        let base = scores.len();
        let mut child_tokens = Vec::with_capacity(k * k);
        let mut child_slots = Vec::with_capacity(k * k);
        for (slot, logp) in logps.iter().enumerate() {
            for c in pick(logp, k) {
                scores.push(logp[c] + frontier_scores[slot]);
                tokens.push(to_target(c));
                parent.push(frontier_cands[slot] + 1);
                child_tokens.push(to_target(c));
                child_slots.push(slot);
            }
        }
        let kk = scores.len() - base;
        let best = top_k(&scores[base..], k.min(kk));
        frontier = best
            .iter()
            .map(|&b| FrontierNode {
                token: child_tokens[b],
                parent_slot: Some(child_slots[b]),
            })
            .collect();
        frontier_scores = best.iter().map(|&b| scores[base + b]).collect();
        frontier_cands = best.iter().map(|&b| base + b).collect();
    }

    let keep = (settings.total_tokens - 1).min(scores.len());
    let mut kept = top_k(&scores, keep);
    kept.sort_unstable();
    // Node n (1-based) is kept candidate n - 1; map parent candidates to node indices.
    let mut node_of = vec![usize::MAX; scores.len() + 1];
    node_of[0] = 0;
    for (n, &c) in kept.iter().enumerate() {
        node_of[c + 1] = n + 1;
    }
    let mut tree = DraftTree::root_only(root);
    let mut node_scores = vec![0.0];
    for &c in &kept {
        let p = node_of[parent[c]];
        if p == usize::MAX {
            // A child never outscores its parent, so this only happens on exact score ties.
            return Err(Error::shape(
                "tree",
                format!("candidate {c} kept without its parent"),
            ));
        }
        tree.tokens.push(tokens[c]);
        tree.parents.push(Some(p));
        tree.depths.push(tree.depths[p] + 1);
        node_scores.push(scores[c]);
    }
    Ok((tree, node_scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_breaks_ties_by_index() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
    }

    #[test]
    fn zero_settings_are_rejected() {
        let s = TreeSettings {
            total_tokens: 0,
            depth: 1,
            top_k: 1,
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("total_tokens"));
        let s = TreeSettings {
            total_tokens: 3,
            depth: 1,
            top_k: 0,
        };
        assert!(s.validate().unwrap_err().to_string().contains("top_k"));
    }

    #[test]
    fn one_node_tree_is_the_root() {
        let s = TreeSettings {
            total_tokens: 1,
            depth: 3,
            top_k: 2,
        };
        let t = build_tree(7, &[0.0, -1.0], s, |i| i as u32, |_, _| unreachable!()).unwrap();
        assert_eq!(t, DraftTree::root_only(7));
    }

    #[test]
    fn small_tree_by_hand() {
        // Root children: 0 (-0.1), 1 (-0.5). Expansion: node 0 proposes 1 (-0.2) then 0 (-1.0);
        // node 1 proposes 0 (-0.05) then 1 (-3). Candidates by score: c0 -0.1, c2 -0.3, c4 -0.55,
        // c1 -0.5, ... keep 4 nodes = 3 candidates: c0, c1, c2 (scores -0.1, -0.5, -0.3 vs c4 -0.55).
        let s = TreeSettings {
            total_tokens: 4,
            depth: 1,
            top_k: 2,
        };
        let t = build_tree(
            9,
            &[-0.1, -0.5],
            s,
            |i| 100 + i as u32,
            |_, f| {
                assert_eq!(f.len(), 2);
                Ok(vec![vec![-1.0, -0.2], vec![-0.05, -3.0]])
            },
        )
        .unwrap();
        assert_eq!(t.tokens, vec![9, 100, 101, 101]);
        assert_eq!(t.parents, vec![None, Some(0), Some(0), Some(1)]);
        assert_eq!(t.depths, vec![0, 1, 1, 2]);
        assert_eq!(t.paths(), vec![vec![0, 2], vec![0, 1, 3]]);
    }
}
