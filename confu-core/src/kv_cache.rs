//! The target's key/value cache.
//!
//! One preallocated tensor pair per layer, `[kv_heads, reserved + capacity, head_dim]`. Slots
//! `0..reserved` are the reserved region (ConFu's soft prompt lives there; which rows may read it
//! is decided by the [`Visibility`](crate::Visibility) mask, not by the cache). Slots after it are
//! the main region, filled in order by appends. Speculative decoding writes a whole tree, then
//! keeps only the accepted path ([`KvCache::keep`]), so compaction is a first-class operation.

use std::sync::Arc;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::{Error, Ops, Result};

/// Operations the decode loop needs from a cache, whatever its layout.
pub trait KvCache {
    /// Filled slots of the main region.
    fn len(&self) -> usize;
    /// True when the main region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Slots of the main region.
    fn capacity(&self) -> usize;
    /// Drop main-region slots from `len` on.
    fn truncate(&mut self, len: usize) -> Result<()>;
    /// Keep exactly these main-region slots (strictly increasing), moved to slots `0..keep.len()`.
    fn keep(&mut self, keep: &[usize]) -> Result<()>;
}

/// The K and V of one layer.
#[derive(Debug, Clone)]
struct LayerKv<B: Backend> {
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
}

/// A dense preallocated cache. Writes go through the backend's [`Ops::write_slots`], which
/// writes in place where the backend can.
#[derive(Debug, Clone)]
pub struct DenseKvCache<B: Backend> {
    layers: Vec<LayerKv<B>>,
    ops: Arc<dyn Ops<B>>,
    reserved: usize,
    reserved_len: usize,
    len: usize,
    capacity: usize,
}

impl<B: Backend> DenseKvCache<B> {
    /// Allocate a zeroed cache.
    pub fn new(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        reserved: usize,
        capacity: usize,
        device: &B::Device,
        ops: Arc<dyn Ops<B>>,
    ) -> Self {
        let shape = [kv_heads, reserved + capacity, head_dim];
        let layers = (0..num_layers)
            .map(|_| LayerKv {
                k: Tensor::zeros(shape, device),
                v: Tensor::zeros(shape, device),
            })
            .collect();
        Self {
            layers,
            ops,
            reserved,
            reserved_len: 0,
            len: 0,
            capacity,
        }
    }

    /// Slots of the reserved region (filled or not).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Filled slots of the reserved region.
    pub fn reserved_len(&self) -> usize {
        self.reserved_len
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Key slots an attention over the whole cache spans after `new_rows` more are appended:
    /// the full reserved region plus the filled main region.
    pub fn key_slots_after(&self, new_rows: usize) -> usize {
        self.reserved + self.len + new_rows
    }

    /// Check that `rows` more rows fit, before anything is written.
    pub fn check_room(&self, region: Region, rows: usize) -> Result<()> {
        match region {
            Region::Main if self.len + rows > self.capacity => Err(Error::Capacity {
                what: "KV cache",
                requested: self.len + rows,
                limit: self.capacity,
            }),
            Region::Reserved if rows > self.reserved => Err(Error::Capacity {
                what: "KV cache reserved region",
                requested: rows,
                limit: self.reserved,
            }),
            _ => Ok(()),
        }
    }

    /// Write one layer's new keys and values (`[kv_heads, rows, head_dim]`) into `region` and return
    /// the layer's K, V over all key slots that attention sees (`0..key_slots`).
    ///
    /// The caller writes every layer with the same `rows` and then calls [`Self::commit`].
    pub fn write_and_view(
        &mut self,
        layer: usize,
        region: Region,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        self.write_and_view_from(layer, region, k, v, 0)
    }

    /// [`Self::write_and_view`] with the view starting at key slot `first` (at most the slots
    /// attention sees): leading slots no row attends to (ConFu's soft prompt in a pass of
    /// ordinary rows) stay out of the view in one slice, not a slice and a narrow.
    pub fn write_and_view_from(
        &mut self,
        layer: usize,
        region: Region,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        first: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [kv_heads, rows, head_dim] = k.dims();
        let start = match region {
            Region::Main => self.reserved + self.len,
            Region::Reserved => 0,
        };
        let end_view = match region {
            Region::Main => self.reserved + self.len + rows,
            Region::Reserved => self.reserved + self.len,
        };
        assert!(
            first <= end_view,
            "view from key slot {first} of {end_view}"
        );
        let slot = &mut self.layers[layer];
        let view = [0..kv_heads, first..end_view, 0..head_dim];
        if rows > 0 {
            let ops = self.ops.as_ref();
            slot.k = ops.write_slots(take(&mut slot.k), start, k);
            slot.v = ops.write_slots(take(&mut slot.v), start, v);
        }
        (
            slot.k.clone().slice(view.clone()),
            slot.v.clone().slice(view),
        )
    }

    /// Record that `rows` rows were written to `region` in every layer.
    pub fn commit(&mut self, region: Region, rows: usize) {
        match region {
            Region::Main => self.len += rows,
            Region::Reserved => self.reserved_len = rows,
        }
    }

    /// The filled reserved region of every layer, `(k, v)` each `[kv_heads, reserved_len,
    /// head_dim]` — computed once (ConFu's soft prompt) and installed into later caches.
    pub fn reserved_entries(&self) -> Vec<(Tensor<B, 3>, Tensor<B, 3>)> {
        self.layers
            .iter()
            .map(|l| {
                let [h, _, d] = l.k.dims();
                let r = [0..h, 0..self.reserved_len, 0..d];
                (l.k.clone().slice(r.clone()), l.v.clone().slice(r))
            })
            .collect()
    }

    /// Fill the reserved region with `entries` (one `(k, v)` per layer, as
    /// [`Self::reserved_entries`] returns them).
    pub fn install_reserved(&mut self, entries: &[(Tensor<B, 3>, Tensor<B, 3>)]) -> Result<()> {
        self.put(Region::Reserved, entries)
    }

    /// The filled main region of every layer, `(k, v)` each `[kv_heads, len, head_dim]`.
    pub fn main_entries(&self) -> Vec<(Tensor<B, 3>, Tensor<B, 3>)> {
        self.layers
            .iter()
            .map(|l| {
                let [h, _, d] = l.k.dims();
                let r = [0..h, self.reserved..self.reserved + self.len, 0..d];
                (l.k.clone().slice(r.clone()), l.v.clone().slice(r))
            })
            .collect()
    }

    /// Append computed entries (one `(k, v)` per layer, as [`Self::main_entries`] returns them)
    /// to the main region: ConFu training attends over real rows another pass computed.
    pub fn append_entries(&mut self, entries: &[(Tensor<B, 3>, Tensor<B, 3>)]) -> Result<()> {
        self.put(Region::Main, entries)
    }

    fn put(&mut self, region: Region, entries: &[(Tensor<B, 3>, Tensor<B, 3>)]) -> Result<()> {
        if entries.len() != self.layers.len() {
            return Err(Error::shape(
                "cache entries",
                format!(
                    "{} layers for a {}-layer cache",
                    entries.len(),
                    self.layers.len()
                ),
            ));
        }
        let rows = entries.first().map_or(0, |(k, _)| k.dims()[1]);
        self.check_room(region, rows)?;
        for (layer, (k, v)) in entries.iter().enumerate() {
            self.write_and_view(layer, region, k.clone(), v.clone());
        }
        self.commit(region, rows);
        Ok(())
    }

    /// Empty both regions (the memory stays allocated).
    pub fn clear(&mut self) {
        self.len = 0;
        self.reserved_len = 0;
    }
}

/// Move a tensor out of its place, leaving an empty one, so that the moved tensor is the only
/// owner of its storage.
fn take<B: Backend>(t: &mut Tensor<B, 3>) -> Tensor<B, 3> {
    let device = t.device();
    std::mem::replace(t, Tensor::empty([0, 0, 0], &device))
}

/// Where a forward's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Appended after the filled main region (ordinary tokens, tree nodes, contemplate rows).
    Main,
    /// Written at the start of the reserved region (the soft prompt), replacing what was there.
    Reserved,
}

impl<B: Backend> KvCache for DenseKvCache<B> {
    fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::invalid(
                "truncate length",
                len,
                format!("the cache holds only {} slots", self.len),
            ));
        }
        self.len = len;
        Ok(())
    }

    fn keep(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(w) = keep.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "kept slots",
                format!("{:?}", w),
                "slots to keep must be strictly increasing",
            ));
        }
        if let Some(&last) = keep.last() {
            if last >= self.len {
                return Err(Error::invalid(
                    "kept slot",
                    last,
                    format!("the cache holds only {} slots", self.len),
                ));
            }
        }
        // Slots already in place need no move: only the tail after the first gap is gathered.
        let stay = keep
            .iter()
            .enumerate()
            .take_while(|(i, &s)| *i == s)
            .count();
        let moved: Vec<i64> = keep[stay..]
            .iter()
            .map(|&s| (self.reserved + s) as i64)
            .collect();
        if !moved.is_empty() {
            let ops = self.ops.as_ref();
            for slot in &mut self.layers {
                let device = slot.k.device();
                let idx: Tensor<B, 1, Int> =
                    Tensor::from_data(TensorData::new(moved.clone(), [moved.len()]), &device);
                // The gathered rows are copies, so the cache is again its storage's only owner
                // when they are written back.
                let k_rows = slot.k.clone().select(1, idx.clone());
                let v_rows = slot.v.clone().select(1, idx);
                let at = self.reserved + stay;
                slot.k = ops.write_slots(take(&mut slot.k), at, k_rows);
                slot.v = ops.write_slots(take(&mut slot.v), at, v_rows);
            }
        }
        self.len = keep.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn ops() -> Arc<dyn Ops<B>> {
        Arc::new(crate::PortableOps)
    }

    fn rows(values: &[f32]) -> Tensor<B, 3> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, values.len(), 1]),
            &Default::default(),
        )
    }

    fn main_region(cache: &mut DenseKvCache<B>) -> Vec<f32> {
        let (k, _) = cache.write_and_view(0, Region::Main, rows(&[]), rows(&[]));
        let all: Vec<f32> = k.into_data().to_vec().unwrap();
        all[cache.reserved()..].to_vec()
    }

    #[test]
    fn append_keep_truncate() {
        let mut c = DenseKvCache::<B>::new(1, 1, 1, 2, 8, &Default::default(), ops());
        c.write_and_view(0, Region::Main, rows(&[1., 2., 3., 4., 5.]), rows(&[0.; 5]));
        c.commit(Region::Main, 5);
        c.keep(&[0, 1, 3, 4]).unwrap();
        assert_eq!(main_region(&mut c), [1., 2., 4., 5.]);
        c.truncate(1).unwrap();
        assert_eq!(main_region(&mut c), [1.]);
        assert!(c.keep(&[2]).is_err());
        assert!(c.keep(&[0, 0]).is_err());
    }

    #[test]
    fn a_view_from_a_later_slot_leaves_the_leading_slots_out() {
        let mut c = DenseKvCache::<B>::new(1, 1, 1, 2, 4, &Default::default(), ops());
        c.write_and_view(0, Region::Reserved, rows(&[7., 8.]), rows(&[9., 10.]));
        c.commit(Region::Reserved, 2);
        let (k, v) = c.write_and_view_from(0, Region::Main, rows(&[1., 2.]), rows(&[3., 4.]), 2);
        assert_eq!(k.into_data().to_vec::<f32>().unwrap(), [1., 2.]);
        assert_eq!(v.into_data().to_vec::<f32>().unwrap(), [3., 4.]);
        c.commit(Region::Main, 2);
        let (k, _) = c.write_and_view_from(0, Region::Main, rows(&[5.]), rows(&[6.]), 1);
        assert_eq!(k.into_data().to_vec::<f32>().unwrap(), [8., 1., 2., 5.]);
    }

    #[test]
    fn reserved_region_is_separate_and_checked() {
        let mut c = DenseKvCache::<B>::new(1, 1, 1, 2, 4, &Default::default(), ops());
        c.write_and_view(0, Region::Reserved, rows(&[7., 8.]), rows(&[0.; 2]));
        c.commit(Region::Reserved, 2);
        let (k, _) = c.write_and_view(0, Region::Main, rows(&[1.]), rows(&[0.]));
        let all: Vec<f32> = k.into_data().to_vec().unwrap();
        assert_eq!(all, [7., 8., 1.]);
        assert!(c.check_room(Region::Reserved, 3).is_err());
        assert!(c.check_room(Region::Main, 5).is_err());
    }

    #[test]
    fn entries_move_between_caches_after_the_reserved_region() {
        let mut a = DenseKvCache::<B>::new(1, 1, 1, 0, 4, &Default::default(), ops());
        a.write_and_view(0, Region::Main, rows(&[1., 2., 3.]), rows(&[4., 5., 6.]));
        a.commit(Region::Main, 3);
        let mut b = DenseKvCache::<B>::new(1, 1, 1, 2, 3, &Default::default(), ops());
        b.install_reserved(&[(rows(&[7., 8.]), rows(&[0.; 2]))])
            .unwrap();
        b.append_entries(&a.main_entries()).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(main_region(&mut b), [1., 2., 3.]);
        assert!(b.append_entries(&a.main_entries()).is_err(), "no room");
        assert!(b.append_entries(&[]).is_err(), "layer count");
    }
}
