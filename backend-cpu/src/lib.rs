//! # backend-cpu
//!
//! The CPU backend of confu: burn-flex (pure Rust, SIMD, rayon) as the concrete burn backend, the
//! device type, [`CpuOps`], the CPU's overrides of [`confu_core::Ops`], and [`WarmPool`], the
//! pool's workers kept polling while a decode loop runs.

use std::sync::Arc;

use confu_core::{Error, Ops, Result};

#[cfg(target_arch = "x86_64")]
mod ahead;
mod allocator;
mod attention;
mod cache_write;
mod cpu_ops;
mod exact_dot;
mod exp;
mod flex_view;
#[cfg(target_arch = "x86_64")]
mod gemm;
mod gemv;
mod lane_sums;
mod rope;
mod rowwise;
mod tiles;
mod tiles_avx512;
mod warm_pool;
mod weight_elem;

pub use allocator::keep_freed_memory;
pub use cpu_ops::CpuOps;
pub use gemv::GEMV_MAX_ROWS;
pub use warm_pool::{parse_poll, polling_setting, WarmPool, IDLE_LIMIT, POLL_VAR};

/// The concrete burn backend.
pub type Cpu = burn::backend::Flex;

/// Its device (there is one CPU device).
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// The ops the model should use on this backend.
pub fn ops() -> Arc<dyn Ops<Cpu>> {
    Arc::new(CpuOps)
}

/// Runs `work` on a worker thread of rayon's global pool and returns its result.
///
/// The kernels fork work onto that pool many times per decode step. Called from an outside thread,
/// each fork wakes the workers and parks the caller, and between forks the woken workers spin for
/// work while the caller runs the step's sequential parts: on a machine with few cores that is one
/// thread more than there are cores, and the scheduling cost exceeded the arithmetic of a small
/// model's step (`docs/performance.md`). Inside the pool the caller *is* a worker, so a fork costs a
/// deque push and the sequential parts run without a competing thread.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(work())));
    out.expect("the scope ran its only task")
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
