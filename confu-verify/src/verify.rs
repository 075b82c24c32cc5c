//! One target forward over a draft tree, and the cache update after acceptance.

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{kv_cache::Region, DenseKvCache, DraftTree, KvCache, Result, Visibility};
use confu_model::{ForwardRequest, LogitRows, ModelInput, Tap, TargetModel};

/// What the target computed over a tree.
#[derive(Debug)]
pub struct TreeVerification<B: Backend> {
    /// Logits per node, on the host.
    pub logits: Vec<Vec<f32>>,
    /// The requested taps concatenated along features, `[nodes, taps * hidden]`.
    pub features: Option<Tensor<B, 2>>,
    /// Cache length before the tree was appended.
    pub prefix_len: usize,
}

/// Append the tree's nodes to the target cache and run them in one forward: node `i` sits at
/// position `prefix + depth(i)` and sees the cached prefix, its ancestors and itself.
pub fn verify_tree<B: Backend>(
    target: &TargetModel<B>,
    cache: &mut DenseKvCache<B>,
    tree: &DraftTree,
    taps: &[Tap],
) -> Result<TreeVerification<B>> {
    let prefix_len = cache.len();
    let positions: Vec<usize> = tree.depths.iter().map(|d| prefix_len + d).collect();
    let visibility = Visibility::tree(cache.reserved(), prefix_len, &tree.parents)?;
    let out = target.forward(
        cache,
        ForwardRequest {
            input: ModelInput::Ids(&tree.tokens),
            positions: &positions,
            visibility: &visibility,
            logits: LogitRows::All,
            taps,
            region: Region::Main,
        },
    )?;
    let logits = confu_core::host_rows(out.logits.expect("logits requested"));
    let features = (!out.taps.is_empty()).then(|| Tensor::cat(out.taps, 1));
    Ok(TreeVerification {
        logits,
        features,
        prefix_len,
    })
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
