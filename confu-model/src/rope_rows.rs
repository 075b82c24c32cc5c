//! Per-row RoPE tables for explicit position ids.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use confu_core::RopeConfig;

/// cos/sin `[rows, head_dim]`, one row per input row.
#[derive(Clone, Debug)]
pub struct RopeRows<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RopeRows<B> {
    /// The tables for `positions` under `rope` (with its precomputed `inv_freq`).
    pub fn new(
        rope: &RopeConfig,
        inv_freq: &[f32],
        positions: &[usize],
        device: &B::Device,
    ) -> Self {
        let (cos, sin) = rope.cos_sin(inv_freq, positions);
        let shape = [positions.len(), rope.head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Positions `0..time` for each of `batch` sequences laid end to end (training).
    pub fn batch(rope: &RopeConfig, batch: usize, time: usize, device: &B::Device) -> Self {
        let positions: Vec<usize> = (0..batch).flat_map(|_| 0..time).collect();
        Self::new(rope, &rope.inv_freq(), &positions, device)
    }
}
