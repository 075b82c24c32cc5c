//! CPU overrides of the portable ops.

use confu_core::Ops;

use crate::Cpu;

/// The CPU op set. Currently the portable bodies; decode-shaped kernels slot in here.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuOps;

impl Ops<Cpu> for CpuOps {}
