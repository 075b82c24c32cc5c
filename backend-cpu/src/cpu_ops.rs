//! [`CpuOps`]: the CPU's overrides of [`confu_core::Ops`], where burn's general kernels are slower
//! at decode shapes or batch-dependent. Each is a kernel module of this crate: [`crate::gemv`]
//! (linear with few rows), [`crate::attention`], [`crate::rope`], [`crate::cache_write`].

use burn::tensor::{Bool, Tensor};
use confu_core::Ops;

use crate::Cpu;

/// The CPU op set.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuOps;

impl Ops<Cpu> for CpuOps {
    fn linear(&self, x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
        crate::gemv::linear(x, w)
    }

    fn keeps_half_weights(&self) -> bool {
        true
    }

    fn rope(
        &self,
        x: Tensor<Cpu, 3>,
        cos: &Tensor<Cpu, 2>,
        sin: &Tensor<Cpu, 2>,
    ) -> Tensor<Cpu, 3> {
        crate::rope::rope(x, cos, sin)
    }

    fn write_slots(
        &self,
        dst: Tensor<Cpu, 3>,
        start: usize,
        rows: Tensor<Cpu, 3>,
    ) -> Tensor<Cpu, 3> {
        crate::cache_write::write_slots(dst, start, rows)
    }

    fn attention(
        &self,
        q: Tensor<Cpu, 3>,
        k: Tensor<Cpu, 3>,
        v: Tensor<Cpu, 3>,
        masked_out: Option<Tensor<Cpu, 2, Bool>>,
        scale: f64,
    ) -> Tensor<Cpu, 3> {
        crate::attention::attention(q, k, v, masked_out, scale)
    }
}
