//! WGPU smoke test: a forward of a fixture model on the WGPU backend equals the CPU result.
//! CI runs it on Mesa's software Vulkan driver (installed by `scripts/setup.sh`).

use std::path::Path;

use burn::tensor::backend::Backend;
use confu_core::ToHost;
use confu_model::{LogitRows, TargetModel};

fn logits<B: Backend>(model: &TargetModel<B>, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(0, ids.len());
    let out = model
        .forward_causal(&mut cache, ids, LogitRows::All, &[])
        .unwrap();
    out.logits.unwrap().to_host()
}

#[test]
fn wgpu_forward_matches_cpu() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/hf/llama3-tiny");
    let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 460).collect();
    let cpu = TargetModel::<backend_cpu::Cpu>::load(&dir, backend_cpu::ops(), &Default::default())
        .unwrap();
    let want = logits(&cpu, &ids);

    let device = backend_wgpu::device("wgpu").unwrap();
    let gpu = TargetModel::<backend_wgpu::Wgpu>::load(&dir, backend_wgpu::ops(), &device).unwrap();
    let got = logits(&gpu, &ids);
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in got.iter().zip(&want) {
        num += (*a as f64 - *b as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    let r = (num / den).sqrt();
    println!("wgpu smoke llama3-tiny: logits rel_l2 vs cpu = {r:.2e}");
    assert_eq!(got.len(), want.len());
    assert!(r <= 1e-4, "WGPU logits differ from CPU: rel_l2 {r:.3e}");
}
