//! # backend-cpu
//!
//! The CPU backend of confu: burn-flex (pure Rust, SIMD, rayon) as the concrete burn backend, the
//! device type, and [`CpuOps`], the CPU's overrides of [`confu_core::Ops`].

use std::sync::Arc;

use confu_core::{Error, Ops, Result};

mod gemv;

pub use gemv::CpuOps;

/// The concrete burn backend.
pub type Cpu = burn::backend::Flex;

/// Its device (there is one CPU device).
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// The ops the model should use on this backend.
pub fn ops() -> Arc<dyn Ops<Cpu>> {
    Arc::new(CpuOps)
}

/// Parse a `--device` value for this backend (`cpu`).
pub fn device(spec: &str) -> Result<CpuDevice> {
    match spec {
        "cpu" => Ok(CpuDevice::default()),
        other => Err(Error::Device {
            device: other.to_string(),
            msg: "the CPU backend only offers `cpu`".into(),
        }),
    }
}
