//! The embedded default model: the testbed target and its EAGLE-3 head (`models/testbed/`, built
//! by `scripts/testbed.sh`), compiled into the binary so that `confu generate --prompt ...` works
//! from any directory with no download and no `--model`.
//!
//! The loaders read folders (and memory-map the weights), so the bytes are written once to a
//! cache folder named after their hash — `$CONFU_CACHE_DIR`, else `$XDG_CACHE_HOME/confu`, else
//! `~/.cache/confu`, else the system temp folder — and reused by every later run. The folder is
//! filled under a temporary name and renamed into place, so a killed first run never leaves a
//! half-written model behind.

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
];

/// Folders of the embedded target (HF layout) and of its EAGLE-3 head (official layout).
#[derive(Debug, Clone)]
pub struct DefaultModel {
    pub target: PathBuf,
    pub draft: PathBuf,
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
        draft: dir.join("draft"),
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
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    })
}

fn materialize(dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("cache folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!(
        "{}.tmp-{}",
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("testbed"),
        std::process::id()
    ));
    for (name, bytes) in FILES {
        let path = tmp.join(name);
        let folder = path.parent().expect("file inside the model folder");
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    if dir.exists() {
        // An incomplete folder from an older layout, or a concurrent run that just won the race.
        if is_complete(dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(());
        }
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if is_complete(dir) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}
