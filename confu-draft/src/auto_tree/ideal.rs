//! What a level count is expected to return before a tree that deep has been drafted: the
//! expected accepted drafts of the best `n` nodes of an ideal tree, whose draft scores rank the
//! nodes exactly by their chance of being reached under the acceptance statistics. Drafted trees
//! replace this with what their own nodes were expected to return (`E[L][n]`), which is lower
//! wherever the draft scores misrank nodes; so the ideal tree is an optimistic guess, and a level
//! count it favours gets drafted and measured rather than ruled out unseen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::acceptance_stats::AcceptanceStats;

/// A candidate node: its reach, and what its next sibling and first child are computed from.
struct Candidate {
    reach: f64,
    parent_reach: f64,
    depth: usize,
    rank: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.reach.total_cmp(&other.reach)
    }
}

/// `[n - 1]` for `n` in `1..=nodes`: the expected accepted drafts of the `n - 1` most reachable
/// nodes of depth ≤ `levels`, at most `top_k` children each (siblings taken in rank order), the
/// root counting as the first node (so the first entry is 0).
pub(super) fn ideal_expected(
    stats: &AcceptanceStats,
    levels: usize,
    top_k: usize,
    nodes: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(nodes);
    if nodes == 0 {
        return out;
    }
    out.push(0.0);
    if levels == 0 || top_k == 0 {
        out.resize(nodes, 0.0);
        return out;
    }
    // Best first: a node's reach is at most its parent's, so the nodes come out in the order of
    // their reach once each popped node offers its first child and its next sibling.
    let mut heap = BinaryHeap::new();
    heap.push(Candidate {
        reach: stats.rate(1, 0),
        parent_reach: 1.0,
        depth: 1,
        rank: 0,
    });
    let mut sum = 0.0;
    while out.len() < nodes {
        let Some(c) = heap.pop() else {
            break;
        };
        sum += c.reach;
        out.push(sum);
        if c.rank + 1 < top_k {
            heap.push(Candidate {
                reach: c.parent_reach * stats.rate(c.depth, c.rank + 1),
                rank: c.rank + 1,
                ..c
            });
        }
        if c.depth < levels {
            heap.push(Candidate {
                reach: c.reach * stats.rate(c.depth + 1, 0),
                parent_reach: c.reach,
                depth: c.depth + 1,
                rank: 0,
            });
        }
    }
    out.resize(nodes, sum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_tree_takes_nodes_in_the_order_of_their_reach() {
        // Rank 0 taken 0.5 of the time, rank 1 0.3, at every depth.
        let s = AcceptanceStats::new(3, 2, |_, r| [0.5, 0.3][r], 1.0, 1.0);
        let e = ideal_expected(&s, 2, 2, 8);
        // Reaches: 0.5, 0.3 (depth 1); 0.25, 0.15 under the first; 0.15, 0.09 under the second.
        let want = [0.0, 0.5, 0.8, 1.05, 1.2, 1.35, 1.44, 1.44];
        for (n, (got, want)) in e.iter().zip(want).enumerate() {
            assert!((got - want).abs() < 1e-12, "n = {}: {e:?}", n + 1);
        }
        // One level: the two children, then nothing more to add.
        assert_eq!(ideal_expected(&s, 1, 2, 4), vec![0.0, 0.5, 0.8, 0.8]);
        assert_eq!(ideal_expected(&s, 0, 2, 2), vec![0.0, 0.0]);
        assert!(ideal_expected(&s, 3, 2, 0).is_empty());
    }

    #[test]
    fn deeper_trees_expect_more_only_where_acceptance_is_high() {
        let greedy = AcceptanceStats::new(8, 4, |_, r| [0.9, 0.05, 0.02, 0.01][r], 1.0, 1.0);
        let shallow = ideal_expected(&greedy, 2, 4, 16)[15];
        let deep = ideal_expected(&greedy, 6, 4, 16)[15];
        assert!(deep > shallow + 2.0, "{shallow} vs {deep}");
        let sampled = AcceptanceStats::new(8, 4, |_, r| [0.2, 0.1, 0.05, 0.02][r], 1.0, 1.0);
        let shallow = ideal_expected(&sampled, 2, 4, 16)[15];
        let deep = ideal_expected(&sampled, 6, 4, 16)[15];
        assert!(deep - shallow < 0.05, "{shallow} vs {deep}");
    }
}
