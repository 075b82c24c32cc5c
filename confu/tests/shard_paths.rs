//! A sharded checkpoint's index may only name files inside the model folder: absolute paths,
//! `..` and links that resolve outside are refused before anything is opened.

use std::path::Path;

use backend_cpu::Cpu;
use confu_model::TargetModel;

fn sharded() -> tempfile::TempDir {
    let src = confu::reference::fixture_roots()[0].join("hf/llama3-tiny-bf16-sharded");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn point_first_shard_at(dir: &Path, target: &str) {
    let path = dir.join("model.safetensors.index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let map = v["weight_map"].as_object_mut().unwrap();
    let first = map.keys().next().unwrap().clone();
    map.insert(first, target.into());
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn shard_paths_outside_the_model_folder_are_refused() {
    let ok = sharded();
    TargetModel::<Cpu>::load(ok.path(), backend_cpu::ops(), &Default::default()).unwrap();

    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("x.safetensors");
    std::fs::copy(ok.path().join("model-00001-of-00002.safetensors"), &secret).unwrap();
    let escapes = [
        "../../x.safetensors".to_string(),
        secret.to_string_lossy().to_string(),
        "/etc/passwd".to_string(),
        "sub/../../x.safetensors".to_string(),
    ];
    let mut refused = 0;
    for target in &escapes {
        let d = sharded();
        point_first_shard_at(d.path(), target);
        let e = TargetModel::<Cpu>::load(d.path(), backend_cpu::ops(), &Default::default())
            .expect_err("an escaping shard path must be refused")
            .to_string();
        assert!(
            e.contains("weight_map") && (e.contains("outside") || e.contains("leaves")),
            "{target}: {e}"
        );
        refused += 1;
    }
    #[cfg(unix)]
    {
        let d = sharded();
        std::os::unix::fs::symlink(&secret, d.path().join("link.safetensors")).unwrap();
        point_first_shard_at(d.path(), "link.safetensors");
        let e = TargetModel::<Cpu>::load(d.path(), backend_cpu::ops(), &Default::default())
            .expect_err("a link out of the folder must be refused")
            .to_string();
        assert!(e.contains("outside"), "{e}");
        refused += 1;
    }
    println!("shard paths: {refused} escaping index entries refused, the in-folder index loads");
}
