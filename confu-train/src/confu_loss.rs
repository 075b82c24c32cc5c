//! ConFu's training forward for one batch (METHOD.md §6, exactly): the contemplate rows of the
//! sampled anchors through the frozen target give `f_a`; the future MoE (routed on the head's
//! fused feature of the anchor) gives `e_{f,a}`; the head's own layer turns
//! `[RMSNorm(e_{f,a}) ; RMSNorm(fc f_a)]` at position `a + 1` into the slot's K/V; and the
//! training-time-test loss runs with every draft row seeing its anchor's slot (replication `l`).

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{index_tensor, PortableOps, Result};
use confu_draft::{DraftConfig, Eagle3};
use confu_model::{RopeRows, TargetModel};
use confu_moe::{ConfuOptions, ConfuParams};
use serde::{Deserialize, Serialize};

use crate::anchors::row_slots;
use crate::contemplate_pass::{future_vectors, AnchorInputs, ContemplateMode};
use crate::eagle3::{fuse, TttLoss, TttStep};
use crate::ttt_attention::{FutureSlots, TttAttention};
use crate::ttt_batch::TttBatch;

/// Learning-rate multiple of each trained part; 0 freezes a part.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartScales {
    pub head: f64,
    pub soft_prompt: f64,
    pub contemplate: f64,
    pub future: f64,
    /// The future slot's gains (with `future_slot_gain` on).
    pub slot_gain: f64,
}

impl Default for PartScales {
    fn default() -> Self {
        Self {
            head: 1.0,
            soft_prompt: 1.0,
            contemplate: 1.0,
            future: 1.0,
            slot_gain: 1.0,
        }
    }
}

/// Where the future vectors of a training forward come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FutureSource {
    /// The `[con]` rows through the frozen target (the method).
    Contemplate,
    /// Diagnostic: the target's real features of position `a + 1` (what the draft row after the
    /// anchor receives), an upper bound for what one slot can carry. Not usable for decoding.
    OracleNextFeatures,
}

/// What ConFu trains: the EAGLE-3 head and the ConFu parameters (soft prompt, both MoEs).
#[derive(Module, Debug)]
pub struct ConfuNet<B: Backend> {
    pub head: Eagle3<B>,
    pub confu: ConfuParams<B>,
    #[module(skip)]
    pub scales: PartScales,
}

/// The fixed parts of the forward.
pub struct ConfuForward<'a, B: Backend> {
    /// The frozen target (on the autodiff backend when training).
    pub frozen: &'a TargetModel<B>,
    pub options: &'a ConfuOptions,
    pub config: &'a DraftConfig,
    /// The token embedding table the head reads (the target's).
    pub embed: &'a Tensor<B, 2>,
    pub ttt_steps: usize,
    pub decay: f64,
    /// Future-prediction replication `l` (1: only the anchor's own row).
    pub replication: usize,
    pub contemplate: ContemplateMode,
    pub attention: TttAttention,
    pub future: FutureSource,
}

impl<B: Backend> ConfuForward<'_, B> {
    /// The loss of `batch` (made with its K/V kept) with `anchors` per sequence (ascending, at
    /// least one each); `zero_future` replaces every `f` by zeros (dev evaluation's contrast).
    pub fn loss(
        &self,
        net: &ConfuNet<B>,
        batch: TttBatch<B>,
        anchors: &[Vec<usize>],
        zero_future: bool,
    ) -> Result<(Tensor<B, 1>, Vec<TttStep>)> {
        let (o, c) = (self.options, self.config);
        let [b, t, w] = batch.taps.dims();
        let device = batch.taps.device();
        let per_seq = anchors.first().map_or(0, Vec::len);
        if per_seq == 0 || anchors.iter().any(|a| a.len() != per_seq) {
            return Err(confu_core::Error::invalid(
                "anchors",
                format!("{:?}", anchors.iter().map(Vec::len).collect::<Vec<_>>()),
                "every sequence needs the same number (>= 1) of anchors",
            ));
        }
        let fused = fuse(&net.head, batch.taps.clone());
        let d = fused.dims()[2];
        let rows: Vec<usize> = anchors
            .iter()
            .enumerate()
            .flat_map(|(s, a)| a.iter().map(move |&a| s * t + a))
            .collect();
        let rows = index_tensor(&rows, &device);
        let anchor_taps = batch
            .taps
            .clone()
            .reshape([b * t, w])
            .select(0, rows.clone());
        let anchor_fused = fused.clone().reshape([b * t, d]).select(0, rows);

        // Target side: `[con]` embeddings routed on the anchors' features, then `f` at each.
        let ops = PortableOps;
        let (con, _) =
            net.confu
                .contemplate
                .route(anchor_taps, o.top_k_expert, o.renormalize, &ops);
        let seqs: Vec<AnchorInputs<'_, B>> = batch
            .ids
            .iter()
            .zip(anchors)
            .zip(batch.kv)
            .map(|((ids, anchors), kv)| AnchorInputs { ids, anchors, kv })
            .collect();
        let mut f = match self.future {
            FutureSource::Contemplate => {
                future_vectors(self.frozen, &net.confu, o, &seqs, con, self.contemplate)?
            }
            FutureSource::OracleNextFeatures => {
                let next: Vec<usize> = anchors
                    .iter()
                    .enumerate()
                    .flat_map(|(s, a)| a.iter().map(move |&a| s * t + a + 1))
                    .collect();
                batch
                    .taps
                    .clone()
                    .reshape([b * t, w])
                    .select(0, index_tensor(&next, &device))
            }
        };
        if zero_future {
            f = f.zeros_like();
        }

        // Draft side: one future slot per anchor, at the position after the anchor's row.
        let (e_f, _) = net
            .confu
            .future
            .route(anchor_fused, o.top_k_expert, o.renormalize, &ops);
        let g = if f.dims()[1] == 3 * c.target_hidden_size {
            net.head.fuse(f, &ops)
        } else {
            f
        };
        let positions: Vec<usize> = anchors.iter().flatten().map(|&a| a + 1).collect();
        let rope = RopeRows::new(&c.rope, &c.rope.inv_freq(), &positions, &device);
        let (k, v) = net.head.slot_kv(g, e_f, &rope, &ops);
        let (k, v) = match &net.confu.slot_gain {
            Some(gain) => gain.apply(k, v),
            None => (k, v),
        };
        let slots = FutureSlots {
            k,
            v,
            per_seq,
            row_slot: anchors
                .iter()
                .map(|a| row_slots(a, t, self.replication))
                .collect(),
        };
        let ttt = TttLoss {
            c,
            embed: self.embed,
            ids: &batch.ids,
            valid: &batch.valid,
            steps: self.ttt_steps,
            decay: self.decay,
            attn: self.attention,
        };
        Ok(ttt.compute(&net.head, fused, batch.target, Some(slots)))
    }
}
