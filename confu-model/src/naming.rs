//! Tensor names, walked once.
//!
//! A module's tensor names are its field names: `Llama.model.layers[0].self_attn.q_proj.weight`
//! *is* the Hugging Face tensor `model.layers.0.self_attn.q_proj.weight`, and the EAGLE-3 head's
//! fields spell the official names (`fc.weight`, `midlayer.hidden_norm.weight`, …). Loading, seeded
//! initialisation, random benchmark weights and safetensors export all walk the module with the
//! path burn's module visitor/mapper reports (the spirit of candle's `vb.pp("self_attn")`), so no
//! name is written anywhere else.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use confu_core::{Error, Result, ToHost};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::weights::WeightFiles;

/// Where the values of walked tensors come from.
pub trait TensorValues {
    /// The row-major values of the tensor named `name`, whose shape must be `shape`.
    fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}

/// Values read from a checkpoint (shape-checked, converted to `f32`).
impl TensorValues for &WeightFiles {
    fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.read_f32(name, shape)
    }
}

/// The values of another module's parameters, by name: how a module moves between backends
/// (the frozen target from decoding onto the autodiff backend, a loaded head into training).
pub struct Copied(std::collections::HashMap<String, NamedValues>);

impl Copied {
    /// Host copies of every parameter of `module`.
    pub fn of<B: Backend, M: Module<B>>(module: &M) -> Self {
        Self(
            named_values(module, "")
                .into_iter()
                .map(|v| (v.name.clone(), v))
                .collect(),
        )
    }
}

impl TensorValues for Copied {
    fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.0.remove(name) {
            Some(v) if v.shape == shape => Ok(v.values),
            Some(v) => Err(Error::shape(
                "copied parameter",
                format!("{name} is {:?}, expected {shape:?}", v.shape),
            )),
            None => Err(Error::invalid(
                "copied parameter",
                name.to_string(),
                "the source module has no such parameter",
            )),
        }
    }
}

/// Seeded N(0, std²) for weight matrices, ones for norm weights, zeros for biases: how trainable
/// models start. Values are drawn in walk order (field order) from one stream, so a seed gives the
/// same model everywhere.
pub struct SeededNormal {
    pub rng: ChaCha8Rng,
    pub std: f32,
}

impl SeededNormal {
    pub fn new(seed: u64, std: f32) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            std,
        }
    }
}

/// `n` draws of N(0, std²) by Box–Muller from the seeded stream.
pub fn normal_values(rng: &mut ChaCha8Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random::<f32>());
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

impl TensorValues for SeededNormal {
    fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n = shape.iter().product();
        Ok(match (shape.len(), name.ends_with(".bias")) {
            (1, true) => vec![0.0; n],
            (1, false) => vec![1.0; n],
            _ => normal_values(&mut self.rng, n, self.std),
        })
    }
}

/// Seeded uniform weights scaled by `1/sqrt(fan_in)` and norm weights of one, for benchmarks and
/// tests that need a model of a given size without files.
pub struct SeededUniform {
    pub rng: ChaCha8Rng,
}

impl SeededUniform {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl TensorValues for SeededUniform {
    fn values(&mut self, _name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if shape.len() == 1 {
            return Ok(vec![1.0; shape[0]]);
        }
        let fan_in = *shape.last().unwrap_or(&1);
        let scale = (3.0 / fan_in.max(1) as f32).sqrt();
        let n = shape.iter().product();
        Ok((0..n)
            .map(|_| self.rng.random_range(-scale..scale))
            .collect())
    }
}

/// The dotted path of the parameter being walked.
#[derive(Default)]
pub(crate) struct PathStack(pub(crate) Vec<String>);

impl PathStack {
    pub(crate) fn new(prefix: &str) -> Self {
        Self(
            prefix
                .split('.')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    }
    pub(crate) fn name(&self) -> String {
        self.0.join(".")
    }
}

struct Filler<'a, B: Backend> {
    path: PathStack,
    values: &'a mut dyn TensorValues,
    device: B::Device,
    error: Option<Error>,
}

impl<B: Backend> ModuleMapper<B> for Filler<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.0.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.0.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let shape = param.lazy_shape();
        match self.values.values(&self.path.name(), &shape.dims::<D>()) {
            Ok(v) => {
                let t = Tensor::<B, D>::from_data(TensorData::new(v, shape), &self.device);
                Param::initialized(param.id, t.require_grad())
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Give every parameter of the skeleton `module` its value, by the name `prefix.field.path`.
pub fn fill<B: Backend, M: Module<B>>(
    module: M,
    prefix: &str,
    values: &mut dyn TensorValues,
    device: &B::Device,
) -> Result<M> {
    let mut filler = Filler::<B> {
        path: PathStack::new(prefix),
        values,
        device: device.clone(),
        error: None,
    };
    let module = module.map(&mut filler);
    match filler.error {
        Some(e) => Err(e),
        None => Ok(module),
    }
}

/// A named host copy of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedValues {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

struct Collector {
    path: PathStack,
    out: Vec<NamedValues>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.0.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.0.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        self.out.push(NamedValues {
            name: self.path.name(),
            shape: t.dims().to_vec(),
            values: t.to_host(),
        });
    }
}

/// Every parameter of `module` with its name (`prefix.field.path`), in walk order.
pub fn named_values<B: Backend, M: Module<B>>(module: &M, prefix: &str) -> Vec<NamedValues> {
    let mut c = Collector {
        path: PathStack::new(prefix),
        out: Vec::new(),
    };
    module.visit::<Collector>(&mut c);
    c.out
}
