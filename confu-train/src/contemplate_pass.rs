//! The target side of ConFu's training forward (METHOD.md §6, steps 1–2): the frozen target on
//! the autodiff backend computes the future vector `f_a` at the `[con]` row of every sampled
//! anchor `a`, so that gradients flow *through* the target into the soft prompt and the
//! contemplate MoE while the target itself takes none.
//!
//! The efficient form runs the soft prompt once per batch and then, per sequence, one pass of its
//! `A` anchor rows over the real rows' K/V that the plain (inference-backend) pass already cached:
//! `s + A` rows instead of `2N`. The naive form — one plain forward per anchor over
//! `[soft prompt | x_0..x_a | [con]]` with an explicit mask — is the reference tests compare with.

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{kv_cache::Region, PortableOps, Result, Visibility};
use confu_model::naming::Copied;
use confu_model::{ForwardRequest, Llama, LogitRows, ModelInput, TargetModel};
use confu_moe::{ConfuOptions, ConfuParams};

/// One layer's cached `(k, v)`, `[kv_heads, rows, head_dim]`.
pub type LayerKv<B> = (Tensor<B, 3>, Tensor<B, 3>);

/// How the `[con]` rows of a batch are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContemplateMode {
    /// Soft prompt once per batch, then one pass of the anchor rows per sequence over the
    /// cached real rows.
    Anchors,
    /// One plain forward per anchor over soft prompt, prefix and `[con]` (the reference).
    Naive,
}

/// The frozen target on the autodiff backend: it passes gradients to its inputs, takes none.
pub fn frozen_on_autodiff<B: Backend>(target: &TargetModel<B>) -> Result<TargetModel<Autodiff<B>>> {
    let c = target.config();
    let device = target.device();
    let module = Llama::<Autodiff<B>>::from_values(c, &mut Copied::of(target.weights()), device)?;
    Ok(TargetModel::from_module(
        c.clone(),
        module.no_grad(),
        Arc::new(PortableOps),
        device,
    ))
}

/// One sequence's inputs to the contemplate rows.
pub struct AnchorInputs<'a, B: Backend> {
    /// The sequence's tokens.
    pub ids: &'a [u32],
    /// Its anchors, ascending.
    pub anchors: &'a [usize],
    /// The real rows' cached K/V per layer (used by [`ContemplateMode::Anchors`]).
    pub kv: Vec<LayerKv<B>>,
}

/// `f` at every anchor's `[con]` row: `[Σ anchors, width]` in sequence order, anchor order.
/// `embeddings: [Σ anchors, d]` are the `[con]` input embeddings (the contemplate MoE's output,
/// routed on each anchor's feature).
pub fn future_vectors<B: Backend>(
    frozen: &TargetModel<B>,
    params: &ConfuParams<B>,
    options: &ConfuOptions,
    seqs: &[AnchorInputs<'_, B>],
    embeddings: Tensor<B, 2>,
    mode: ContemplateMode,
) -> Result<Tensor<B, 2>> {
    let s = options.soft_prompt_len;
    let taps = options.future_taps(frozen.config().num_hidden_layers);
    let soft = params.soft_prompt.val();
    let mut out = Vec::new();
    let mut row = 0;
    let soft_kv = match mode {
        ContemplateMode::Anchors => {
            let mut cache = frozen.new_cache(s, 0);
            let positions: Vec<usize> = (0..s).collect();
            frozen.forward(
                &mut cache,
                ForwardRequest {
                    input: ModelInput::Embeds(soft.clone()),
                    positions: &positions,
                    visibility: &Visibility::soft_prompt(s, 0),
                    logits: LogitRows::None,
                    taps: &[],
                    region: Region::Reserved,
                },
            )?;
            Some(cache.reserved_entries())
        }
        ContemplateMode::Naive => None,
    };
    for seq in seqs {
        let a = seq.anchors.len();
        let con = embeddings.clone().narrow(0, row, a);
        row += a;
        match &soft_kv {
            Some(soft_kv) => {
                let n = seq.ids.len();
                let mut cache = frozen.new_cache(s, n + a);
                cache.install_reserved(soft_kv)?;
                cache.append_entries(&seq.kv)?;
                let positions: Vec<usize> = seq
                    .anchors
                    .iter()
                    .map(|&p| options.con_position(p))
                    .collect();
                let visibility = Visibility::anchor_rows(s, s, n, seq.anchors)?;
                let f = frozen.forward(
                    &mut cache,
                    ForwardRequest {
                        input: ModelInput::Embeds(con),
                        positions: &positions,
                        visibility: &visibility,
                        logits: LogitRows::None,
                        taps: &taps,
                        region: Region::Main,
                    },
                )?;
                out.push(Tensor::cat(f.taps, 1));
            }
            None => {
                for (i, &anchor) in seq.anchors.iter().enumerate() {
                    let prefix = &seq.ids[..=anchor];
                    let rows = s + prefix.len() + 1;
                    let input = Tensor::cat(
                        vec![
                            soft.clone(),
                            frozen.embed(prefix)?,
                            con.clone().narrow(0, i, 1),
                        ],
                        0,
                    );
                    let mut positions: Vec<usize> = (0..s).chain(0..prefix.len()).collect();
                    positions.push(options.con_position(anchor));
                    let mut vis = Visibility::blank(rows, rows);
                    for r in 0..s {
                        vis.allow_range(r, 0..r + 1);
                    }
                    for j in 0..prefix.len() {
                        vis.allow_range(s + j, s..s + j + 1);
                    }
                    vis.allow_range(rows - 1, 0..rows);
                    let mut cache = frozen.new_cache(0, rows);
                    let f = frozen.forward(
                        &mut cache,
                        ForwardRequest {
                            input: ModelInput::Embeds(input),
                            positions: &positions,
                            visibility: &vis,
                            logits: LogitRows::None,
                            taps: &taps,
                            region: Region::Main,
                        },
                    )?;
                    out.push(Tensor::cat(f.taps, 1).narrow(0, rows - 1, 1));
                }
            }
        }
    }
    Ok(Tensor::cat(out, 0))
}
