//! A tiny end-to-end run of the trainable target: AdamW steps lower the loss, the export loads in
//! `confu-model` with the same logits as the training model, and the engine generates from it.

mod common;

use backend_cpu::Cpu;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use confu::{Engine, GenerationConfig};
use confu_model::Llama;
use confu_model::{LogitRows, ModelConfig, TargetModel};

type Train = Autodiff<Cpu>;

fn tiny_config() -> ModelConfig {
    common::tiny_llama(40, 32, 64, 2, 4, 2, 64)
}

#[test]
fn training_lowers_the_loss_and_the_export_matches() {
    let c = tiny_config();
    let device = Default::default();
    let mut model = Llama::<Train>::init(&c, 7, &device).unwrap();
    // Two sequences with a repeating pattern the model can learn.
    let seqs: Vec<i64> = (0..2 * 17)
        .map(|i| (2 + (i % 17) * 3 % 11 + (i / 17) * 5) as i64)
        .collect();
    let batch = Tensor::<Train, 2, Int>::from_data(TensorData::new(seqs, [2, 17]), &device);
    let mut optim = AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(0.0)
        .init();
    let first: f32 = model.loss(&c, batch.clone()).into_scalar();
    for _ in 0..60 {
        let loss = model.loss(&c, batch.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let last: f32 = model.loss(&c, batch.clone()).into_scalar();
    println!("train lm tiny: loss {first:.3} -> {last:.3} after 60 AdamW steps");
    assert!(
        last < first * 0.5,
        "loss did not fall enough: {first} -> {last}"
    );

    // Export, load with confu-model, and compare logits on the training sequence.
    let dir = tempfile::tempdir().unwrap();
    let valid = model.valid();
    valid.export(&c, dir.path()).unwrap();
    let target = TargetModel::<Cpu>::load(dir.path(), backend_cpu::ops(), &device).unwrap();
    let ids: Vec<u32> = (0..16).map(|i| (2 + i * 3 % 11) as u32).collect();
    let idt = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, 16]),
        &device,
    );
    let train_logits: Vec<f32> = valid.forward_batch(&c, idt).into_data().to_vec().unwrap();
    let mut cache = target.new_cache(0, 16);
    let out = target
        .forward_causal(&mut cache, &ids, LogitRows::All, &[])
        .unwrap();
    let ours: Vec<f32> = out.logits.unwrap().into_data().to_vec().unwrap();
    let r = confu::reference::rel_l2(&ours, &train_logits);
    println!("train lm tiny: exported model logits vs training model rel_l2={r:.2e}");
    assert!(r < 1e-5, "exported model differs: {r}");
    let g = Engine::new(target)
        .generate(
            &ids[..4],
            &GenerationConfig {
                max_new_tokens: 8,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert!(!g.generated_ids.is_empty());
}
