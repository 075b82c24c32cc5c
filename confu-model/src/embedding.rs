//! A token embedding table `[vocab, hidden]` (`weight`).

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::param::lazy;

/// Row lookup in a `[vocab, hidden]` table.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Embedding<B> {
    /// A skeleton of `vocab` rows of width `hidden`.
    pub fn new(vocab: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            weight: lazy([vocab, hidden], device),
        }
    }

    /// The rows of `ids` (already checked against the vocabulary): `[ids, hidden]`.
    pub fn forward(&self, ids: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.weight.val().select(0, ids)
    }
}
