//! ConFu's visibility rules as [`Visibility`] builders (METHOD.md §4, §6): the soft prompt's own
//! pass, contemplate rows attached to tree nodes, and the anchor rows of training.
//!
//! The invariants every builder keeps: only contemplate rows see soft-prompt slots, and no
//! real (node) row sees a contemplate row.

use crate::{Error, Result, Visibility};

impl Visibility {
    /// The soft prompt's pass into the reserved region: `s` rows, causal among themselves, over
    /// `s + main` key slots (the main region, whatever it holds, stays hidden).
    pub fn soft_prompt(s: usize, main: usize) -> Self {
        let mut v = Self::blank(s, s + main);
        for r in 0..s {
            v.allow_range(r, 0..r + 1);
        }
        v
    }

    /// Extend a pass of node rows (this matrix: `[nodes, reserved + prefix + nodes]`) with one
    /// contemplate row per entry of `attached` (the node row it belongs to). Node rows are
    /// unchanged and never see contemplate rows; contemplate row `j` sees the `soft_prompt` slots
    /// (the first of the reserved region), everything its node sees (prefix, ancestors, the node
    /// itself) and itself.
    pub fn with_contemplate_rows(
        &self,
        reserved: usize,
        soft_prompt: usize,
        attached: &[usize],
    ) -> Result<Self> {
        let (nodes, c) = (self.rows(), attached.len());
        if soft_prompt > reserved || self.cols() < reserved + nodes {
            return Err(Error::shape(
                "contemplate visibility",
                format!(
                    "{} columns cannot hold {reserved} reserved slots and {nodes} node rows",
                    self.cols()
                ),
            ));
        }
        let cols = self.cols() + c;
        let mut v = Self::blank(nodes + c, cols);
        for r in 0..nodes {
            for col in 0..self.cols() {
                if self.get(r, col) {
                    v.allow(r, col);
                }
            }
        }
        for (j, &node) in attached.iter().enumerate() {
            if node >= nodes {
                return Err(Error::invalid(
                    "contemplate row",
                    node,
                    format!("the pass has {nodes} node rows"),
                ));
            }
            let r = nodes + j;
            v.allow_range(r, 0..soft_prompt);
            for col in reserved..self.cols() {
                if self.get(node, col) {
                    v.allow(r, col);
                }
            }
            v.allow(r, self.cols() + j);
        }
        Ok(v)
    }

    /// Training's anchor pass: one contemplate row per anchor `a` after `n` cached real rows;
    /// row `[con]_a` sees the `soft_prompt` reserved slots, real rows `0..=a` and itself.
    pub fn anchor_rows(
        reserved: usize,
        soft_prompt: usize,
        n: usize,
        anchors: &[usize],
    ) -> Result<Self> {
        let a = anchors.len();
        let mut v = Self::blank(a, reserved + n + a);
        for (j, &anchor) in anchors.iter().enumerate() {
            if anchor >= n {
                return Err(Error::invalid(
                    "anchor",
                    anchor,
                    format!("the sequence has {n} rows"),
                ));
            }
            v.allow_range(j, 0..soft_prompt.min(reserved));
            v.allow_range(j, reserved..reserved + anchor + 1);
            v.allow(j, reserved + n + j);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &Visibility, r: usize) -> Vec<bool> {
        (0..v.cols()).map(|c| v.get(r, c)).collect()
    }

    /// `"1101"` as `[true, true, false, true]`.
    fn bits(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn soft_prompt_rows_are_causal_in_the_reserved_region() {
        let v = Visibility::soft_prompt(3, 2);
        assert_eq!(row(&v, 0), bits("10000"));
        assert_eq!(row(&v, 2), bits("11100"));
    }

    #[test]
    fn contemplate_rows_see_their_node_and_the_soft_prompt_and_nobody_sees_them() {
        // 2 reserved slots (soft prompt), prefix 1, nodes: root 0, child 1 of 0, child 2 of 0.
        let tree = Visibility::tree(2, 1, &[None, Some(0), Some(0)]).unwrap();
        let v = tree.with_contemplate_rows(2, 2, &[0, 2]).unwrap();
        assert_eq!((v.rows(), v.cols()), (5, 8));
        // Node rows: unchanged, no soft prompt, no contemplate row.
        for r in 0..3 {
            let mut want = row(&tree, r);
            want.extend([false, false]);
            assert_eq!(row(&v, r), want);
        }
        // [con] of node 2: soft prompt, prefix, root, node 2, itself; not node 1, not [con]_0.
        assert_eq!(row(&v, 4), bits("11110101"));
        // [con] of the root: soft prompt, prefix, root, itself.
        assert_eq!(row(&v, 3), bits("11110010"));
        assert!(v.validate().is_ok());
        assert!(tree.with_contemplate_rows(2, 2, &[3]).is_err());
    }

    #[test]
    fn anchor_rows_see_their_prefix_and_the_soft_prompt() {
        let v = Visibility::anchor_rows(2, 2, 4, &[1, 3]).unwrap();
        assert_eq!(row(&v, 0), bits("11110010"));
        assert_eq!(row(&v, 1), bits("11111101"));
        assert!(Visibility::anchor_rows(2, 2, 4, &[4]).is_err());
    }
}
