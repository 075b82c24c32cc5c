//! The one value that describes a verification pass, built on the host.
//!
//! A pass appends rows to the target's cache: the draft tree's nodes (root first) and, for ConFu,
//! extra rows attached to nodes (contemplate rows). The layout says, for every row, what it is,
//! its position id and what it may see (the [`Visibility`] matrix), and which rows return logits
//! and which return tapped features. The target forward only executes it; everything about the
//! pass can be unit-tested here without tensors.

use confu_core::{DraftTree, Result, Visibility};

/// What one row of a verification pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// Tree node `i` (its token is the tree's token `i`).
    Node(usize),
    /// An extra row attached to tree node `i` (e.g. ConFu's contemplate row of that node).
    Extra(usize),
}

/// A verification pass: rows, positions, visibility, and which rows return what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLayout {
    /// Cache length before the pass (the accepted prefix).
    pub prefix_len: usize,
    pub kinds: Vec<RowKind>,
    /// One position id per row.
    pub positions: Vec<usize>,
    /// `[rows, reserved + prefix + rows]`.
    pub visibility: Visibility,
    /// Rows whose logits are returned, in this order.
    pub logit_rows: Vec<usize>,
    /// Rows whose tapped features are returned, in this order.
    pub feature_rows: Vec<usize>,
}

impl RowLayout {
    /// EAGLE-3's pass: one row per tree node at position `prefix + depth`, seeing the cached
    /// prefix, its ancestors and itself; every node returns logits and features.
    pub fn tree(reserved: usize, prefix_len: usize, tree: &DraftTree) -> Result<Self> {
        let n = tree.len();
        Ok(Self {
            prefix_len,
            kinds: (0..n).map(RowKind::Node).collect(),
            positions: tree.depths.iter().map(|d| prefix_len + d).collect(),
            visibility: Visibility::tree(reserved, prefix_len, &tree.parents)?,
            logit_rows: (0..n).collect(),
            feature_rows: (0..n).collect(),
        })
    }

    /// Rows in the pass.
    pub fn rows(&self) -> usize {
        self.kinds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_layout_places_nodes_by_depth_and_masks_by_ancestry() {
        let tree = DraftTree {
            tokens: vec![5, 7, 8, 9],
            parents: vec![None, Some(0), Some(0), Some(1)],
            depths: vec![0, 1, 1, 2],
        };
        let l = RowLayout::tree(2, 10, &tree).unwrap();
        assert_eq!(l.positions, vec![10, 11, 11, 12]);
        assert_eq!(l.rows(), 4);
        // Node 3 sees the prefix (not the reserved region), the root, node 1 and itself.
        let row: Vec<bool> = (0..16).map(|c| l.visibility.get(3, c)).collect();
        let want: Vec<bool> = "0011111111111101".chars().map(|c| c == '1').collect();
        assert_eq!(row, want);
        assert_eq!(l.logit_rows, vec![0, 1, 2, 3]);
    }
}
