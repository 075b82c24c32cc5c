//! One decoder layer of the target: pre-norm grouped-query attention with RoPE (plus Qwen3's
//! per-head q/k norms), then a pre-norm SwiGLU MLP, each added to the residual stream.
//!
//! ```text
//! h  = x + o_proj(attn(rope(qn(q_proj(n1))), rope(kn(k_proj(n1))), v_proj(n1)))   n1 = rms(x)
//! y  = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))                             n2 = rms(h)
//! ```

use burn::tensor::{activation::silu, backend::Backend, Bool, Tensor};
use confu_core::{kv_cache::Region, DenseKvCache, Ops, Result};

use crate::config::{Architecture, ModelConfig};
use crate::weights::WeightSource;

/// Attention projections of one layer (`[out, in]` as in the checkpoint).
#[derive(Debug, Clone)]
pub struct Attention<B: Backend> {
    pub q_proj: Tensor<B, 2>,
    pub k_proj: Tensor<B, 2>,
    pub v_proj: Tensor<B, 2>,
    pub o_proj: Tensor<B, 2>,
    pub q_bias: Option<Tensor<B, 1>>,
    pub k_bias: Option<Tensor<B, 1>>,
    pub v_bias: Option<Tensor<B, 1>>,
    /// Qwen3's per-head RMSNorm weights on q and k.
    pub q_norm: Option<Tensor<B, 1>>,
    pub k_norm: Option<Tensor<B, 1>>,
}

/// SwiGLU MLP weights.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Tensor<B, 2>,
    pub up_proj: Tensor<B, 2>,
    pub down_proj: Tensor<B, 2>,
}

/// A decoder layer's weights.
#[derive(Debug, Clone)]
pub struct DecoderLayer<B: Backend> {
    pub input_norm: Tensor<B, 1>,
    pub attn: Attention<B>,
    pub post_attention_norm: Tensor<B, 1>,
    pub mlp: Mlp<B>,
}

/// Per-forward inputs shared by all layers.
pub struct LayerContext<'a, B: Backend> {
    pub ops: &'a dyn Ops<B>,
    pub cos: &'a Tensor<B, 2>,
    pub sin: &'a Tensor<B, 2>,
    pub hidden_mask: Option<&'a Tensor<B, 2, Bool>>,
    pub region: Region,
}

impl<B: Backend> DecoderLayer<B> {
    /// Load layer `i` under the Hugging Face names `model.layers.{i}.*`.
    pub fn load(src: &mut dyn WeightSource<B>, c: &ModelConfig, i: usize) -> Result<Self> {
        let p = format!("model.layers.{i}");
        let (d, hd) = (c.hidden_size, c.head_dim);
        let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        let bias =
            |src: &mut dyn WeightSource<B>, name: &str, n: usize| -> Result<Option<Tensor<B, 1>>> {
                if c.attention_bias {
                    Ok(Some(src.vector(&format!("{p}.self_attn.{name}.bias"), n)?))
                } else {
                    Ok(None)
                }
            };
        let qwen = c.architecture == Architecture::Qwen3;
        let attn = Attention {
            q_proj: src.matrix(&format!("{p}.self_attn.q_proj.weight"), [q, d])?,
            k_proj: src.matrix(&format!("{p}.self_attn.k_proj.weight"), [kv, d])?,
            v_proj: src.matrix(&format!("{p}.self_attn.v_proj.weight"), [kv, d])?,
            o_proj: src.matrix(&format!("{p}.self_attn.o_proj.weight"), [d, q])?,
            q_bias: bias(src, "q_proj", q)?,
            k_bias: bias(src, "k_proj", kv)?,
            v_bias: bias(src, "v_proj", kv)?,
            q_norm: qwen
                .then(|| src.vector(&format!("{p}.self_attn.q_norm.weight"), hd))
                .transpose()?,
            k_norm: qwen
                .then(|| src.vector(&format!("{p}.self_attn.k_norm.weight"), hd))
                .transpose()?,
        };
        let i_size = c.intermediate_size;
        Ok(Self {
            input_norm: src.vector(&format!("{p}.input_layernorm.weight"), d)?,
            attn,
            post_attention_norm: src.vector(&format!("{p}.post_attention_layernorm.weight"), d)?,
            mlp: Mlp {
                gate_proj: src.matrix(&format!("{p}.mlp.gate_proj.weight"), [i_size, d])?,
                up_proj: src.matrix(&format!("{p}.mlp.up_proj.weight"), [i_size, d])?,
                down_proj: src.matrix(&format!("{p}.mlp.down_proj.weight"), [d, i_size])?,
            },
        })
    }

    /// Run the layer on `x: [rows, hidden]`, writing this layer's K/V into `cache`.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        config: &ModelConfig,
        ctx: &LayerContext<'_, B>,
        cache: &mut DenseKvCache<B>,
        layer: usize,
    ) -> Tensor<B, 2> {
        let (ops, eps) = (ctx.ops, config.rms_norm_eps);
        let n1 = ops.rms_norm2(x.clone(), &self.input_norm, eps);
        let h = x + self
            .attn
            .forward(n1, &AttentionShape::of(config), ctx, cache, layer);
        let n2 = ops.rms_norm2(h.clone(), &self.post_attention_norm, eps);
        h + self.mlp.forward(n2, ops)
    }
}

/// Head layout of an attention block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Epsilon of the per-head q/k norms (Qwen3).
    pub eps: f64,
}

impl AttentionShape {
    /// The target's layout.
    pub fn of(c: &ModelConfig) -> Self {
        Self {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            eps: c.rms_norm_eps,
        }
    }
}

impl<B: Backend> Attention<B> {
    /// `o_proj(attn(rope(q), rope(k), v))` for already-normed input rows `[rows, in]`; writes K/V
    /// into `cache` at `layer` and attends over the cache's key slots with `ctx`'s mask.
    pub fn forward(
        &self,
        input: Tensor<B, 2>,
        shape: &AttentionShape,
        ctx: &LayerContext<'_, B>,
        cache: &mut DenseKvCache<B>,
        layer: usize,
    ) -> Tensor<B, 2> {
        let ops = ctx.ops;
        let rows = input.dims()[0];
        let AttentionShape {
            heads,
            kv_heads,
            head_dim: hd,
            eps,
        } = *shape;
        let project = |w: &Tensor<B, 2>, b: &Option<Tensor<B, 1>>| {
            let y = ops.linear(input.clone(), w);
            match b {
                Some(b) => y + b.clone().unsqueeze::<2>(),
                None => y,
            }
        };
        let mut q = project(&self.q_proj, &self.q_bias).reshape([rows, heads, hd]);
        let mut k = project(&self.k_proj, &self.k_bias).reshape([rows, kv_heads, hd]);
        let v = project(&self.v_proj, &self.v_bias).reshape([rows, kv_heads, hd]);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = ops.rms_norm3(q, qn, eps);
            k = ops.rms_norm3(k, kn, eps);
        }
        let q = ops.rope(q, ctx.cos, ctx.sin).swap_dims(0, 1);
        let k = ops.rope(k, ctx.cos, ctx.sin).swap_dims(0, 1);
        let v = v.swap_dims(0, 1);
        let (k_all, v_all) = cache.write_and_view(layer, ctx.region, k, v);
        let scale = 1.0 / (hd as f64).sqrt();
        let attn = ops.attention(q, k_all, v_all, ctx.hidden_mask.cloned(), scale);
        let attn = attn.swap_dims(0, 1).reshape([rows, heads * hd]);
        ops.linear(attn, &self.o_proj)
    }
}

impl<B: Backend> Mlp<B> {
    /// `down_proj(silu(gate_proj(x)) * up_proj(x))`.
    pub fn forward(&self, x: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        let gated = silu(ops.linear(x.clone(), &self.gate_proj)) * ops.linear(x, &self.up_proj);
        ops.linear(gated, &self.down_proj)
    }
}
