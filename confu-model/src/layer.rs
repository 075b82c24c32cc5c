//! One decoder layer of the target: pre-norm grouped-query attention with RoPE (plus Qwen3's
//! per-head q/k norms), then a pre-norm SwiGLU MLP, each added to the residual stream.
//!
//! ```text
//! h  = x + o_proj(attn(rope(qn(q_proj(n1))), rope(kn(k_proj(n1))), v_proj(n1)))   n1 = rms(x)
//! y  = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))                             n2 = rms(h)
//! ```

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::Ops;

use crate::attention::{Attention, AttentionShape};
use crate::config::{Architecture, ModelConfig};
use crate::keys::AttentionKeys;
use crate::mlp::Mlp;
use crate::norm::RmsNorm;
use crate::rope_rows::RopeRows;

/// A decoder layer under its Hugging Face names.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// A skeleton of the shape `c` describes.
    pub fn new(c: &ModelConfig, device: &B::Device) -> Self {
        let d = c.hidden_size;
        Self {
            input_layernorm: RmsNorm::new(d, c.rms_norm_eps, device),
            self_attn: Attention::new(
                d,
                d,
                AttentionShape::of(c),
                c.attention_bias,
                c.architecture == Architecture::Qwen3,
                device,
            ),
            post_attention_layernorm: RmsNorm::new(d, c.rms_norm_eps, device),
            mlp: Mlp::new(d, c.intermediate_size, device),
        }
    }

    /// Run layer `layer` on rows `x: [rows, hidden]`; `keys` decides what the rows attend over.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
        keys: &mut dyn AttentionKeys<B>,
        layer: usize,
    ) -> Tensor<B, 2> {
        let n1 = self.input_layernorm.forward(x.clone(), ops);
        let h = x + self.self_attn.forward(n1, rope, ops, keys, layer);
        let n2 = self.post_attention_layernorm.forward(h.clone(), ops);
        h + self.mlp.forward(n2, ops)
    }
}
