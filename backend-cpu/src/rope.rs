//! Rotate-half RoPE in one pass over the rows.

use burn::tensor::{Tensor, TensorData};
use confu_core::ops::portable;

use crate::flex_view::{float, Strided};
use crate::Cpu;

/// [`confu_core::Ops::rope`] on the CPU.
pub fn rope(x: Tensor<Cpu, 3>, cos: &Tensor<Cpu, 2>, sin: &Tensor<Cpu, 2>) -> Tensor<Cpu, 3> {
    // The portable body is six strided burn ops and four temporaries per call; this is one
    // pass. `x * c + r * s` as separate multiplies and an add, as the portable ops round it,
    // so the result is bit-identical.
    let [rows, heads, d] = x.dims();
    let (xt, ct, st) = (float(x.clone()), float(cos.clone()), float(sin.clone()));
    let (Some(xs), Some(cs), Some(ss)) = (
        Strided::of(&xt),
        ct.as_slice::<f32>().filter(|c| c.len() == rows * d),
        st.as_slice::<f32>().filter(|s| s.len() == rows * d),
    ) else {
        return portable::rope(x, cos, sin);
    };
    let half = d / 2;
    let mut out = vec![0f32; rows * heads * d];
    for (i, dst) in out.chunks_exact_mut(d).enumerate() {
        let (r, h) = (i / heads, i % heads);
        let src = xs.row(r, h);
        let (c, s) = (&cs[r * d..(r + 1) * d], &ss[r * d..(r + 1) * d]);
        for j in 0..d {
            let rotated = if j < half {
                -src[j + half]
            } else {
                src[j - half]
            };
            dst[j] = src[j] * c[j] + rotated * s[j];
        }
    }
    Tensor::from_data(TensorData::new(out, [rows, heads, d]), &x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex_view::test_tensors::*;
    use crate::CpuOps;
    use confu_core::Ops;

    #[test]
    fn rope_is_bit_identical_to_portable() {
        // A strided x (as q and k leave the projections) and odd row counts.
        for rows in [1, 5] {
            let x = tensor([4, rows, 8], 3).swap_dims(0, 1);
            let cos = tensor([rows, 8], 4);
            let sin = tensor([rows, 8], 5);
            let ours: Vec<f32> = CpuOps
                .rope(x.clone(), &cos, &sin)
                .into_data()
                .to_vec()
                .unwrap();
            let theirs: Vec<f32> = portable::rope(x, &cos, &sin).into_data().to_vec().unwrap();
            assert_eq!(ours, theirs, "rows {rows}");
        }
    }
}
