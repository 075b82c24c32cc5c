//! Keeping freed activation buffers for reuse instead of handing them back to the OS.
//!
//! A forward pass allocates and frees its activations op by op. glibc serves blocks above 128 KB
//! (a 128-token prefill's activations of a 256-wide model already) with fresh `mmap`s and unmaps
//! them on `free`, so every op's output pages are faulted in and zeroed by the kernel again: on
//! the testbed that was a third of a prefill (`docs/performance.md`). With the thresholds raised,
//! freed blocks stay in the heap and the next op reuses them.

/// Blocks up to this size come from the heap (glibc's largest allowed threshold on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Freed memory at the top of the heap is returned to the OS only beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 512 << 20;

/// Raises glibc's mmap and trim thresholds for the whole process, once; returns whether they
/// were set. A no-op elsewhere (other allocators reuse freed blocks by themselves). Programs call
/// it at startup: the `confu` CLI does; it is process-wide, so a library leaves it to its caller.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::OnceLock;
        static SET: OnceLock<bool> = OnceLock::new();
        // SAFETY: mallopt only changes allocator parameters; it is called once, at startup.
        *SET.get_or_init(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
