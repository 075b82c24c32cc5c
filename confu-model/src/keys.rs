//! What an attention layer attends over, kept apart from the layer itself so that one layer body
//! serves decoding and training.
//!
//! The layer computes its rows' queries, keys and values (RoPE applied) and hands them to an
//! [`AttentionKeys`]: when decoding, [`CachedKeys`] writes the new keys into the KV cache and attends
//! over every cached slot under a visibility mask; when training, [`BatchKeys`] attends within
//! each of a batch of whole sequences. Training-only patterns (EAGLE-3's training-time test, ConFu's
//! anchor rows) are further implementations in `confu-train`.

use burn::tensor::{backend::Backend, Bool, Tensor};
use confu_core::kv_cache::Region;
use confu_core::ops::portable;
use confu_core::{DenseKvCache, Ops};

/// One layer's queries, keys and values: `q: [rows, heads, head_dim]`, `k`, `v:
/// [rows, kv_heads, head_dim]` (q and k rotated), and the score scale.
pub struct Qkv<B: Backend> {
    pub q: Tensor<B, 3>,
    pub k: Tensor<B, 3>,
    pub v: Tensor<B, 3>,
    pub scale: f64,
}

/// Attention of a layer's rows over the keys the caller decides.
pub trait AttentionKeys<B: Backend> {
    /// Attend with decoder layer `layer`'s rows; returns the values `[rows, heads, head_dim]`.
    fn attend(&mut self, layer: usize, qkv: Qkv<B>, ops: &dyn Ops<B>) -> Tensor<B, 3>;
}

/// Decoding: the rows' K/V go into `cache` (in `region`), and every row attends over the cache's
/// key slots from `skip` on that `masked_out` (`[rows, key slots - skip]`, `true` = masked out;
/// `None` = all) leaves visible. `skip` leaves out leading slots no row sees (ConFu's soft prompt
/// in a pass of ordinary rows), so that such a pass attends unmasked.
pub struct CachedKeys<'a, B: Backend> {
    pub cache: &'a mut DenseKvCache<B>,
    pub region: Region,
    pub masked_out: Option<&'a Tensor<B, 2, Bool>>,
    pub skip: usize,
}

impl<B: Backend> AttentionKeys<B> for CachedKeys<'_, B> {
    fn attend(&mut self, layer: usize, qkv: Qkv<B>, ops: &dyn Ops<B>) -> Tensor<B, 3> {
        let Qkv { q, k, v, scale } = qkv;
        let (k, v) = (k.swap_dims(0, 1), v.swap_dims(0, 1));
        let (k_all, v_all) = self
            .cache
            .write_and_view_from(layer, self.region, k, v, self.skip);
        ops.attention(
            q.swap_dims(0, 1),
            k_all,
            v_all,
            self.masked_out.cloned(),
            scale,
        )
        .swap_dims(0, 1)
    }
}

/// Training: the rows are `batch` sequences of equal length laid end to end; each attends within
/// its own sequence under one shared mask `masked_out` (`[time, time]`, `true` = masked out).
pub struct BatchKeys<B: Backend> {
    pub batch: usize,
    pub masked_out: Option<Tensor<B, 2, Bool>>,
}

impl<B: Backend> BatchKeys<B> {
    /// Causal attention within each of `batch` sequences of `time` rows.
    pub fn causal(batch: usize, time: usize, device: &B::Device) -> Self {
        let vis = confu_core::Visibility::causal(0, 0, time);
        Self {
            batch,
            masked_out: Some(vis.to_masked_out(device)),
        }
    }
}

/// `[batch * time, heads, d]` rows as `[batch, heads, time, d]`.
pub fn rows_to_batch<B: Backend>(x: Tensor<B, 3>, batch: usize) -> Tensor<B, 4> {
    let [rows, heads, d] = x.dims();
    x.reshape([batch, rows / batch, heads, d]).swap_dims(1, 2)
}

/// The inverse of [`rows_to_batch`].
pub fn batch_to_rows<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, time, d] = x.dims();
    x.swap_dims(1, 2).reshape([batch * time, heads, d])
}

impl<B: Backend> AttentionKeys<B> for BatchKeys<B> {
    fn attend(&mut self, _layer: usize, qkv: Qkv<B>, _ops: &dyn Ops<B>) -> Tensor<B, 3> {
        let (b, Qkv { q, k, v, scale }) = (self.batch, qkv);
        let qkv = [q, k, v].map(|t| rows_to_batch(t, b));
        let out = portable::attention_batched(qkv, self.masked_out.clone(), scale);
        batch_to_rows(out)
    }
}
