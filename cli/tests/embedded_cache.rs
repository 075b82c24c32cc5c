//! The embedded model's cache folder (class 9 of the robustness issue): concurrent first runs all
//! succeed and leave one folder and no temporaries; a cached file damaged in place (same size) is
//! detected by content and rewritten; temporaries of runs that died are cleaned up.

use std::path::Path;
use std::process::Command;

fn run(cache: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_confu"))
        .args([
            "generate",
            "--prompt",
            "fn",
            "--max-new-tokens",
            "2",
            "--vanilla",
        ])
        .env("CONFU_CACHE_DIR", cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_embedded_cache_survives_races_damage_and_dead_runs() {
    let cache = tempfile::tempdir().unwrap();
    // A temporary left by a run that died (no such process).
    let dead = cache.path().join("testbed-0000000000000000.tmp-4000000000");
    std::fs::create_dir_all(dead.join("target")).unwrap();
    std::fs::write(dead.join("target/model.safetensors"), b"partial").unwrap();

    let children: Vec<_> = (0..4).map(|_| run(cache.path())).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = entries(cache.path());
    assert_eq!(
        names.len(),
        1,
        "one model folder and nothing else: {names:?}"
    );
    assert!(names[0].starts_with("testbed-") && !names[0].contains(".tmp"));

    // Damage a cached file without changing its size: the next run must rewrite it.
    let weights = cache
        .path()
        .join(&names[0])
        .join("target/model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let mut bad = good.clone();
    let i = bad.len() - 5;
    bad[i] ^= 0x5a;
    std::fs::write(&weights, &bad).unwrap();
    let out = run(cache.path()).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&weights).unwrap() == good,
        "the damaged cache file was used as is"
    );
    assert_eq!(entries(cache.path()), names);
    println!("embedded cache: 4 concurrent first runs, a dead run's temporary and a damaged file handled");
}
