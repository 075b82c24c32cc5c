//! Writing rows into a KV-cache tensor in place.

use burn::tensor::{DType, Tensor, TensorPrimitive};

use crate::flex_view::{float, Strided};
use crate::Cpu;

/// [`confu_core::Ops::write_slots`] on the CPU: in place when the destination holds its storage
/// alone, else burn's copying `slice_assign`.
pub fn write_slots(dst: Tensor<Cpu, 3>, start: usize, rows: Tensor<Cpu, 3>) -> Tensor<Cpu, 3> {
    // burn-flex's `slice_assign` copies the whole destination even when nothing else holds
    // it: for the KV cache that was a copy of every layer's cache on every forward.
    let [a, slots, d] = dst.dims();
    let [ra, n, rd] = rows.dims();
    let mut dt = float(dst);
    let rt = float(rows);
    let whole = dt.layout().contiguous_offsets() == Some((0, a * slots * d))
        && dt.bytes().len() == a * slots * d * 4;
    if let (true, true, Some(src)) = (
        whole && ra == a && rd == d && start + n <= slots && dt.dtype() == DType::F32,
        dt.is_unique(),
        Strided::of(&rt),
    ) {
        let buf = dt.try_storage_mut::<f32>().expect("checked unique");
        for h in 0..a {
            for r in 0..n {
                let at = (h * slots + start + r) * d;
                buf[at..at + d].copy_from_slice(src.row(h, r));
            }
        }
        return Tensor::from_primitive(TensorPrimitive::Float(dt));
    }
    let dst = Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(dt));
    let rows = Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(rt));
    dst.slice_assign([0..ra, start..start + n, 0..rd], rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex_view::test_tensors::*;
    use crate::CpuOps;
    use confu_core::{Ops, PortableOps};

    #[test]
    fn write_slots_matches_portable_in_place_and_when_shared() {
        let dst = tensor([2, 9, 5], 1);
        // Rows as attention produces them: a transposed, non-contiguous view.
        let rows = tensor([3, 2, 5], 2).swap_dims(0, 1);
        let expected: Vec<f32> =
            Ops::<Cpu>::write_slots(&PortableOps, dst.clone(), 4, rows.clone())
                .into_data()
                .to_vec()
                .unwrap();
        // `dst` is shared with `kept` here, so the kernel must not write into `kept`.
        let kept = dst.clone();
        let shared: Vec<f32> = CpuOps
            .write_slots(dst, 4, rows.clone())
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(shared, expected);
        let before: Vec<f32> = kept.clone().into_data().to_vec().unwrap();
        assert_eq!(
            before,
            tensor([2, 9, 5], 1).into_data().to_vec::<f32>().unwrap()
        );
        let alone: Vec<f32> = CpuOps
            .write_slots(kept, 4, rows)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(alone, expected);
    }
}
