//! Times `CpuOps::linear` for 1..=8 input rows on the testbed's layer shapes (a scratch
//! measurement for docs/performance.md; `cargo run --release -p backend-cpu --example gemv_rows`).
use std::time::Instant;

use backend_cpu::{on_pool, Cpu, CpuDevice, CpuOps};
use burn::tensor::{Distribution, Tensor};
use confu_core::Ops;

fn main() {
    on_pool(|| {
        let dev = CpuDevice::default();
        for (out, inner) in [
            (512, 256),
            (768, 256),
            (256, 768),
            (4096, 256),
            (2048, 2048),
        ] {
            let w = Tensor::<Cpu, 2>::random([out, inner], Distribution::Default, &dev);
            let mut base = 0.0;
            for rows in [1, 2, 3, 4, 8] {
                let x = Tensor::<Cpu, 2>::random([rows, inner], Distribution::Default, &dev);
                let reps = (20_000_000 / (out * inner)).max(10);
                for _ in 0..reps / 10 {
                    let _ = CpuOps.linear(x.clone(), &w);
                }
                let t = Instant::now();
                for _ in 0..reps {
                    let _ = CpuOps.linear(x.clone(), &w);
                }
                let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
                if rows == 1 {
                    base = us;
                }
                println!("{out}x{inner} rows {rows}: {us:.1} us ({:.2}x)", us / base);
            }
        }
    });
}
