//! Bad input gets a clear error naming the culprit, never a panic.

use std::path::{Path, PathBuf};

use backend_cpu::Cpu;
use confu::{Engine, GenerationConfig};
use confu_core::SamplingParams;
use confu_model::TargetModel;

fn fixture() -> PathBuf {
    confu::reference::fixture_roots()[0].join("hf/llama3-tiny")
}

/// A scratch copy of the llama3-tiny fixture that a test may damage.
fn scratch_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    TargetModel::<Cpu>::load(dir, backend_cpu::ops(), &Default::default())
        .expect_err("loading should fail")
        .to_string()
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn missing_folder_and_missing_files_are_named() {
    let e = load_err(Path::new("/definitely/not/here"));
    assert!(
        e.contains("/definitely/not/here") && e.contains("not found"),
        "{e}"
    );

    let dir = scratch_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model.safetensors"), "{e}");

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn corrupt_safetensors_header_is_named() {
    let dir = scratch_copy();
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    // A header length far beyond the file.
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    std::fs::write(&path, b"{}").unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("not a valid safetensors"), "{e}");
}

#[test]
fn shape_contradicting_config_names_tensor_and_shapes() {
    let dir = scratch_copy();
    edit_config(dir.path(), |v| v["intermediate_size"] = 100.into());
    let e = load_err(dir.path());
    assert!(e.contains("model.layers.0.mlp.gate_proj.weight"), "{e}");
    assert!(e.contains("[192, 64]") && e.contains("[100, 64]"), "{e}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = scratch_copy();
    edit_config(dir.path(), |v| {
        v["architectures"] = serde_json::json!(["MambaForCausalLM"]);
        v["model_type"] = "mamba".into();
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("MambaForCausalLM") && e.contains("unsupported architecture"),
        "{e}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = scratch_copy();
    // Rewrite the checkpoint with the embedding stored as I32.
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    let embed_shape = vec![468usize, 64];
    let ints = vec![0u8; 468 * 64 * 4];
    for (name, view) in tensors.iter_mut() {
        if name == "model.embed_tokens.weight" {
            *view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::I32,
                embed_shape.clone(),
                &ints,
            )
            .unwrap();
        }
    }
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("I32"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_position_limit_is_refused() {
    let model =
        TargetModel::<Cpu>::load(&fixture(), backend_cpu::ops(), &Default::default()).unwrap();
    let limit = model.config().max_position_embeddings;
    let engine = Engine::new(model);
    let prompt = vec![5u32; limit + 3];
    let e = engine
        .generate(&prompt, &GenerationConfig::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_position_embeddings") && e.contains(&limit.to_string()),
        "{e}"
    );

    // Token ids outside the vocabulary are named too.
    let e = engine
        .generate(&[9999], &GenerationConfig::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("9999"), "{e}");
}

#[test]
fn bad_sampling_parameters_are_refused() {
    let model =
        TargetModel::<Cpu>::load(&fixture(), backend_cpu::ops(), &Default::default()).unwrap();
    let engine = Engine::new(model);
    let cases = [
        (
            SamplingParams {
                temperature: -0.5,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                temperature: 1.0,
                top_p: Some(0.0),
                ..Default::default()
            },
            "top-p",
        ),
        (
            SamplingParams {
                temperature: 1.0,
                top_p: Some(1.2),
                ..Default::default()
            },
            "top-p",
        ),
        (
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            "temperature",
        ),
    ];
    for (sampling, name) in cases {
        let config = GenerationConfig {
            sampling,
            ..Default::default()
        };
        let e = engine
            .generate(&[1, 2], &config, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
    }
}

fn draft_copy() -> tempfile::TempDir {
    let eagle = confu::reference::fixture_roots()[0].join("eagle3/llama3-tiny/draft");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(eagle).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn draft_err(dir: &Path) -> String {
    let target =
        TargetModel::<Cpu>::load(&fixture(), backend_cpu::ops(), &Default::default()).unwrap();
    confu_draft::Eagle3Head::load(dir, &target)
        .expect_err("loading should fail")
        .to_string()
}

#[test]
fn draft_heads_that_do_not_fit_the_target_are_refused() {
    let dir = draft_copy();
    edit_config(dir.path(), |v| v["hidden_size"] = 32.into());
    let e = draft_err(dir.path());
    assert!(e.contains("hidden") && e.contains("64"), "{e}");

    let dir = draft_copy();
    edit_config(dir.path(), |v| v["vocab_size"] = 500.into());
    let e = draft_err(dir.path());
    assert!(e.contains("vocab_size") && e.contains("468"), "{e}");
}

#[test]
fn draft_checkpoint_missing_a_tensor_is_named() {
    let dir = draft_copy();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "fc.weight")
        .collect();
    std::fs::write(&path, safetensors::serialize(kept, None).unwrap()).unwrap();
    let e = draft_err(dir.path());
    assert!(e.contains("fc.weight") && e.contains("missing"), "{e}");
}

#[test]
fn zero_tree_settings_are_refused() {
    let target =
        TargetModel::<Cpu>::load(&fixture(), backend_cpu::ops(), &Default::default()).unwrap();
    let head =
        std::sync::Arc::new(confu_draft::Eagle3Head::load(draft_copy().path(), &target).unwrap());
    for (tree, name) in [
        (
            confu_draft::TreeSettings {
                total_tokens: 0,
                depth: 3,
                top_k: 4,
            },
            "total_tokens",
        ),
        (
            confu_draft::TreeSettings {
                total_tokens: 10,
                depth: 3,
                top_k: 0,
            },
            "top_k",
        ),
    ] {
        let e = Engine::with_mode(
            target.clone(),
            confu::DraftMode::Eagle3 {
                head: head.clone(),
                tree,
            },
        )
        .expect_err("zero settings")
        .to_string();
        assert!(e.contains(name), "{e}");
    }
}
