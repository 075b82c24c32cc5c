//! Numbers a user gives or a checkpoint holds never turn into garbage output: non-finite weights
//! are refused at load, non-finite logits stop generation with an error naming where, a tiny
//! temperature samples the greedy token (not token 0), and huge sizes saturate instead of
//! wrapping around.

use std::sync::Arc;

use backend_cpu::Cpu;
use confu::{DraftMode, Engine, GenerationConfig, StopReason};
use confu_core::SamplingParams;
use confu_draft::{Eagle3Head, TreeSettings};
use confu_model::{NamedTensor, TargetModel};

fn fixture() -> std::path::PathBuf {
    confu::reference::fixture_roots()[0].join("hf/llama3-tiny")
}

fn load(dir: &std::path::Path) -> confu_core::Result<TargetModel<Cpu>> {
    TargetModel::<Cpu>::load(dir, backend_cpu::ops(), &Default::default())
}

#[test]
fn non_finite_weights_are_refused_at_load() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(fixture()).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let path = dir.path().join("model.safetensors");
        let tensors = confu::reference::read_tensors(&path).unwrap();
        let out: Vec<NamedTensor> = tensors
            .into_iter()
            .map(|(n, t)| {
                let mut v = t.f32().unwrap().to_vec();
                if n == "model.layers.1.mlp.up_proj.weight" {
                    v[17] = bad;
                }
                NamedTensor::f32(n, t.shape().to_vec(), &v)
            })
            .collect();
        confu_model::write_safetensors(&path, &out, None).unwrap();
        let e = load(dir.path())
            .expect_err("a non-finite weight must be refused")
            .to_string();
        assert!(
            e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("element 17"),
            "{e}"
        );
    }
}

#[test]
fn tiny_temperatures_sample_the_greedy_token_and_huge_sizes_saturate() {
    let target = load(&fixture()).unwrap();
    let limit = target.config().max_position_embeddings;
    let prompt: Vec<u32> = vec![465, 317, 443, 397, 440];
    let engine = Engine::new(target.clone());
    let greedy = engine
        .generate(
            &prompt,
            &GenerationConfig {
                max_new_tokens: 12,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    for t in [1e-38f32, f32::MIN_POSITIVE, 1e-45] {
        let config = GenerationConfig {
            max_new_tokens: 12,
            sampling: SamplingParams {
                temperature: t,
                seed: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        let g = engine.generate(&prompt, &config, |_| {}).unwrap();
        assert_eq!(g.generated_ids, greedy.generated_ids, "temperature {t:e}");
    }

    // max_new_tokens near usize::MAX runs to the position limit, it does not wrap around.
    let vocab = target.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..limit as u32 - 40)
        .map(|i| (i * 13 + 5) % vocab)
        .collect();
    let config = GenerationConfig {
        max_new_tokens: usize::MAX,
        stop_at_eos: false,
        ..Default::default()
    };
    let g = engine.generate(&prompt, &config, |_| {}).unwrap();
    assert_eq!(g.stop_reason, StopReason::PositionLimit);
    assert!(
        g.generated_ids.len() + prompt.len() >= limit - 1,
        "{} tokens",
        g.generated_ids.len()
    );

    // So does a huge tree budget, with the output of plain decoding.
    let draft = confu::reference::fixture_models(
        &confu::reference::fixture_roots()[0].join("eagle3/llama3-tiny"),
    )
    .unwrap()
    .1;
    let head = Arc::new(Eagle3Head::load(&draft, &target).unwrap());
    let tree = TreeSettings {
        total_tokens: usize::MAX,
        depth: 4,
        top_k: 8,
    };
    let spec = Engine::with_mode(target, DraftMode::Eagle3 { head, tree }).unwrap();
    let s = spec.generate(&prompt, &config, |_| {}).unwrap();
    assert_eq!(s.generated_ids, g.generated_ids);
    println!(
        "numbers: tiny temperatures give the greedy output; usize::MAX new tokens and tree budget stop at the position limit after {} tokens",
        g.generated_ids.len()
    );
}

#[test]
fn non_finite_logits_stop_generation_with_an_error() {
    let c = load(&fixture()).unwrap().config().clone();
    let device = Default::default();
    let mut weights = confu_model::Llama::<Cpu>::random(&c, 1, &device).unwrap();
    let norm = weights.model.norm.weight.val();
    let mut v: Vec<f32> = norm.into_data().to_vec().unwrap();
    v[0] = f32::INFINITY;
    weights.model.norm.weight = burn::module::Param::from_tensor(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(v, [c.hidden_size]),
        &device,
    ));
    let target = TargetModel::from_module(c, weights, backend_cpu::ops(), &device);
    let e = Engine::new(target)
        .generate(&[5, 6, 7], &GenerationConfig::default(), |_| {})
        .expect_err("non-finite logits must stop generation")
        .to_string();
    assert!(e.contains("non-finite") && e.contains("prefill"), "{e}");
}
