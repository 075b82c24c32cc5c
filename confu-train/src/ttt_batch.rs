//! One training batch for a draft head: the frozen target's pass over each sequence on the
//! inference backend (features, distributions restricted to the draft vocabulary, which positions
//! count), moved to the autodiff backend as tensors (no host round trip). ConFu also keeps each
//! sequence's cached K/V, over which its anchor rows attend.

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{index_tensor, Result};
use confu_model::{feature_taps, LogitRows, TargetModel};

use crate::contemplate_pass::LayerKv;

/// The draft vocabulary as a trainer needs it: the target id of every draft id, and whether each
/// target id is in the draft vocabulary.
#[derive(Clone, Debug)]
pub struct VocabMap {
    pub draft_ids: Vec<usize>,
    pub in_draft: Vec<bool>,
}

impl VocabMap {
    pub fn new(d2t: &[i64], t2d: &[bool]) -> Self {
        Self {
            draft_ids: d2t
                .iter()
                .enumerate()
                .map(|(i, &o)| (i as i64 + o) as usize)
                .collect(),
            in_draft: t2d.to_vec(),
        }
    }
}

/// One sequence through the frozen target.
struct TargetPass<B: Backend> {
    /// Features of positions `0..n−1`, `[n − 1, 3d]`.
    taps: Tensor<B, 2>,
    /// Logits restricted to the draft vocabulary, `[n, vd]`.
    restricted: Tensor<B, 2>,
    /// Whether the target's argmax at each position lies in the draft vocabulary.
    valid: Vec<bool>,
    kv: Vec<LayerKv<B>>,
}

fn target_pass<B: Backend>(
    target: &TargetModel<B>,
    seq: &[u32],
    vocab: &VocabMap,
) -> Result<TargetPass<B>> {
    let c = target.config();
    let mut cache = target.new_cache(0, seq.len());
    let out = target.forward_causal(
        &mut cache,
        seq,
        LogitRows::All,
        &feature_taps(c.num_hidden_layers),
    )?;
    let logits = out.logits.expect("requested");
    // Only the argmax per position comes to the host: whether it lies in the draft vocabulary.
    let argmax: Vec<i64> = logits
        .clone()
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec()
        .expect("int data");
    let valid = argmax.iter().map(|&a| vocab.in_draft[a as usize]).collect();
    let restricted = logits.select(1, index_tensor(&vocab.draft_ids, target.device()));
    // Features of positions 0..n-1 (the last position has no next token to pair with).
    let n = seq.len() - 1;
    let taps = Tensor::cat(out.taps, 1).narrow(0, 0, n);
    Ok(TargetPass {
        taps,
        restricted,
        valid,
        kv: cache.main_entries(),
    })
}

/// One batch of equal-length sequences with the frozen target's features and distributions.
pub struct TttBatch<B: Backend> {
    /// `[b, n − 1, 3d]`.
    pub taps: Tensor<B, 3>,
    /// `[b, n, vd]`.
    pub target: Tensor<B, 3>,
    pub valid: Vec<Vec<bool>>,
    pub ids: Vec<Vec<u32>>,
    /// Per sequence, the real rows' K/V per layer (only when asked for).
    pub kv: Vec<Vec<LayerKv<B>>>,
}

impl<B: Backend> TttBatch<B> {
    /// The frozen target's pass over `seqs` on the inference backend `T`, moved to `B` by
    /// `lift2`/`lift3`; `keep_kv` keeps each sequence's cached K/V.
    pub fn new<T: Backend>(
        model: &TargetModel<T>,
        seqs: &[&[u32]],
        vocab: &VocabMap,
        keep_kv: bool,
        lift: impl Fn(Tensor<T, 3>) -> Tensor<B, 3>,
    ) -> Result<Self> {
        let (mut taps, mut tgt, mut valid, mut ids, mut kv) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seq in seqs {
            let p = target_pass(model, seq, vocab)?;
            taps.push(p.taps.unsqueeze::<3>());
            tgt.push(p.restricted.unsqueeze::<3>());
            valid.push(p.valid);
            ids.push(seq.to_vec());
            if keep_kv {
                kv.push(p.kv.into_iter().map(|(k, v)| (lift(k), lift(v))).collect());
            }
        }
        Ok(Self {
            taps: lift(Tensor::cat(taps, 0)),
            target: lift(Tensor::cat(tgt, 0)),
            valid,
            ids,
            kv,
        })
    }
}
