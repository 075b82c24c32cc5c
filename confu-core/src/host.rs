//! Reading tensors back to the host: logits for sampling and tree building, losses for logs.

use burn::tensor::{backend::Backend, Tensor};

/// Host copies of float tensors, as `f32` whatever the backend's element type.
pub trait ToHost {
    /// All values in row-major order.
    fn to_host(self) -> Vec<f32>;
}

impl<B: Backend, const D: usize> ToHost for Tensor<B, D> {
    fn to_host(self) -> Vec<f32> {
        self.into_data()
            .convert::<f32>()
            .to_vec()
            .expect("a float tensor converts to f32")
    }
}

/// A `[rows, width]` tensor as one host vector per row.
pub fn host_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let width = t.dims()[1];
    t.to_host()
        .chunks(width.max(1))
        .map(<[f32]>::to_vec)
        .collect()
}
