//! The embedded default model: the testbed target, its ConFu head (the ablation's ConFu full), the
//! EAGLE-3 control head it is compared with, and the corpus's dev prompts (`models/testbed/`, built
//! by `scripts/testbed.sh`), compiled into the binary so that `confu generate --prompt ...` and
//! `confu eval` work from any directory with no download and no `--model`.
//!
//! The loaders read folders (and memory-map the weights), so the bytes are written once to a
//! cache folder named after their hash — `$CONFU_CACHE_DIR`, else `$XDG_CACHE_HOME/confu`, else
//! `~/.cache/confu`, else the system temp folder — and reused by every later run. The folder is
//! filled under a temporary name and renamed into place, so a killed first run never leaves a
//! half-written model behind. A cached folder is used only when every file's *content* equals the
//! embedded bytes (a damaged file of the right size is rewritten); temporaries of runs that died
//! are removed; and concurrent first runs never remove each other's work (a damaged folder is
//! renamed aside before it is deleted, and losing a rename race to a complete folder is success).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use confu_core::{Error, Result};

macro_rules! testbed_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../models/testbed/",
                $name
            )) as &[u8],
        )
    };
}

/// Every embedded file, by its path inside the model folder.
const FILES: &[(&str, &[u8])] = &[
    testbed_file!("target/config.json"),
    testbed_file!("target/model.safetensors"),
    testbed_file!("target/tokenizer.json"),
    testbed_file!("draft/config.json"),
    testbed_file!("draft/model.safetensors"),
    testbed_file!("draft/log.json"),
    testbed_file!("confu/config.json"),
    testbed_file!("confu/model.safetensors"),
    testbed_file!("confu/confu.json"),
    testbed_file!("confu/confu.safetensors"),
    testbed_file!("confu/log.json"),
    testbed_file!("prompts-dev.jsonl"),
];

/// Folders of the embedded target (HF layout), its ConFu head (ConFu folder layout) and its EAGLE-3
/// head (official layout), and the embedded prompts (Spec-Bench format).
#[derive(Debug, Clone)]
pub struct DefaultModel {
    pub target: PathBuf,
    pub confu: PathBuf,
    pub eagle3: PathBuf,
    pub prompts: PathBuf,
}

/// Write the embedded model to the cache (once) and return its folders.
pub fn default_model() -> Result<DefaultModel> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, bytes) in FILES {
        name.hash(&mut h);
        bytes.hash(&mut h);
    }
    let dir = cache_root().join(format!("testbed-{:016x}", h.finish()));
    if !is_complete(&dir) {
        materialize(&dir)?;
    }
    Ok(DefaultModel {
        target: dir.join("target"),
        confu: dir.join("confu"),
        eagle3: dir.join("draft"),
        prompts: dir.join("prompts-dev.jsonl"),
    })
}

fn cache_root() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CONFU_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("confu")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("confu")))
        .unwrap_or_else(|| std::env::temp_dir().join("confu"))
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, bytes)| {
        let path = dir.join(name);
        std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64)
            && std::fs::read(&path).is_ok_and(|b| b == *bytes)
    })
}

/// Whether process `pid` is still running (unknown: assume it is).
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Remove `testbed-*.tmp-PID` and `*.stale-PID` folders left by runs that died.
fn remove_dead_temporaries(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .rsplit_once(".tmp-")
            .or_else(|| name.rsplit_once(".stale-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && !alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn materialize(dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("cache folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    remove_dead_temporaries(parent);
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("testbed");
    let pid = std::process::id();
    let tmp = parent.join(format!("{name}.tmp-{pid}"));
    let result = fill_and_publish(dir, &tmp, &parent.join(format!("{name}.stale-{pid}")));
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn fill_and_publish(dir: &Path, tmp: &Path, stale: &Path) -> Result<()> {
    for (name, bytes) in FILES {
        let path = tmp.join(name);
        let folder = path.parent().expect("file inside the model folder");
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    for _ in 0..8 {
        if is_complete(dir) {
            return Ok(());
        }
        if dir.exists() {
            // Damaged or incomplete: move it aside (atomic), then delete the aside copy, so that
            // a concurrent run is never left with a half-deleted folder.
            if std::fs::rename(dir, stale).is_ok() {
                let _ = std::fs::remove_dir_all(stale);
            }
            continue;
        }
        if std::fs::rename(tmp, dir).is_ok() {
            return Ok(());
        }
    }
    if is_complete(dir) {
        Ok(())
    } else {
        Err(Error::io(
            dir,
            std::io::Error::other(
                "could not publish the embedded model (concurrent runs kept replacing it)",
            ),
        ))
    }
}
