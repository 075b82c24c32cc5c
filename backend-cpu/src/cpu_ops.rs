//! [`CpuOps`]: the CPU's overrides of [`confu_core::Ops`], where burn's general kernels are slower
//! at decode shapes or batch-dependent. Each is a kernel module of this crate: [`crate::gemv`]
//! (linear; many rows in `gemm`), [`crate::attention`], [`crate::rope`], [`crate::rowwise`]
//! (RMSNorm, SwiGLU), [`crate::cache_write`]; and [`crate::WarmPool`], the threads kept polling
//! between a decode loop's passes.

use burn::tensor::{Bool, Tensor};
use confu_core::Ops;
use confu_core::WarmThreads;

use crate::Cpu;

/// The CPU op set.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuOps;

impl Ops<Cpu> for CpuOps {
    fn warm_threads(&self) -> Option<Box<dyn WarmThreads>> {
        crate::polling_setting()
            .unwrap_or(true)
            .then(|| Box::new(crate::WarmPool::new()) as _)
    }

    fn linear(&self, x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
        crate::gemv::linear(x, w)
    }

    fn keeps_half_weights(&self) -> bool {
        true
    }

    fn rms_norm2(&self, x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 1>, eps: f64) -> Tensor<Cpu, 2> {
        crate::rowwise::rms_norm(&x, w, eps)
            .unwrap_or_else(|| confu_core::ops::portable::rms_norm(x, w, eps))
    }

    fn rms_norm3(&self, x: Tensor<Cpu, 3>, w: &Tensor<Cpu, 1>, eps: f64) -> Tensor<Cpu, 3> {
        crate::rowwise::rms_norm(&x, w, eps)
            .unwrap_or_else(|| confu_core::ops::portable::rms_norm(x, w, eps))
    }

    fn swiglu(&self, gate: Tensor<Cpu, 2>, up: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
        crate::rowwise::swiglu(&gate, &up)
            .unwrap_or_else(|| confu_core::ops::portable::swiglu(gate, up))
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
