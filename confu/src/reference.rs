//! Reference data produced outside confu (Hugging Face transformers, the official EAGLE code):
//! discovering fixture folders and reading their tensors. Used by the test suites, and by anyone
//! checking confu against their own reference runs laid out the same way.
//!
//! Fixture roots are `../shared/fixtures` next to the workspace (or `$CONFU_FIXTURES`), plus every
//! root in the colon-separated `$CONFU_EXTRA_FIXTURES`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use confu_core::{Error, Result};
use confu_draft::TreeSettings;
use safetensors::{Dtype, SafeTensors};

/// A tensor read from a reference file, kept on the host.
#[derive(Clone, Debug, PartialEq)]
pub enum RefTensor {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
    Bool { shape: Vec<usize>, data: Vec<bool> },
}

impl RefTensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            RefTensor::F32 { shape, .. }
            | RefTensor::I64 { shape, .. }
            | RefTensor::Bool { shape, .. } => shape,
        }
    }

    /// Float data, or an error naming the tensor's actual type.
    pub fn f32(&self) -> Result<&[f32]> {
        match self {
            RefTensor::F32 { data, .. } => Ok(data),
            other => Err(Error::shape(
                "reference tensor",
                format!("expected F32, got {:?}", other.shape()),
            )),
        }
    }

    /// Integer data.
    pub fn i64(&self) -> Result<&[i64]> {
        match self {
            RefTensor::I64 { data, .. } => Ok(data),
            other => Err(Error::shape(
                "reference tensor",
                format!("expected I64, got {:?}", other.shape()),
            )),
        }
    }

    /// Boolean data.
    pub fn bools(&self) -> Result<&[bool]> {
        match self {
            RefTensor::Bool { data, .. } => Ok(data),
            other => Err(Error::shape(
                "reference tensor",
                format!("expected BOOL, got {:?}", other.shape()),
            )),
        }
    }

    /// Integer data as token ids.
    pub fn ids(&self) -> Result<Vec<u32>> {
        Ok(self.i64()?.iter().map(|&v| v as u32).collect())
    }
}

/// Read every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, RefTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: format!("not a valid safetensors file: {e}"),
    })?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let b = view.data();
        let t = match view.dtype() {
            Dtype::F32 => RefTensor::F32 {
                shape,
                data: b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            },
            Dtype::I64 => RefTensor::I64 {
                shape,
                data: b
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            },
            Dtype::BOOL => RefTensor::Bool {
                shape,
                data: b.iter().map(|&x| x != 0).collect(),
            },
            other => {
                return Err(Error::UnsupportedDtype {
                    path: path.to_path_buf(),
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// The fixture folders of `kind` (`eagle3`, `confu`, …) that describe a case (`meta.json`), in
/// every fixture root.
pub fn fixture_folders(kind: &str) -> Vec<PathBuf> {
    fixture_dirs(kind)
        .into_iter()
        .filter(|d| d.join("meta.json").exists())
        .collect()
}

/// The target and draft folders a fixture folder's `meta.json` names (`target`, `draft`, paths
/// relative to the fixture folder).
pub fn fixture_models(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let field = |k: &str| {
        meta[k]
            .as_str()
            .map(|p| dir.join(p))
            .ok_or_else(|| Error::Config {
                path: path.clone(),
                field: k.into(),
                msg: "missing or not a string".into(),
            })
    };
    Ok((field("target")?, field("draft")?))
}

/// Relative L2 distance `||a - b|| / ||b||`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The fixture roots in use: the shared fixtures and every `$CONFU_EXTRA_FIXTURES` root.
pub fn fixture_roots() -> Vec<PathBuf> {
    let mut roots = vec![match std::env::var_os("CONFU_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }];
    if let Some(extra) = std::env::var_os("CONFU_EXTRA_FIXTURES") {
        roots.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    roots
}

/// Every folder directly under `<root>/<kind>/` of every root in use, sorted per root.
pub fn fixture_dirs(kind: &str) -> Vec<PathBuf> {
    fixture_dirs_in(&fixture_roots(), kind)
}

/// Every folder directly under `<root>/<kind>/` of each of `roots`, sorted per root.
pub fn fixture_dirs_in(roots: &[PathBuf], kind: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root.join(kind)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

/// The tree of a fixture case's `settings` (`total_token`, `depth`, `top_k`, as the official
/// EAGLE code names them).
pub fn fixture_tree(settings: &serde_json::Value) -> std::result::Result<TreeSettings, String> {
    let n = |k: &str| {
        settings[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("settings.{k} is missing"))
    };
    Ok(TreeSettings {
        total_tokens: n("total_token")?,
        depth: n("depth")?,
        top_k: n("top_k")?,
    })
}
