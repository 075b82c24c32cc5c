//! Choosing the compute backend at run time from `--device`, among those compiled in.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use confu_core::{Error, Ops, Result};

/// Work that runs on whichever backend `--device` names.
pub trait Job {
    type Output;
    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<Self::Output>;
}

/// Run `job` on the backend named by `spec` (`cpu`, `wgpu[:N]`, `cuda[:N]`).
pub fn dispatch<J: Job>(spec: &str, job: J) -> Result<J::Output> {
    let family = spec.split(':').next().unwrap_or("");
    match family {
        "cpu" => job.run::<backend_cpu::Cpu>(backend_cpu::ops(), backend_cpu::device(spec)?),
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            {
                job.run::<backend_wgpu::Wgpu>(backend_wgpu::ops(), backend_wgpu::device(spec)?)
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = job;
                Err(not_built(spec, "wgpu"))
            }
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            {
                job.run::<backend_cuda::Cuda>(backend_cuda::ops(), backend_cuda::device(spec)?)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = job;
                Err(not_built(spec, "cuda"))
            }
        }
        _ => Err(Error::Device {
            device: spec.into(),
            msg: "expected cpu, wgpu[:N] or cuda[:N]".into(),
        }),
    }
}

#[allow(dead_code)]
fn not_built(spec: &str, feature: &str) -> Error {
    Error::Device {
        device: spec.into(),
        msg: format!("this binary was built without the `{feature}` feature; rebuild with `cargo build --release --features {feature}`"),
    }
}
