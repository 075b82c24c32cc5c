//! Reading burn-flex tensors in place: the primitive behind a burn tensor, host copies of
//! activations, and strided row views. Every CPU kernel of this crate starts from these.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorPrimitive};

use crate::Cpu;

pub(crate) fn float<const D: usize>(t: Tensor<Cpu, D>) -> FlexTensor {
    match t.into_primitive() {
        TensorPrimitive::Float(f) => f,
        TensorPrimitive::QFloat(_) => unreachable!("confu keeps weights and activations in float"),
    }
}

/// The f32 values of `x` in row-major order: borrowed from the tensor when it is contiguous f32
/// (no copy), copied otherwise.
pub(crate) fn host_f32(x: &Tensor<Cpu, 2>) -> HostRows {
    let ft = float(x.clone());
    if ft.as_slice::<f32>().is_some() {
        return HostRows::Borrowed(ft);
    }
    HostRows::Copied(x.clone().into_data().to_vec().expect("f32 activations"))
}

/// [`host_f32`]'s values: the tensor itself, or a copy.
pub(crate) enum HostRows {
    Borrowed(FlexTensor),
    Copied(Vec<f32>),
}

impl HostRows {
    pub(crate) fn values(&self) -> &[f32] {
        match self {
            HostRows::Borrowed(t) => t.as_slice::<f32>().expect("checked contiguous f32"),
            HostRows::Copied(v) => v,
        }
    }
}

/// Read-only view of a `[a, b, d]` f32 tensor whose last axis is contiguous.
pub(crate) struct Strided<'a> {
    data: &'a [f32],
    offset: usize,
    s0: usize,
    s1: usize,
    d: usize,
}

impl<'a> Strided<'a> {
    pub(crate) fn of(t: &'a FlexTensor) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let layout = t.layout();
        let strides = layout.strides();
        if strides.len() != 3 || strides[2] != 1 || strides[0] < 0 || strides[1] < 0 {
            return None;
        }
        Some(Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            s0: strides[0] as usize,
            s1: strides[1] as usize,
            d: layout.shape()[2],
        })
    }

    pub(crate) fn row(&self, a: usize, b: usize) -> &'a [f32] {
        let start = self.offset + a * self.s0 + b * self.s1;
        &self.data[start..start + self.d]
    }

    pub(crate) fn read(&self, a: usize, b: usize, dst: &mut [f32]) {
        dst.copy_from_slice(self.row(a, b));
    }
}

#[cfg(test)]
pub(crate) mod test_tensors {
    use burn::tensor::{Tensor, TensorData};

    use crate::Cpu;

    pub(crate) fn tensor<const D: usize>(shape: [usize; D], salt: usize) -> Tensor<Cpu, D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 31 + salt * 17) as f32 * 0.37).sin())
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    pub(crate) fn close<const D: usize>(a: Tensor<Cpu, D>, b: Tensor<Cpu, D>) -> f32 {
        let a: Vec<f32> = a.into_data().to_vec().unwrap();
        let b: Vec<f32> = b.into_data().to_vec().unwrap();
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }
}
