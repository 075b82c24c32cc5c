//! A ConFu draft folder that does not fit is refused with an error naming the culprit (file,
//! tensor or field, and the values), never a panic.

use std::path::Path;

use backend_cpu::Cpu;
use confu::reference::{fixture_dirs, fixture_models};
use confu::ConfuHead;
use confu_model::TargetModel;

fn fixture() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = confu::reference::fixture_folders("confu")
        .into_iter()
        .next()
        .expect("a confu fixture");
    fixture_models(&dir).unwrap()
}

fn draft_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture().1).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(draft: &Path, target_dir: &Path) -> String {
    let target =
        TargetModel::<Cpu>::load(target_dir, backend_cpu::ops(), &Default::default()).unwrap();
    ConfuHead::load(draft, &target)
        .expect_err("loading should fail")
        .to_string()
}

fn edit_options(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("confu.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Rewrite `confu.safetensors` through `f` (name, shape, f32 values) -> kept tensors.
fn edit_tensors(
    dir: &Path,
    f: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
) {
    let p = dir.join("confu.safetensors");
    let tensors = confu::reference::read_tensors(&p).unwrap();
    let out: Vec<confu_model::NamedTensor> = tensors
        .into_iter()
        .filter_map(|(n, t)| {
            let (s, v) = f(&n, t.shape().to_vec(), t.f32().unwrap().to_vec())?;
            Some(confu_model::NamedTensor::f32(n, s, &v))
        })
        .collect();
    confu_model::write_safetensors(&p, &out, None).unwrap();
}

#[test]
fn bad_confu_folders_name_the_culprit() {
    let target = fixture().0;
    let mut checked = 0;
    let mut expect = |dir: &Path, needles: &[&str]| {
        let e = load_err(dir, &target);
        for n in needles {
            assert!(e.contains(n), "expected {n:?} in: {e}");
        }
        checked += 1;
    };

    let d = draft_copy();
    edit_options(d.path(), |v| v["top_k_expert"] = 9.into());
    expect(d.path(), &["top_k_expert", "9", "confu.json"]);

    let d = draft_copy();
    edit_options(d.path(), |v| v["con_position"] = "before".into());
    expect(d.path(), &["before", "confu.json"]);

    let d = draft_copy();
    edit_options(d.path(), |v| v["n_experts"] = 8.into());
    expect(d.path(), &["n_experts"]);

    let d = draft_copy();
    edit_options(d.path(), |v| v["n_expert"] = 4.into());
    expect(
        d.path(),
        &["contemplate.router.weight", "[8, 192]", "[4, 192]"],
    );

    let d = draft_copy();
    edit_options(d.path(), |v| v["soft_prompt_len"] = 0.into());
    expect(d.path(), &["soft_prompt_len"]);

    let d = draft_copy();
    edit_tensors(d.path(), |n, s, v| {
        if n == "soft_prompt" {
            Some((vec![s[0], s[1] - 1], v[..s[0] * (s[1] - 1)].to_vec()))
        } else {
            Some((s, v))
        }
    });
    expect(
        d.path(),
        &["soft_prompt", "confu.safetensors", "[16, 63]", "[16, 64]"],
    );

    let d = draft_copy();
    edit_tensors(d.path(), |n, s, v| {
        (n != "future.router.weight").then_some((s, v))
    });
    expect(d.path(), &["future.router.weight", "missing"]);

    let d = draft_copy();
    edit_tensors(d.path(), |n, s, v| {
        if n == "contemplate.experts" {
            Some((vec![s[0] * s[1]], v))
        } else {
            Some((s, v))
        }
    });
    expect(d.path(), &["contemplate.experts"]);

    let d = draft_copy();
    std::fs::remove_file(d.path().join("confu.safetensors")).unwrap();
    expect(d.path(), &["confu.safetensors"]);

    // A ConFu folder made for a target of another width: the head's check names the field.
    let d = draft_copy();
    let cfg = d.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["hidden_size"] = 32.into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    expect(d.path(), &["hidden", "64"]);

    // A ConFu folder for another target: the head's shape check names the field.
    let other = fixture_dirs("hf").into_iter().find(|d| {
        let c = confu_model::ModelConfig::from_file(&d.join("config.json")).unwrap();
        c.hidden_size != 64
    });
    if let Some(other) = other {
        let e = load_err(&fixture().1, &other);
        assert!(e.contains("hidden"), "{e}");
        checked += 1;
    }
    println!("confu bad input: {checked} broken folders refused with the culprit named ... ok");
}
