//! The trainable EAGLE-3 head exports in the official layout, loads with
//! `confu_draft::Eagle3Head::load` next to an exported target, and computes the same forward.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use burn::tensor::{Int, Tensor, TensorData};
use confu_core::Visibility;
use confu_draft::{export_official, Eagle3};
use confu_draft::{DraftConfig, Eagle3Head};
use confu_model::Llama;
use confu_model::TargetModel;
use confu_train::eagle3::{causal_pass, draft_vocab_from_counts};

#[test]
fn exported_head_loads_and_matches() {
    let c = common::tiny_llama(40, 32, 64, 3, 4, 2, 64);
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let target_dir = dir.path().join("target");
    Llama::<Cpu>::init(&c, 3, &device)
        .unwrap()
        .export(&c, &target_dir)
        .unwrap();
    let target = TargetModel::<Cpu>::load(&target_dir, backend_cpu::ops(), &device).unwrap();

    let mut dc = DraftConfig::for_target(&c);
    dc.draft_vocab_size = 24;
    let counts: Vec<u64> = (0..40u64).map(|i| (i * 7919) % 31).collect();
    let (d2t, t2d) = draft_vocab_from_counts(&counts, 24);
    // Distinct norm weights, so that a norm exported under the wrong name would show.
    let mut head = Eagle3::<Cpu>::init(&dc, 5, &device);
    let varied = |salt: usize| {
        let v: Vec<f32> = (0..32)
            .map(|i| 1.0 + 0.3 * ((i * 7 + salt) as f32).sin())
            .collect();
        burn::module::Param::from_tensor(Tensor::<Cpu, 1>::from_data(
            TensorData::new(v, [32]),
            &device,
        ))
    };
    head.midlayer.hidden_norm.weight = varied(1);
    head.midlayer.input_layernorm.weight = varied(2);
    head.midlayer.post_attention_layernorm.weight = varied(3);
    head.norm.weight = varied(4);
    let draft_dir = dir.path().join("draft");
    export_official(&head, &dc, &d2t, &t2d, (Some(0), Some(1)), &draft_dir).unwrap();
    let loaded = Arc::new(Eagle3Head::load(&draft_dir, &target).unwrap());
    assert_eq!(loaded.vocab.len(), 24);

    let t = 9;
    let taps: Vec<f32> = (0..t * 96)
        .map(|i| ((i * 37) as f32 * 0.11).sin())
        .collect();
    let next: Vec<u32> = (0..t as u32).map(|i| (i * 5 + 2) % 40).collect();
    let taps2 = Tensor::<Cpu, 2>::from_data(TensorData::new(taps.clone(), [t, 96]), &device);
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(next.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, t]),
        &device,
    );
    let (_, train_logits) = causal_pass(
        &head,
        &dc,
        &target.embed_tokens(),
        taps2.clone().unsqueeze(),
        ids,
    );
    let train_logits: Vec<f32> = train_logits.into_data().to_vec().unwrap();
    let mut cache = loaded.new_cache(backend_cpu::ops(), t);
    let positions: Vec<usize> = (0..t).collect();
    let out = loaded
        .forward(
            backend_cpu::ops().as_ref(),
            &mut cache,
            taps2,
            &next,
            &positions,
            &Visibility::causal(0, 0, t),
        )
        .unwrap();
    let ours: Vec<f32> = out.logits.into_data().to_vec().unwrap();
    let r = confu::reference::rel_l2(&ours, &train_logits);
    println!("train eagle3: exported head logits vs trainable head rel_l2={r:.2e}");
    assert!(r < 1e-5, "{r}");
}
