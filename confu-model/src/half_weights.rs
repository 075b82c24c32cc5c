//! Half-precision linear weights kept half precision in memory.
//!
//! A bf16 or f16 checkpoint loads widened to f32 (every op can read it, training included); where
//! the backend's linear kernel reads half-precision weights itself ([`Ops::keeps_half_weights`]),
//! the linear layers' weight matrices are narrowed back to their on-disk dtype after loading —
//! exactly, since the values came from that dtype. Decoding then reads half the bytes per step,
//! and the kernel's results equal those of the widened weights bit for bit. Norms, biases and the
//! embedding table stay f32 (they are small, or read row by row).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, FloatDType, Tensor};
use safetensors::Dtype;

use crate::naming::PathStack;
use crate::weights::WeightFiles;

/// Whether `name` is a linear layer's weight matrix (read only through `Ops::linear`).
fn is_linear_weight(name: &str) -> bool {
    name.ends_with("_proj.weight") || name == "lm_head.weight"
}

struct Narrow<'a> {
    path: PathStack,
    files: &'a WeightFiles,
    narrowed: usize,
}

impl<B: Backend> ModuleMapper<B> for Narrow<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.0.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.0.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.name();
        if D != 2 || !is_linear_weight(&name) {
            return param;
        }
        let dtype = match self.files.dtype_of(&name) {
            Some(Dtype::BF16) => FloatDType::BF16,
            Some(Dtype::F16) => FloatDType::F16,
            _ => return param,
        };
        self.narrowed += 1;
        let id = param.id;
        Param::initialized(id, param.val().cast(dtype))
    }
}

/// `module` (loaded from `files`) with every linear weight stored bf16 or f16 on disk narrowed back
/// to that dtype; returns it and how many weights were narrowed.
pub fn keep_half_precision<B: Backend, M: Module<B>>(
    module: M,
    prefix: &str,
    files: &WeightFiles,
) -> (M, usize) {
    let mut narrow = Narrow {
        path: PathStack::new(prefix),
        files,
        narrowed: 0,
    };
    let module = module.map(&mut narrow);
    let n = narrow.narrowed;
    (module, n)
}

struct Bytes<'a> {
    path: PathStack,
    skip: &'a dyn Fn(&str) -> bool,
    total: usize,
}

impl<B: Backend> ModuleVisitor<B> for Bytes<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.0.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.0.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !(self.skip)(&self.path.name()) {
            let t = param.val();
            self.total += t.shape().num_elements() * t.dtype().size();
        }
    }
}

/// Bytes of the parameters of `module` in memory, in their stored dtypes, leaving out those whose
/// name `skip` accepts.
pub fn param_bytes<B: Backend, M: Module<B>>(module: &M, skip: &dyn Fn(&str) -> bool) -> usize {
    let mut bytes = Bytes {
        path: PathStack::new(""),
        skip,
        total: 0,
    };
    module.visit(&mut bytes);
    bytes.total
}
