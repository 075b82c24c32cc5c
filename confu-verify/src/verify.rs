//! Scoring: one target forward that executes a [`RowLayout`], and the cache update after
//! acceptance.

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{index_tensor, kv_cache::Region, DenseKvCache, DraftTree, KvCache, Result};
use confu_model::{ForwardRequest, LogitRows, ModelInput, Tap, TargetModel};

use crate::row_layout::RowLayout;

/// What the target computed in one pass.
#[derive(Debug)]
pub struct Scores<B: Backend> {
    /// Logits of the layout's `logit_rows`, on the host, in that order.
    pub logits: Vec<Vec<f32>>,
    /// The requested taps of the layout's `feature_rows`, concatenated along features,
    /// `[feature rows, taps * hidden]` (`None` without taps).
    pub features: Option<Tensor<B, 2>>,
    /// Cache length before the pass.
    pub prefix_len: usize,
}

/// Run the target once over `layout`, appending its rows to `cache`. `input` holds the rows'
/// inputs in row order (token ids of the nodes, or embeddings when the layout has extra rows).
pub fn score<B: Backend>(
    target: &TargetModel<B>,
    cache: &mut DenseKvCache<B>,
    layout: &RowLayout,
    input: ModelInput<'_, B>,
    taps: &[Tap],
) -> Result<Scores<B>> {
    let all_rows = layout.logit_rows.len() == layout.rows()
        && layout.logit_rows.iter().enumerate().all(|(i, &r)| i == r);
    let out = target.forward(
        cache,
        ForwardRequest {
            input,
            positions: &layout.positions,
            visibility: &layout.visibility,
            logits: if all_rows {
                LogitRows::All
            } else {
                LogitRows::Rows(layout.logit_rows.clone())
            },
            taps,
            region: Region::Main,
        },
    )?;
    let logits = confu_core::host_rows(out.logits.expect("logits requested"));
    let features = (!out.taps.is_empty()).then(|| {
        let f = Tensor::cat(out.taps, 1);
        if layout.feature_rows.len() == layout.rows() {
            f
        } else {
            let device = f.device();
            f.select(0, index_tensor(&layout.feature_rows, &device))
        }
    });
    Ok(Scores {
        logits,
        features,
        prefix_len: layout.prefix_len,
    })
}

/// EAGLE-3's verification: the tree's nodes appended to the target cache in one forward, node `i`
/// at position `prefix + depth(i)` seeing the cached prefix, its ancestors and itself.
pub fn verify_tree<B: Backend>(
    target: &TargetModel<B>,
    cache: &mut DenseKvCache<B>,
    tree: &DraftTree,
    taps: &[Tap],
) -> Result<Scores<B>> {
    let layout = RowLayout::tree(cache.reserved(), cache.len(), tree)?;
    score(target, cache, &layout, ModelInput::Ids(&tree.tokens), taps)
}

/// Keep the prefix and the accepted path's entries (moved to consecutive slots), drop the rest.
pub fn compact_to_path<B: Backend>(
    cache: &mut DenseKvCache<B>,
    prefix_len: usize,
    path: &[usize],
) -> Result<()> {
    let keep: Vec<usize> = (0..prefix_len)
        .chain(path.iter().map(|&n| prefix_len + n))
        .collect();
    cache.keep(&keep)
}
