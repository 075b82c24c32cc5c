//! Host index lists as burn index tensors (for `select`).

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

/// `indices` as a 1-D index tensor on `device`.
pub fn index_tensor<B: Backend>(indices: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(idx, [indices.len()]), device)
}

/// Token ids as a 1-D index tensor on `device`.
pub fn id_tensor<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 1, Int> {
    let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(idx, [ids.len()]), device)
}
