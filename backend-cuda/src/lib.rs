//! # backend-cuda
//!
//! The CUDA backend of confu: burn-cuda as the concrete burn backend, behind a probe. burn-cuda
//! panics inside cudarc when no driver is installed, so [`device`] first loads the CUDA driver
//! library itself, initialises it and counts devices, and returns a clear [`Error::Device`] when
//! any step fails. No kernel overrides yet.

use std::sync::Arc;

use confu_core::{Error, Ops, PortableOps, Result};

/// The concrete burn backend.
pub type Cuda = burn::backend::Cuda;

/// Its device type.
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// The ops the model should use on this backend.
pub fn ops() -> Arc<dyn Ops<Cuda>> {
    Arc::new(PortableOps)
}

/// Driver library names to try, most specific first.
const DRIVER_LIBS: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

/// Number of CUDA devices the driver reports, or why there are none.
pub fn probe() -> Result<usize> {
    let fail = |msg: String| Error::Device {
        device: "cuda".into(),
        msg,
    };
    let mut last_err = String::new();
    for name in DRIVER_LIBS {
        // SAFETY: loading the vendor driver runs its initialisers; that is what using CUDA means.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                type CuInit = unsafe extern "C" fn(u32) -> i32;
                type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
                // SAFETY: symbol types follow the CUDA driver API (CUresult is a C int).
                let count = unsafe {
                    let init: libloading::Symbol<CuInit> = lib
                        .get(b"cuInit\0")
                        .map_err(|e| fail(format!("{name}: {e}")))?;
                    let get_count: libloading::Symbol<CuDeviceGetCount> = lib
                        .get(b"cuDeviceGetCount\0")
                        .map_err(|e| fail(format!("{name}: {e}")))?;
                    let rc = init(0);
                    if rc != 0 {
                        return Err(fail(format!(
                            "cuInit failed with CUresult {rc} (no usable GPU or driver)"
                        )));
                    }
                    let mut n = 0i32;
                    let rc = get_count(&mut n);
                    if rc != 0 {
                        return Err(fail(format!("cuDeviceGetCount failed with CUresult {rc}")));
                    }
                    n
                };
                // Keep the driver loaded for the rest of the process, as cudarc expects.
                std::mem::forget(lib);
                return if count > 0 {
                    Ok(count as usize)
                } else {
                    Err(fail("the CUDA driver reports no devices".into()))
                };
            }
            Err(e) => last_err = format!("{name}: {e}"),
        }
    }
    Err(fail(format!(
        "the CUDA driver library could not be loaded ({last_err}); is an NVIDIA driver installed?"
    )))
}

/// Parse `cuda` or `cuda:N`, check that the driver and device `N` exist, and return the device.
pub fn device(spec: &str) -> Result<CudaDevice> {
    let index = match spec.split_once(':') {
        None if spec == "cuda" => 0,
        Some(("cuda", n)) => n.parse::<usize>().map_err(|_| Error::Device {
            device: spec.into(),
            msg: "expected cuda or cuda:N".into(),
        })?,
        _ => {
            return Err(Error::Device {
                device: spec.into(),
                msg: "expected cuda or cuda:N".into(),
            })
        }
    };
    let count = probe()?;
    if index >= count {
        return Err(Error::Device {
            device: spec.into(),
            msg: format!("only {count} CUDA device(s) present"),
        });
    }
    Ok(CudaDevice::new(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_errors() {
        assert!(device("cuda:abc")
            .unwrap_err()
            .to_string()
            .contains("cuda:abc"));
        assert!(device("gpu").is_err());
    }

    /// Without a GPU this is the "clear error, no panic" check; with one it checks the count.
    #[test]
    fn probe_reports_devices_or_a_clear_error() {
        match probe() {
            Ok(n) => {
                println!("cuda: {n} device(s)");
                assert!(device("cuda:0").is_ok());
                assert!(device(&format!("cuda:{n}"))
                    .unwrap_err()
                    .to_string()
                    .contains("only"));
            }
            Err(e) => {
                println!("cuda: {e}");
                assert!(e.to_string().contains("cuda"), "{e}");
                assert!(device("cuda:0").is_err());
            }
        }
    }
}
