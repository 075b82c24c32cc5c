//! One model for decoding and training: the target module that decodes is the module that trains,
//! and a frozen target (`no_grad()`) on the autodiff backend passes gradients *through* itself to
//! its inputs — what ConFu's soft prompt and contemplate embeddings need — while receiving none.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use confu_core::{kv_cache::Region, PortableOps, ToHost, Visibility};
use confu_model::{ForwardRequest, Llama, LogitRows, ModelInput, TargetModel};

type Ad = Autodiff<Cpu>;

/// Logits of raw input rows `embeds`, causal from position 0.
fn causal_logits<B: Backend>(t: &TargetModel<B>, embeds: Tensor<B, 2>) -> Tensor<B, 2> {
    let rows = embeds.dims()[0];
    let positions: Vec<usize> = (0..rows).collect();
    let mut cache = t.new_cache(0, rows);
    let req = ForwardRequest {
        input: ModelInput::Embeds(embeds),
        positions: &positions,
        visibility: &Visibility::causal(0, 0, rows),
        logits: LogitRows::All,
        taps: &[],
        region: Region::Main,
    };
    t.forward(&mut cache, req).unwrap().logits.unwrap()
}

#[test]
fn a_frozen_target_passes_gradients_to_its_inputs_and_takes_none() {
    let c = common::tiny_llama(40, 32, 64, 2, 4, 2, 64);
    let device = Default::default();
    let frozen = Llama::<Ad>::init(&c, 5, &device).unwrap().no_grad();
    let inference =
        TargetModel::from_module(c.clone(), frozen.valid(), backend_cpu::ops(), &device);
    let target =
        TargetModel::from_module(c.clone(), frozen.clone(), Arc::new(PortableOps), &device);

    // Three raw input rows (a soft prompt, say), causal, through the frozen target.
    let rows = 3;
    let values: Vec<f32> = (0..rows * 32)
        .map(|i| ((i * 13) as f32 * 0.07).sin())
        .collect();
    let embeds = Tensor::<Ad, 2>::from_data(TensorData::new(values.clone(), [rows, 32]), &device)
        .require_grad();
    let logits = causal_logits(&target, embeds.clone());
    let grads = logits.clone().powi_scalar(2).sum().backward();
    let g: Vec<f32> = embeds
        .grad(&grads)
        .expect("the input gets a gradient")
        .to_host();
    let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
    println!("frozen target: |d loss / d inputs| = {norm:.3e}");
    assert!(norm > 0.0 && norm.is_finite());
    let w = &frozen.model.layers[0].self_attn.q_proj.weight;
    assert!(
        w.val().grad(&grads).is_none(),
        "the frozen target received a gradient"
    );

    // The same module decodes: its inference form gives the same logits.
    let plain = causal_logits(
        &inference,
        Tensor::from_data(TensorData::new(values, [rows, 32]), &device),
    )
    .to_host();
    let r = confu::reference::rel_l2(&plain, &logits.to_host());
    println!("frozen target: autodiff vs inference logits rel_l2={r:.2e}");
    assert!(r < 1e-5, "{r}");
}
