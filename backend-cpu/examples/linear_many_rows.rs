//! Times `CpuOps::linear` against burn-flex's GEMM for prefill-sized row counts on the testbed's
//! and a 2048-wide model's layer shapes (a scratch measurement for docs/performance.md;
//! `cargo run --release -p backend-cpu --example linear_many_rows`).
use std::time::Instant;

use backend_cpu::{on_pool, Cpu, CpuDevice, CpuOps};
use burn::tensor::{Distribution, Tensor};
use confu_core::{Ops, PortableOps};

fn time(f: impl Fn()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..5 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / 5.0);
    }
    best
}

fn main() {
    on_pool(|| {
        let dev = CpuDevice::default();
        // `-- OUT INNER ROWS` times one shape only (for a profiler).
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if let [out, inner, rows] = args[..] {
            let w = Tensor::<Cpu, 2>::random([out, inner], Distribution::Default, &dev);
            let x = Tensor::<Cpu, 2>::random([rows, inner], Distribution::Default, &dev);
            for _ in 0..(20_000_000_000 / (2 * rows * out * inner)).max(1) {
                let _ = CpuOps.linear(x.clone(), &w);
            }
            return;
        }
        for (out, inner) in [
            (768, 256),
            (256, 768),
            (4096, 256),
            (2048, 2048),
            (5632, 2048),
            (2048, 5632),
        ] {
            let w = Tensor::<Cpu, 2>::random([out, inner], Distribution::Default, &dev);
            for rows in [17, 32, 128] {
                let x = Tensor::<Cpu, 2>::random([rows, inner], Distribution::Default, &dev);
                let ours = time(|| {
                    let _ = CpuOps.linear(x.clone(), &w);
                });
                let flex = time(|| {
                    let _ = PortableOps.linear(x.clone(), &w);
                });
                let gflop = 2.0 * (rows * out * inner) as f64 / 1e9;
                println!(
                    "{out}x{inner} rows {rows}: ours {:.1} GFLOP/s, burn-flex {:.1} GFLOP/s ({:.2}x)",
                    gflop / ours,
                    gflop / flex,
                    flex / ours
                );
            }
        }
    });
}
