//! The target's architecture, read from a Hugging Face `config.json`.
//!
//! Both RoPE spellings are accepted: the classic `rope_theta` + `rope_scaling` that hub checkpoints
//! ship, and the newer `rope_parameters` object. Every missing or ill-typed field is reported with
//! the file and the field's name.

use std::path::{Path, PathBuf};

use confu_core::{Error, Result, RopeConfig, RopeScaling};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The architectures confu implements; they differ in a few switches of one model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// Llama 2/3.x: GQA, optional llama3 RoPE scaling, tied or untied head.
    Llama,
    /// Qwen3: Llama plus per-head RMSNorm on q and k and an explicit `head_dim`.
    Qwen3,
}

impl Architecture {
    const SUPPORTED: &'static str = "LlamaForCausalLM / llama, Qwen3ForCausalLM / qwen3";

    fn from_names(architectures: Option<&str>, model_type: Option<&str>) -> Option<Self> {
        match (architectures, model_type) {
            (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => Some(Self::Llama),
            (Some("Qwen3ForCausalLM"), _) | (None, Some("qwen3")) => Some(Self::Qwen3),
            _ => None,
        }
    }
}

/// Everything the target model needs to know about its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub rope: RopeConfig,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint declares (`torch_dtype` / `dtype`), for information.
    pub declared_dtype: Option<String>,
}

impl ModelConfig {
    /// Read and validate `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(&read_json_object(path)?, path)
    }

    /// Parse an already-read `config.json` object; `path` is only used in error messages.
    pub fn from_json(obj: &Map<String, Value>, path: &Path) -> Result<Self> {
        let f = Fields { obj, path };
        let arch_name = f
            .obj
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str());
        let model_type = f.obj.get("model_type").and_then(|m| m.as_str());
        let architecture = Architecture::from_names(arch_name, model_type).ok_or_else(|| {
            Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: arch_name
                    .or(model_type)
                    .unwrap_or("<none given>")
                    .to_string(),
                supported: Architecture::SUPPORTED.to_string(),
            }
        })?;

        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        for (name, v) in [
            ("hidden_size", hidden_size),
            ("num_attention_heads", num_attention_heads),
        ] {
            if v == 0 {
                return Err(f.err(name, "must be > 0"));
            }
        }
        let num_key_value_heads = f
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.err(
                        "head_dim",
                        format!(
                            "absent, and hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        if head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("{head_dim} must be even for RoPE")));
        }
        if let Some(act) = f.obj.get("hidden_act").and_then(|a| a.as_str()) {
            if act != "silu" {
                return Err(f.err(
                    "hidden_act",
                    format!("`{act}` is not supported (only silu)"),
                ));
            }
        }
        if f.opt_bool("mlp_bias")?.unwrap_or(false) {
            return Err(f.err("mlp_bias", "MLP biases are not supported"));
        }
        let rope = f.rope(head_dim)?;
        let config = Self {
            architecture,
            vocab_size: f.usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers: f.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention_bias: f.opt_bool("attention_bias")?.unwrap_or(false),
            rope,
            bos_token_id: f.opt_usize("bos_token_id")?.map(|b| b as u32),
            eos_token_ids: f.ids("eos_token_id")?,
            declared_dtype: f
                .obj
                .get("torch_dtype")
                .or_else(|| f.obj.get("dtype"))
                .and_then(|d| d.as_str())
                .map(str::to_string),
        };
        if !(config.rms_norm_eps.is_finite() && config.rms_norm_eps > 0.0) {
            return Err(f.err(
                "rms_norm_eps",
                format!("{} must be a finite number > 0", config.rms_norm_eps),
            ));
        }
        if !(config.rope.theta.is_finite() && config.rope.theta > 0.0) {
            return Err(f.err(
                "rope_theta",
                format!("{} must be a finite number > 0", config.rope.theta),
            ));
        }
        for (name, v) in [
            ("vocab_size", config.vocab_size),
            ("hidden_size", config.hidden_size),
            ("intermediate_size", config.intermediate_size),
            ("num_hidden_layers", config.num_hidden_layers),
            ("num_attention_heads", config.num_attention_heads),
        ] {
            if v == 0 {
                return Err(f.err(name, "must be > 0"));
            }
        }
        Ok(config)
    }

    /// Number of parameters the weights hold (the head counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let (d, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let mut attn = d * q + 2 * d * kv + q * d;
        if self.attention_bias {
            attn += q + 2 * kv;
        }
        if self.architecture == Architecture::Qwen3 {
            attn += 2 * self.head_dim;
        }
        let layer = attn + 3 * d * i + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers * layer + d + head
    }
}

/// Read a JSON file whose top level must be an object, naming the file on any failure.
pub fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: format!("not valid JSON: {e}"),
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(Error::Format {
            path: path.to_path_buf(),
            msg: "expected a JSON object".into(),
        }),
    }
}

/// Typed access to config fields with errors that name the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::Config {
            path: PathBuf::from(self.path),
            field: field.to_string(),
            msg: msg.into(),
        }
    }

    fn opt_usize_in(&self, obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}"))),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.opt_usize_in(self.obj, key)
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    fn opt_f64_in(&self, obj: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a number, got {v}"))),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.opt_f64_in(self.obj, key)
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected true or false, got {v}"))),
        }
    }

    /// A token id or a list of them (`eos_token_id` may be either).
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|n| n as u32)
                        .ok_or_else(|| self.err(key, format!("expected token ids, got {v}")))
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .map(|n| vec![n as u32])
                .ok_or_else(|| self.err(key, format!("expected a token id, got {v}"))),
        }
    }

    fn rope(&self, head_dim: usize) -> Result<RopeConfig> {
        // The newer form nests everything in `rope_parameters`; the classic one splits it.
        let (params, field) = match self.obj.get("rope_parameters") {
            Some(Value::Object(p)) => (Some(p), "rope_parameters"),
            Some(Value::Null) | None => match self.obj.get("rope_scaling") {
                Some(Value::Object(p)) => (Some(p), "rope_scaling"),
                Some(Value::Null) | None => (None, "rope_scaling"),
                Some(v) => {
                    return Err(self.err("rope_scaling", format!("expected an object, got {v}")))
                }
            },
            Some(v) => {
                return Err(self.err("rope_parameters", format!("expected an object, got {v}")))
            }
        };
        let theta = params
            .map(|p| self.opt_f64_in(p, "rope_theta"))
            .transpose()?
            .flatten()
            .or(self.opt_f64("rope_theta")?)
            .unwrap_or(10000.0) as f32;
        let scaling = match params {
            None => RopeScaling::None,
            Some(p) => {
                let kind = p
                    .get("rope_type")
                    .or_else(|| p.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("default");
                let num = |key: &str| -> Result<f32> {
                    self.opt_f64_in(p, key)?
                        .map(|x| x as f32)
                        .ok_or_else(|| self.err(&format!("{field}.{key}"), "missing"))
                };
                match kind {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num("factor")?,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: num("factor")?,
                        low_freq_factor: num("low_freq_factor")?,
                        high_freq_factor: num("high_freq_factor")?,
                        original_max_position_embeddings: self
                            .opt_usize_in(p, "original_max_position_embeddings")?
                            .ok_or_else(|| {
                                self.err(
                                    &format!("{field}.original_max_position_embeddings"),
                                    "missing",
                                )
                            })?,
                    },
                    other => {
                        return Err(self.err(
                            &format!("{field}.rope_type"),
                            format!("`{other}` is not supported (default, linear, llama3)"),
                        ))
                    }
                }
            }
        };
        Ok(RopeConfig {
            head_dim,
            theta,
            scaling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig> {
        let v: Value = serde_json::from_str(json).unwrap();
        ModelConfig::from_json(v.as_object().unwrap(), Path::new("config.json"))
    }

    const BASE: &str = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1"#;

    #[test]
    fn classic_and_new_rope_forms_agree() {
        let classic = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_theta": 500000.0,
            "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}}}"#
        ))
        .unwrap();
        let new = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_parameters": {{"rope_type": "llama3",
            "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32}}}}"#
        ))
        .unwrap();
        assert_eq!(classic.rope, new.rope);
        assert_eq!(classic.rope.theta, 500000.0);
        assert_eq!(classic.head_dim, 4);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(r#"{"architectures": ["GPT2LMHeadModel"]}"#).unwrap_err();
        assert!(e.to_string().contains("GPT2LMHeadModel"), "{e}");
        let e = parse(r#"{"model_type": "llama", "hidden_size": 8}"#).unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
        let e = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"rope_type": "yarn"}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rope_scaling.rope_type"), "{e}");
        let e = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "hidden_act": "gelu"}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("hidden_act"), "{e}");
        let e = parse(r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": "eight"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("hidden_size"), "{e}");
    }
}
