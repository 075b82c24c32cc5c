//! Half-precision weights kept half precision on the CPU: a bf16 checkpoint is its own reference.
//! For every fixture target, a bf16 copy (the fixture's values rounded to bf16, or the fixture
//! itself when it is bf16) and an f32 copy of exactly the same values load side by side; the bf16
//! copy keeps its linear weights bf16 in memory, and its logits (decode-sized and prefill-sized
//! passes), greedy output and greedy EAGLE-3 output equal the f32 copy's bit for bit.

mod common;

use std::path::Path;
use std::sync::Arc;

use backend_cpu::Cpu;
use burn::tensor::DType;
use confu::reference::fixture_dirs;
use confu::{DraftMode, Engine, GenerationConfig};
use confu_core::{host_rows, ToHost};
use confu_draft::{Eagle3Head, TreeSettings};
use confu_model::{write_safetensors, LogitRows, NamedTensor, TargetModel};
use safetensors::{Dtype, SafeTensors};

/// Every tensor of the checkpoint in `dir` (single file or shards), as f32 values rounded to
/// bf16, with its name and shape.
fn bf16_values(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("model") || !name.ends_with(".safetensors") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (tensor, view) in st.tensors() {
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => panic!("{tensor}: fixture dtype {other:?}"),
            };
            let rounded = values
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect();
            out.push((tensor, view.shape().to_vec(), rounded));
        }
    }
    out
}

/// A copy of the fixture folder `dir` under `out` with the given tensors in one file, stored
/// as `dtype` (BF16 or F32; the values are exact in both).
fn write_copy(dir: &Path, out: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) {
    std::fs::create_dir_all(out).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") && !name.contains("index") {
            std::fs::copy(&path, out.join(&name)).unwrap();
        }
    }
    let named: Vec<NamedTensor> = tensors
        .iter()
        .map(|(name, shape, values)| match dtype {
            Dtype::BF16 => NamedTensor {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
                bytes: values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            },
            _ => NamedTensor::f32(name.clone(), shape.clone(), values),
        })
        .collect();
    write_safetensors(&out.join("model.safetensors"), &named, None).unwrap();
}

#[test]
fn bf16_weights_stay_bf16_and_decode_as_their_f32_widening() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = fixture_dirs("hf");
    assert!(!dirs.is_empty(), "no fixture targets found");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let tensors = bf16_values(&dir);
        let (half_dir, full_dir) = (
            tmp.path().join(&name),
            tmp.path().join(format!("{name}-f32")),
        );
        write_copy(&dir, &half_dir, &tensors, Dtype::BF16);
        write_copy(&dir, &full_dir, &tensors, Dtype::F32);
        let load = |d: &Path| TargetModel::<Cpu>::load(d, backend_cpu::ops(), &Default::default());
        let (half, full) = (load(&half_dir).unwrap(), load(&full_dir).unwrap());

        let layer = &half.weights().model.layers[0];
        assert_eq!(
            layer.self_attn.q_proj.weight.val().dtype(),
            DType::BF16,
            "{name}: linear weights stay bf16"
        );
        assert_eq!(layer.mlp.down_proj.weight.val().dtype(), DType::BF16);
        assert_eq!(
            full.weights().model.layers[0]
                .self_attn
                .q_proj
                .weight
                .val()
                .dtype(),
            DType::F32
        );

        let vocab = half.config().vocab_size as u32;
        // 5 rows take the GEMV, 24 rows the GEMM on widened weights.
        for rows in [5usize, 24] {
            let prompt: Vec<u32> = (0..rows as u32).map(|i| (i * 37 + 11) % vocab).collect();
            let logits = |m: &TargetModel<Cpu>| {
                let mut cache = m.new_cache(0, rows);
                let out = m
                    .forward_causal(&mut cache, &prompt, LogitRows::All, &[])
                    .unwrap();
                host_rows(out.logits.unwrap())
            };
            assert_eq!(logits(&half), logits(&full), "{name}: {rows}-row logits");
        }

        let config = GenerationConfig {
            max_new_tokens: 24,
            ..Default::default()
        };
        let mut prompts = common::prompts(vocab);
        prompts.truncate(2);
        let mut engines = vec![("vanilla", Engine::new(half.clone()))];
        if let Ok(head) = Eagle3Head::load(&common::draft_dir(), &half) {
            let tree = TreeSettings {
                total_tokens: 12,
                depth: 3,
                top_k: 3,
            };
            let mode = DraftMode::Eagle3 {
                head: Arc::new(head),
                tree,
            };
            engines.push(("eagle3", Engine::with_mode(half.clone(), mode).unwrap()));
        }
        let reference = Engine::new(full.clone());
        for prompt in &prompts {
            let want = reference.generate(prompt, &config, |_| {}).unwrap();
            for (label, engine) in &engines {
                let got = engine.generate(prompt, &config, |_| {}).unwrap();
                assert_eq!(
                    got.generated_ids, want.generated_ids,
                    "{name} {label}: bf16 greedy output differs from its f32 widening"
                );
            }
        }
        // The head's own embedding table comes from the target: still f32.
        let e = half.weights().model.embed_tokens.weight.val();
        assert_eq!(e.clone().dtype(), DType::F32);
        assert!(!e.to_host().is_empty());
        println!(
            "{name}: bf16 copy keeps bf16 linear weights; logits and {} greedy runs equal the f32 widening ... ok",
            prompts.len() * engines.len()
        );
    }
}
