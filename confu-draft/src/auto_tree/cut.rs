//! Cutting a drafted tree to its best nodes, in the order EAGLE-2's budget admits them.

use crate::tree::DraftTree;

/// Non-root nodes by score, best first (ties: smaller index first) — the order in which EAGLE-2's
/// `total_tokens` budget admits them.
pub(super) fn score_order(tree: &DraftTree, scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (1..tree.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The subtree of the root and `nodes` (ancestor-closed), in the original node order, with their
/// scores.
pub fn top_nodes(tree: &DraftTree, scores: &[f32], nodes: &[usize]) -> (DraftTree, Vec<f32>) {
    let mut keep = vec![false; tree.len()];
    keep[0] = true;
    for &n in nodes {
        keep[n] = true;
    }
    let mut index = vec![usize::MAX; tree.len()];
    let mut cut = DraftTree::root_only(tree.tokens[0]);
    let mut cut_scores = vec![scores[0]];
    index[0] = 0;
    for n in 1..tree.len() {
        let Some(p) = tree.parents[n] else { continue };
        if !keep[n] || index[p] == usize::MAX {
            continue;
        }
        index[n] = cut.len();
        cut.tokens.push(tree.tokens[n]);
        cut.parents.push(Some(index[p]));
        cut.depths.push(tree.depths[n]);
        cut_scores.push(scores[n]);
    }
    (cut, cut_scores)
}
