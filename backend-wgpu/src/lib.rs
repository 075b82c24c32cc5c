//! # backend-wgpu
//!
//! The WGPU backend of confu: burn's `wgpu` backend (WGSL shaders, any Vulkan/Metal/DX12/GL
//! adapter — including Mesa's software lavapipe/llvmpipe, which is what CI runs the smoke test on).
//! burn's SPIR-V `vulkan` flavour is deliberately not used: it crashed inside Mesa's lavapipe.
//! No kernel overrides yet: the portable ops run as burn's generated shaders.

use std::sync::Arc;

use confu_core::{Error, Ops, PortableOps, Result};

/// The concrete burn backend.
pub type Wgpu = burn::backend::Wgpu;

/// Its device type.
pub type WgpuDevice = burn::backend::wgpu::WgpuDevice;

/// The ops the model should use on this backend.
pub fn ops() -> Arc<dyn Ops<Wgpu>> {
    Arc::new(PortableOps)
}

/// Parse a `--device` value: `wgpu` (the best adapter), `wgpu:N` (the N-th discrete GPU),
/// `wgpu:integrated:N`, `wgpu:cpu` (a software adapter).
pub fn device(spec: &str) -> Result<WgpuDevice> {
    let bad = |msg: &str| Error::Device {
        device: spec.to_string(),
        msg: msg.to_string(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let index = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| bad("expected a device index after `:`"))
    };
    match parts.as_slice() {
        ["wgpu"] => Ok(WgpuDevice::DefaultDevice),
        ["wgpu", "cpu"] => Ok(WgpuDevice::Cpu),
        ["wgpu", "integrated", n] => Ok(WgpuDevice::IntegratedGpu(index(n)?)),
        ["wgpu", n] => Ok(WgpuDevice::DiscreteGpu(index(n)?)),
        _ => Err(bad("expected wgpu, wgpu:N, wgpu:integrated:N or wgpu:cpu")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_or_name_the_problem() {
        assert_eq!(device("wgpu").unwrap(), WgpuDevice::DefaultDevice);
        assert_eq!(device("wgpu:1").unwrap(), WgpuDevice::DiscreteGpu(1));
        assert_eq!(device("wgpu:cpu").unwrap(), WgpuDevice::Cpu);
        let e = device("wgpu:x").unwrap_err().to_string();
        assert!(e.contains("wgpu:x"), "{e}");
    }
}
