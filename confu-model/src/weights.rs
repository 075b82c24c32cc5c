//! Reading weights from safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Files are memory-mapped; tensors are converted to `f32` on the
//! way in (F32, BF16 and F16 on disk), and every tensor's shape is checked against the shape the
//! configuration implies before it is used.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use confu_core::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

/// A checkpoint folder's weights, opened but not yet converted.
pub struct WeightFiles {
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name → index into `files`
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for WeightFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFiles")
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("tensors", &self.index.len())
            .finish()
    }
}

impl WeightFiles {
    /// Open `dir/model.safetensors`, or the shards named by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Format {
                path: index_path.clone(),
                msg: format!("not valid JSON: {e}"),
            })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Config {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    msg: "missing or not an object".into(),
                })?;
            let mut names: Vec<String> = map
                .values()
                .map(|f| {
                    f.as_str().map(str::to_string).ok_or_else(|| Error::Config {
                        path: index_path.clone(),
                        field: "weight_map".into(),
                        msg: format!("expected file names, got {f}"),
                    })
                })
                .collect::<Result<_>>()?;
            names.sort();
            names.dedup();
            for name in &names {
                check_inside(dir, &index_path, name)?;
            }
            names
        } else if single.exists() {
            vec!["model.safetensors".to_string()]
        } else {
            return Err(Error::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors and no model.safetensors.index.json in this folder",
                ),
            ));
        };

        if shard_names.is_empty() {
            return Err(Error::Config {
                path: index_path,
                field: "weight_map".into(),
                msg: "names no shard files".into(),
            });
        }
        Self::open_paths(shard_names.iter().map(|n| dir.join(n)).collect())
    }

    /// Open one safetensors file (e.g. a draft folder's `confu.safetensors`).
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_paths(vec![path.to_path_buf()])
    }

    fn open_paths(paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for path in paths {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only; checkpoints are not modified while a model loads.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let names = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::Format {
                    path: path.clone(),
                    msg: format!("not a valid safetensors file: {e}"),
                })?
                .1
                .tensors()
                .into_keys()
                .collect::<Vec<_>>();
            for n in names {
                index.insert(n, files.len());
            }
            files.push((path, mmap));
        }
        Ok(Self { files, index })
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The file a tensor lives in (or would, for error messages about a missing one).
    pub fn path_of(&self, name: &str) -> &Path {
        let i = self.index.get(name).copied().unwrap_or(0);
        &self.files[i].0
    }

    /// Read an integer tensor (`I64` or `I32` on disk) as `i64`, checking its shape.
    pub fn read_i64(&self, name: &str, shape: &[usize]) -> Result<Vec<i64>> {
        self.with_view(name, shape, |path, view| match view.dtype() {
            Dtype::I64 => Ok(view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect()),
            Dtype::I32 => Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
                .collect()),
            other => Err(Error::UnsupportedDtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?} (an integer tensor is expected here)"),
            }),
        })
    }

    /// Look up tensor `name`, check its shape and hand its view to `f`.
    fn with_view<T>(
        &self,
        name: &str,
        shape: &[usize],
        f: impl FnOnce(&Path, &safetensors::tensor::TensorView<'_>) -> Result<T>,
    ) -> Result<T> {
        let Some(&file) = self.index.get(name) else {
            return Err(Error::Tensor {
                path: self.files[0]
                    .0
                    .parent()
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
                name: name.to_string(),
                msg: "missing from the checkpoint".into(),
            });
        };
        let (path, mmap) = &self.files[file];
        let st = SafeTensors::deserialize(mmap).map_err(|e| Error::Format {
            path: path.clone(),
            msg: format!("not a valid safetensors file: {e}"),
        })?;
        let view = st.tensor(name).map_err(|e| Error::Tensor {
            path: path.clone(),
            name: name.to_string(),
            msg: e.to_string(),
        })?;
        if view.shape() != shape {
            return Err(Error::Tensor {
                path: path.clone(),
                name: name.to_string(),
                msg: format!(
                    "shape {:?} contradicts the configuration (config.json / confu.json), which implies {:?}",
                    view.shape(),
                    shape
                ),
            });
        }
        f(path, &view)
    }

    /// Read tensor `name` as `f32`, checking that its shape is `shape`.
    pub fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let values = self.read_f32_unchecked(name, shape)?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Tensor {
                path: self.path_of(name).to_path_buf(),
                name: name.to_string(),
                msg: format!("element {i} is {} (weights must be finite)", values[i]),
            });
        }
        Ok(values)
    }

    fn read_f32_unchecked(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.with_view(name, shape, |path, view| {
            let bytes = view.data();
            Ok(match view.dtype() {
                Dtype::F32 => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::BF16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::F16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::UnsupportedDtype {
                        path: path.to_path_buf(),
                        name: name.to_string(),
                        dtype: format!("{other:?}"),
                    })
                }
            })
        })
    }
    /// The on-disk dtype of tensor `name`, if the checkpoint has it.
    pub fn dtype_of(&self, name: &str) -> Option<Dtype> {
        let (_, mmap) = &self.files[*self.index.get(name)?];
        let (_, meta) = SafeTensors::read_metadata(mmap).ok()?;
        meta.tensors().get(name).map(|info| info.dtype)
    }

    /// The on-disk dtypes, for `inspect` (dtype name → tensor count).
    pub fn dtype_summary(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (path, mmap) in &self.files {
            if let Ok((_, meta)) = SafeTensors::read_metadata(mmap) {
                for info in meta.tensors().values() {
                    *counts.entry(format!("{:?}", info.dtype)).or_default() += 1;
                }
            } else {
                tracing::warn!("{}: unreadable header", path.display());
            }
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }
}

/// A shard name from an index must name a file inside the model folder: no absolute path, no
/// `..`, and no link that resolves outside it.
fn check_inside(dir: &Path, index_path: &Path, name: &str) -> Result<()> {
    use std::path::Component;
    let bad = |msg: &str| Error::Config {
        path: index_path.to_path_buf(),
        field: "weight_map".into(),
        msg: format!("shard `{name}` {msg}"),
    };
    let rel = Path::new(name);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad("leaves the model folder (absolute path or `..`)"));
    }
    if let (Ok(root), Ok(full)) = (dir.canonicalize(), dir.join(rel).canonicalize()) {
        if !full.starts_with(&root) {
            return Err(bad("resolves to a file outside the model folder"));
        }
    }
    Ok(())
}
