//! Grouped-query self-attention with RoPE (plus Qwen3's per-head q/k norms), under the Hugging
//! Face names `q_proj`, `k_proj`, `v_proj`, `o_proj`, `q_norm`, `k_norm`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Ops;

use crate::keys::{AttentionKeys, Qkv};
use crate::linear::Linear;
use crate::norm::RmsNorm;
use crate::rope_rows::RopeRows;

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
    pub fn of(c: &crate::ModelConfig) -> Self {
        Self {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            eps: c.rms_norm_eps,
        }
    }
}

/// The projections of one attention block.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
    #[module(skip)]
    pub shape: AttentionShape,
}

impl<B: Backend> Attention<B> {
    /// A skeleton over inputs of width `input` with output width `hidden`; `bias` adds q/k/v
    /// biases, `qk_norm` Qwen3's per-head norms.
    pub fn new(
        input: usize,
        hidden: usize,
        shape: AttentionShape,
        bias: bool,
        qk_norm: bool,
        device: &B::Device,
    ) -> Self {
        let (q, kv) = (
            shape.heads * shape.head_dim,
            shape.kv_heads * shape.head_dim,
        );
        let norm = || qk_norm.then(|| RmsNorm::new(shape.head_dim, shape.eps, device));
        Self {
            q_proj: Linear::new(input, q, bias, device),
            k_proj: Linear::new(input, kv, bias, device),
            v_proj: Linear::new(input, kv, bias, device),
            o_proj: Linear::new(q, hidden, false, device),
            q_norm: norm(),
            k_norm: norm(),
            shape,
        }
    }

    /// The rows' queries, keys and values (`[rows, heads | kv_heads, head_dim]`, q and k rotated,
    /// Qwen3's per-head norms applied) for already-normed rows `[rows, input]`.
    pub fn project(&self, input: Tensor<B, 2>, rope: &RopeRows<B>, ops: &dyn Ops<B>) -> Qkv<B> {
        let rows = input.dims()[0];
        let AttentionShape {
            heads,
            kv_heads,
            head_dim: hd,
            ..
        } = self.shape;
        let mut q = self
            .q_proj
            .forward(input.clone(), ops)
            .reshape([rows, heads, hd]);
        let mut k = self
            .k_proj
            .forward(input.clone(), ops)
            .reshape([rows, kv_heads, hd]);
        let v = self
            .v_proj
            .forward(input, ops)
            .reshape([rows, kv_heads, hd]);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward_heads(q, ops);
            k = kn.forward_heads(k, ops);
        }
        let q = ops.rope(q, &rope.cos, &rope.sin);
        let k = ops.rope(k, &rope.cos, &rope.sin);
        let scale = 1.0 / (hd as f64).sqrt();
        Qkv { q, k, v, scale }
    }

    /// `o_proj(attn(rope(q), rope(k), v))` for already-normed rows `[rows, input]`; `keys` decides
    /// what the rows attend over (the KV cache, or a training batch).
    pub fn forward(
        &self,
        input: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
        keys: &mut dyn AttentionKeys<B>,
        layer: usize,
    ) -> Tensor<B, 2> {
        let rows = input.dims()[0];
        let AttentionShape {
            heads, head_dim, ..
        } = self.shape;
        let attn = keys.attend(layer, self.project(input, rope, ops), ops);
        self.o_proj
            .forward(attn.reshape([rows, heads * head_dim]), ops)
    }
}
