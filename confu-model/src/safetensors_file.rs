//! Writing safetensors files: the one writer behind model export, draft-head export and the
//! self-distillation cache.

use std::collections::HashMap;
use std::path::Path;

use confu_core::{write_atomic, Error, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::naming::NamedValues;

/// One tensor to write: name, dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl NamedTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Self::from_le(
            name,
            Dtype::F32,
            shape,
            values.iter().flat_map(|x| x.to_le_bytes()),
        )
    }

    pub fn i64(name: impl Into<String>, shape: Vec<usize>, values: &[i64]) -> Self {
        Self::from_le(
            name,
            Dtype::I64,
            shape,
            values.iter().flat_map(|x| x.to_le_bytes()),
        )
    }

    pub fn u32(name: impl Into<String>, shape: Vec<usize>, values: &[u32]) -> Self {
        Self::from_le(
            name,
            Dtype::U32,
            shape,
            values.iter().flat_map(|x| x.to_le_bytes()),
        )
    }

    pub fn bool(name: impl Into<String>, shape: Vec<usize>, values: &[bool]) -> Self {
        Self::from_le(name, Dtype::BOOL, shape, values.iter().map(|&x| x as u8))
    }

    fn from_le(
        name: impl Into<String>,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: impl Iterator<Item = u8>,
    ) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
            bytes: bytes.collect(),
        }
    }
}

impl From<NamedValues> for NamedTensor {
    fn from(v: NamedValues) -> Self {
        Self::f32(v.name, v.shape, &v.values)
    }
}

/// Serialise `tensors` (with optional `metadata`) into `path`, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Format {
                    path: path.to_path_buf(),
                    msg: format!("tensor {}: {e}", t.name),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
