//! Visibility masks: which query rows of one forward may attend to which key slots.
//!
//! Columns index the key slots of the cache *after* the forward's rows were written: first the
//! reserved region (the soft prompt's home, `reserved` slots, always present even when empty), then
//! the main region (`prefix` slots already cached, then one slot per new row, in row order). Every
//! ConFu rule ("only contemplate rows see the soft prompt", "no real row sees a contemplate row") is
//! a statement about this matrix, so it is built on the host with plain Rust and unit-tested without
//! tensors; [`Visibility::to_masked_out`] turns it into the boolean tensor the kernels take.

use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};

use crate::{Error, Result};

/// A dense row-major visibility matrix; `true` means "may attend".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visibility {
    rows: usize,
    cols: usize,
    bits: Vec<bool>,
}

impl Visibility {
    /// A matrix where no row sees anything yet.
    pub fn blank(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            bits: vec![false; rows * cols],
        }
    }

    /// Plain causal decoding: `rows` new tokens after `prefix` cached ones; row `i` sees the prefix,
    /// the new rows before it and itself. The reserved region stays masked out.
    pub fn causal(reserved: usize, prefix: usize, rows: usize) -> Self {
        let mut v = Self::blank(rows, reserved + prefix + rows);
        for r in 0..rows {
            v.allow_range(r, reserved..reserved + prefix + r + 1);
        }
        v
    }

    /// Tree verification: node `i` (a new row) sees the cached prefix, its ancestors and itself.
    /// `parents[i]` is the parent's row index (which must be smaller than `i`), `None` for a root.
    pub fn tree(reserved: usize, prefix: usize, parents: &[Option<usize>]) -> Result<Self> {
        let rows = parents.len();
        let mut v = Self::blank(rows, reserved + prefix + rows);
        for (i, parent) in parents.iter().enumerate() {
            v.allow_range(i, reserved..reserved + prefix);
            v.allow(i, reserved + prefix + i);
            let mut node = *parent;
            while let Some(p) = node {
                if p >= i {
                    return Err(Error::shape(
                        "tree mask",
                        format!("node {i} has parent {p}; parents must precede their children"),
                    ));
                }
                v.allow(i, reserved + prefix + p);
                node = parents[p];
            }
        }
        Ok(v)
    }

    /// Number of query rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of key slots (reserved region + main region after the rows are written).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether row `row` may attend to slot `col`.
    pub fn get(&self, row: usize, col: usize) -> bool {
        self.bits[row * self.cols + col]
    }

    /// Let `row` see `col`.
    pub fn allow(&mut self, row: usize, col: usize) {
        self.bits[row * self.cols + col] = true;
    }

    /// Let `row` see every slot in `cols`.
    pub fn allow_range(&mut self, row: usize, cols: std::ops::Range<usize>) {
        self.bits[row * self.cols + cols.start..row * self.cols + cols.end].fill(true);
    }

    /// Hide `col` from `row`.
    pub fn deny(&mut self, row: usize, col: usize) {
        self.bits[row * self.cols + col] = false;
    }

    /// How many leading columns no row sees (the reserved region, for a pass of ordinary rows):
    /// attention may leave those keys out altogether.
    pub fn hidden_prefix(&self) -> usize {
        (0..self.cols)
            .find(|&c| (0..self.rows).any(|r| self.bits[r * self.cols + c]))
            .unwrap_or(self.cols)
    }

    /// The same matrix without its first `n` columns.
    pub fn without_prefix(&self, n: usize) -> Self {
        let n = n.min(self.cols);
        let cols = self.cols - n;
        let bits = (0..self.rows)
            .flat_map(|r| {
                self.bits[r * self.cols + n..(r + 1) * self.cols]
                    .iter()
                    .copied()
            })
            .collect();
        Self {
            rows: self.rows,
            cols,
            bits,
        }
    }

    /// True when every row sees every slot, so kernels can skip masking entirely.
    pub fn is_all_visible(&self) -> bool {
        self.bits.iter().all(|&b| b)
    }

    /// Check that no row is fully masked out (softmax over nothing is undefined).
    pub fn validate(&self) -> Result<()> {
        for r in 0..self.rows {
            if !self.bits[r * self.cols..(r + 1) * self.cols]
                .iter()
                .any(|&b| b)
            {
                return Err(Error::shape(
                    "visibility",
                    format!("row {r} may attend to no slot"),
                ));
            }
        }
        Ok(())
    }

    /// The boolean tensor `[rows, cols]` the attention kernels take: `true` marks a slot masked out.
    pub fn to_masked_out<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Bool> {
        let masked_out: Vec<bool> = self.bits.iter().map(|&b| !b).collect();
        Tensor::from_data(TensorData::new(masked_out, [self.rows, self.cols]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_reserved_region_can_be_left_out() {
        // Ordinary rows never see the reserved region: without it, plain decoding is unmasked.
        let v = Visibility::causal(3, 4, 1);
        assert_eq!(v.hidden_prefix(), 3);
        let w = v.without_prefix(3);
        assert_eq!((w.rows(), w.cols()), (1, 5));
        assert!(w.is_all_visible());
        // A tree keeps its ancestry mask, shifted.
        let t = Visibility::tree(2, 1, &[None, Some(0), Some(0)]).unwrap();
        let u = t.without_prefix(t.hidden_prefix());
        assert_eq!(u.cols(), 4);
        for r in 0..3 {
            for c in 0..4 {
                assert_eq!(u.get(r, c), t.get(r, c + 2), "row {r} col {c}");
            }
        }
        // A row that sees the reserved region keeps it.
        let mut s = Visibility::causal(2, 1, 2);
        s.allow(1, 0);
        assert_eq!(s.hidden_prefix(), 0);
    }

    #[test]
    fn causal_rows_see_prefix_and_earlier_rows_only() {
        let v = Visibility::causal(2, 3, 2);
        assert_eq!((v.rows(), v.cols()), (2, 7));
        let row0: Vec<bool> = (0..7).map(|c| v.get(0, c)).collect();
        let row1: Vec<bool> = (0..7).map(|c| v.get(1, c)).collect();
        assert_eq!(row0, [false, false, true, true, true, true, false]);
        assert_eq!(row1, [false, false, true, true, true, true, true]);
    }

    #[test]
    fn tree_rows_see_ancestors_not_siblings() {
        // 0 is the root; 1 and 2 are its children; 3 is a child of 2.
        let v = Visibility::tree(0, 1, &[None, Some(0), Some(0), Some(2)]).unwrap();
        let row = |r: usize| (0..v.cols()).map(|c| v.get(r, c)).collect::<Vec<_>>();
        assert_eq!(row(3), [true, true, false, true, true]);
        assert_eq!(row(1), [true, true, true, false, false]);
        assert!(v.validate().is_ok());
    }

    #[test]
    fn tree_rejects_parent_after_child() {
        let err = Visibility::tree(0, 0, &[None, Some(2), Some(0)]).unwrap_err();
        assert!(err.to_string().contains("node 1 has parent 2"), "{err}");
    }

    #[test]
    fn validate_names_a_fully_masked_row() {
        let v = Visibility::blank(2, 3);
        assert!(v.validate().unwrap_err().to_string().contains("row 0"));
    }
}
