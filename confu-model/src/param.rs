//! Parameters of the model modules before their values exist.
//!
//! A module is first built as a *skeleton* whose parameters know their shape but hold no memory
//! (burn's lazy `Param`); one of the walkers in [`crate::naming`] then gives every parameter its
//! value by name — from a checkpoint, from a seeded initialiser, or random for benchmarks. This is
//! how the shape of a module is written once (in its skeleton) and its tensor names once (its
//! field names).

use burn::module::{Param, ParamId};
use burn::tensor::{backend::Backend, Shape, Tensor};

/// A parameter of `shape` whose value a walker will provide (zeros if it never does).
pub fn lazy<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| Tensor::zeros(shape, device).set_require_grad(require_grad),
        device.clone(),
        true,
        Shape::new(shape),
    )
}
