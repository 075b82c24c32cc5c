//! The trainable Llama-architecture target: the same equations as `confu_model::TargetModel`
//! (pre-norm GQA attention with RoPE, SwiGLU MLP, untied head), written as a burn `Module` with
//! batched `[batch, time, features]` tensors so that burn's autodiff can train it, and exported in
//! the Hugging Face layout (`config.json` classic form + `model.safetensors`) that `confu-model`
//! and transformers load unchanged.

use confu_core::ToHost;
use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use confu_core::ops::portable::rms_norm;
use confu_core::{Error, Result, RopeScaling};
use confu_model::ModelConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One decoder layer's trainable weights (`[out, in]`, as in the checkpoint).
#[derive(Module, Debug)]
pub struct LmLayer<B: Backend> {
    pub input_norm: Param<Tensor<B, 1>>,
    pub q_proj: Param<Tensor<B, 2>>,
    pub k_proj: Param<Tensor<B, 2>>,
    pub v_proj: Param<Tensor<B, 2>>,
    pub o_proj: Param<Tensor<B, 2>>,
    pub post_attention_norm: Param<Tensor<B, 1>>,
    pub gate_proj: Param<Tensor<B, 2>>,
    pub up_proj: Param<Tensor<B, 2>>,
    pub down_proj: Param<Tensor<B, 2>>,
}

/// A trainable Llama LM.
#[derive(Module, Debug)]
pub struct TrainableLm<B: Backend> {
    pub embed_tokens: Param<Tensor<B, 2>>,
    pub layers: Vec<LmLayer<B>>,
    pub norm: Param<Tensor<B, 1>>,
    pub lm_head: Param<Tensor<B, 2>>,
}

/// A seeded N(0, std²) parameter.
pub fn normal<B: Backend, const D: usize>(
    rng: &mut ChaCha8Rng,
    shape: [usize; D],
    std: f32,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    use rand::Rng;
    let n: usize = shape.iter().product();
    // Box–Muller from the seeded stream, so that a seed gives the same model everywhere.
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random::<f32>());
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

/// A parameter of ones (norm weights).
pub fn ones<B: Backend>(n: usize, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::ones([n], device))
}

/// `x @ w^T` for batched `x: [b, t, in]`.
pub(crate) fn linear<B: Backend>(x: Tensor<B, 3>, w: &Param<Tensor<B, 2>>) -> Tensor<B, 3> {
    x.matmul(w.val().transpose().unsqueeze::<3>())
}

/// Rotate-half RoPE on `[b, heads, t, head_dim]` with `[1, 1, t, head_dim]` tables.
pub(crate) fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    x * cos.clone() + Tensor::cat(vec![x2.neg(), x1], 3) * sin.clone()
}

/// `[b, h, t, t]`, true where a query may not attend (a later position).
pub(crate) fn causal_hidden<B: Backend>(
    b: usize,
    h: usize,
    t: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let hidden: Vec<bool> = (0..t * t).map(|k| k % t > k / t).collect();
    Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [t, t]), device)
        .unsqueeze::<4>()
        .expand([b, h, t, t])
}

impl<B: Backend> TrainableLm<B> {
    /// Random initialisation: linear and embedding weights N(0, 0.02²), norms 1.
    pub fn init(c: &ModelConfig, seed: u64, device: &B::Device) -> Result<Self> {
        validate(c)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (d, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (q, kv) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let std = 0.02;
        let layers = (0..c.num_hidden_layers)
            .map(|_| LmLayer {
                input_norm: ones(d, device),
                q_proj: normal(&mut rng, [q, d], std, device),
                k_proj: normal(&mut rng, [kv, d], std, device),
                v_proj: normal(&mut rng, [kv, d], std, device),
                o_proj: normal(&mut rng, [d, q], std, device),
                post_attention_norm: ones(d, device),
                gate_proj: normal(&mut rng, [i, d], std, device),
                up_proj: normal(&mut rng, [i, d], std, device),
                down_proj: normal(&mut rng, [d, i], std, device),
            })
            .collect();
        Ok(Self {
            embed_tokens: normal(&mut rng, [v, d], std, device),
            layers,
            norm: ones(d, device),
            lm_head: normal(&mut rng, [v, d], std, device),
        })
    }

    /// Logits `[b, t, vocab]` for token ids `[b, t]`, causal attention from position 0.
    pub fn forward(&self, c: &ModelConfig, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let (d, h, kvh, hd) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
        );
        let eps = c.rms_norm_eps;
        let mut x = self
            .embed_tokens
            .val()
            .select(0, ids.reshape([b * t]))
            .reshape([b, t, d]);
        let positions: Vec<usize> = (0..t).collect();
        let (cos, sin) =
            confu_model::rope_tables::<B>(&c.rope, &c.rope.inv_freq(), &positions, &device);
        let (cos, sin) = (cos.unsqueeze::<4>(), sin.unsqueeze::<4>());
        let mask = causal_hidden::<B>(b, h, t, &device);
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let n = rms_norm(x.clone(), &l.input_norm.val(), eps);
            let q = linear(n.clone(), &l.q_proj)
                .reshape([b, t, h, hd])
                .swap_dims(1, 2);
            let k = linear(n.clone(), &l.k_proj)
                .reshape([b, t, kvh, hd])
                .swap_dims(1, 2);
            let v = linear(n, &l.v_proj)
                .reshape([b, t, kvh, hd])
                .swap_dims(1, 2);
            let (q, k) = (rope(q, &cos, &sin), rope(k, &cos, &sin));
            let group = h / kvh;
            let widen = |z: Tensor<B, 4>| {
                z.unsqueeze_dim::<5>(2)
                    .expand([b, kvh, group, t, hd])
                    .reshape([b, h, t, hd])
            };
            let (k, v) = (widen(k), widen(v));
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .mul_scalar(scale)
                .mask_fill(mask.clone(), f32::NEG_INFINITY);
            let a = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, t, h * hd]);
            x = x + linear(a, &l.o_proj);
            let m = rms_norm(x.clone(), &l.post_attention_norm.val(), eps);
            x = x + linear(
                silu(linear(m.clone(), &l.gate_proj)) * linear(m, &l.up_proj),
                &l.down_proj,
            );
        }
        linear(rms_norm(x, &self.norm.val(), eps), &self.lm_head)
    }

    /// Mean next-token cross-entropy over sequences `[b, t + 1]`.
    pub fn loss(&self, c: &ModelConfig, seqs: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, t1] = seqs.dims();
        let t = t1 - 1;
        let inputs = seqs.clone().slice([0..b, 0..t]);
        let targets = seqs.slice([0..b, 1..t1]).reshape([b * t]);
        let logits = self.forward(c, inputs).reshape([b * t, c.vocab_size]);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, targets)
    }

    /// Write `config.json` (classic form) and `model.safetensors` into `dir`, each atomically.
    pub fn export(&self, c: &ModelConfig, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
        let mut put = |name: String, t: Tensor<B, 2>| {
            let shape = t.dims().to_vec();
            tensors.insert(name, (shape, t.to_host()));
        };
        put("model.embed_tokens.weight".into(), self.embed_tokens.val());
        put("lm_head.weight".into(), self.lm_head.val());
        put("model.norm.weight".into(), self.norm.val().unsqueeze());
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            put(
                format!("{p}.input_layernorm.weight"),
                l.input_norm.val().unsqueeze(),
            );
            put(
                format!("{p}.post_attention_layernorm.weight"),
                l.post_attention_norm.val().unsqueeze(),
            );
            put(format!("{p}.self_attn.q_proj.weight"), l.q_proj.val());
            put(format!("{p}.self_attn.k_proj.weight"), l.k_proj.val());
            put(format!("{p}.self_attn.v_proj.weight"), l.v_proj.val());
            put(format!("{p}.self_attn.o_proj.weight"), l.o_proj.val());
            put(format!("{p}.mlp.gate_proj.weight"), l.gate_proj.val());
            put(format!("{p}.mlp.up_proj.weight"), l.up_proj.val());
            put(format!("{p}.mlp.down_proj.weight"), l.down_proj.val());
        }
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(name, (mut shape, data))| {
                // Norm weights were lifted to 2-D for the helper; store them 1-D as HF does.
                if shape.len() == 2 && shape[0] == 1 && name.ends_with("norm.weight") {
                    shape = vec![shape[1]];
                }
                (
                    name,
                    shape,
                    data.iter().flat_map(|f| f.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .expect("consistent sizes");
                (n.clone(), view)
            })
            .collect();
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let st = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Format {
            path: dir.join("model.safetensors"),
            msg: e.to_string(),
        })?;
        write_atomic(&dir.join("model.safetensors"), &st)?;
        let config = hf_config(c);
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&config)
                .expect("json")
                .as_bytes(),
        )
    }
}

/// The classic Hugging Face `config.json` for a Llama model of this shape.
pub fn hf_config(c: &ModelConfig) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope.theta,
        "rope_scaling": null,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
        "use_cache": true,
    });
    if let Some(b) = c.bos_token_id {
        v["bos_token_id"] = b.into();
    }
    if let Some(&e) = c.eos_token_ids.first() {
        v["eos_token_id"] = e.into();
    }
    v
}

fn validate(c: &ModelConfig) -> Result<()> {
    let bad = |field: &str, msg: &str| Error::Config {
        path: "training config".into(),
        field: field.into(),
        msg: msg.into(),
    };
    if c.architecture != confu_model::Architecture::Llama {
        return Err(bad("architecture", "only Llama targets are trained"));
    }
    if c.rope.scaling != RopeScaling::None {
        return Err(bad("rope_scaling", "training uses unscaled RoPE"));
    }
    if c.tie_word_embeddings || c.attention_bias {
        return Err(bad(
            "tie_word_embeddings / attention_bias",
            "trained targets are untied and bias-free",
        ));
    }
    Ok(())
}

/// Write a file so that it is either absent or complete: a temporary sibling, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
