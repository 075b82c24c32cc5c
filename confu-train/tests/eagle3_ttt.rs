//! Training-time test of the EAGLE-3 head: the efficient attention equals a naive reference with
//! an explicit mask (values and gradients), masked positions do not influence the loss or the
//! gradients, and AdamW steps lower the loss.

use backend_cpu::Cpu;
use burn::backend::Autodiff;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use confu_core::{RopeConfig, RopeScaling};
use confu_draft::DraftConfig;
use confu_draft::Eagle3;
use confu_model::AttentionShape;
use confu_train::eagle3::{ttt_loss, TttAttention};

type Ad = Autodiff<Cpu>;

fn config() -> DraftConfig {
    DraftConfig {
        hidden_size: 16,
        target_hidden_size: 16,
        intermediate_size: 24,
        shape: AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 8,
            eps: 1e-5,
        },
        rms_norm_eps: 1e-5,
        vocab_size: 20,
        draft_vocab_size: 12,
        rope: RopeConfig {
            head_dim: 8,
            theta: 10000.0,
            scaling: RopeScaling::None,
        },
    }
}

struct Batch {
    embed: Tensor<Ad, 2>,
    taps: Tensor<Ad, 3>,
    ids: Vec<Vec<u32>>,
    target: Tensor<Ad, 3>,
    valid: Vec<Vec<bool>>,
}

fn batch(target_salt: usize, valid_every: usize) -> Batch {
    let device = Default::default();
    let (b, t_len) = (2usize, 7usize);
    let f = |n: usize, salt: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 31 + salt * 17) as f32 * 0.173).sin())
            .collect()
    };
    Batch {
        embed: Tensor::from_data(TensorData::new(f(20 * 16, 1), [20, 16]), &device),
        taps: Tensor::from_data(
            TensorData::new(f(b * (t_len - 1) * 48, 2), [b, t_len - 1, 48]),
            &device,
        ),
        ids: (0..b)
            .map(|s| (0..t_len).map(|i| ((i * 3 + s * 5) % 20) as u32).collect())
            .collect(),
        target: Tensor::from_data(
            TensorData::new(
                f(b * t_len * 12, target_salt)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect(),
                [b, t_len, 12],
            ),
            &device,
        ),
        valid: (0..b)
            .map(|s| (0..t_len).map(|i| (i + s) % valid_every != 0).collect())
            .collect(),
    }
}

/// The 3-step training-time-test loss of `head` on `x`.
fn loss_of(
    head: &Eagle3<Ad>,
    x: &Batch,
    attn: TttAttention,
) -> (Tensor<Ad, 1>, Vec<confu_train::eagle3::TttStep>) {
    let c = config();
    let (taps, target) = (x.taps.clone(), x.target.clone());
    ttt_loss(
        head, &c, &x.embed, taps, &x.ids, target, &x.valid, 3, 0.8, attn,
    )
}

fn loss_and_grad(
    head: &Eagle3<Ad>,
    x: &Batch,
    attn: TttAttention,
) -> (f32, Vec<f32>, Vec<confu_train::eagle3::TttStep>) {
    let (loss, per_step) = loss_of(head, x, attn);
    let value: f32 = loss.clone().into_data().to_vec::<f32>().unwrap()[0];
    let grads = loss.backward();
    let g: Vec<f32> = head
        .midlayer
        .self_attn
        .q_proj
        .weight
        .val()
        .grad(&grads)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    (value, g, per_step)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().map(|x| x.abs()).fold(1e-12, f32::max);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn efficient_ttt_attention_equals_the_naive_reference() {
    let head = Eagle3::<Ad>::init(&config(), 11, &Default::default());
    let x = batch(3, 3);
    let (l1, g1, s1) = loss_and_grad(&head, &x, TttAttention::Efficient);
    let (l2, g2, s2) = loss_and_grad(&head, &x, TttAttention::Naive);
    let rel = max_rel(&g1, &g2);
    println!("ttt: loss efficient {l1:.6} naive {l2:.6}; per-step {s1:?} vs {s2:?}; q_proj grad max rel diff {rel:.2e}");
    assert!((l1 - l2).abs() <= 1e-5 * l2.abs(), "{l1} vs {l2}");
    assert!(rel < 1e-4, "gradients differ: {rel}");
    assert_eq!(s1.len(), 3);
}

#[test]
fn masked_positions_do_not_influence_loss_or_gradients() {
    let head = Eagle3::<Ad>::init(&config(), 12, &Default::default());
    let x = batch(3, 3);
    let (l, g, _) = loss_and_grad(&head, &x, TttAttention::Efficient);
    // Perturb the target at every masked position only.
    let device = Default::default();
    let mut data: Vec<f32> = x.target.clone().into_data().to_vec().unwrap();
    for (s, ok) in x.valid.iter().enumerate() {
        for (p, &v) in ok.iter().enumerate() {
            if !v {
                for w in 0..12 {
                    data[(s * 7 + p) * 12 + w] += 5.0 * ((w + p) as f32).cos();
                }
            }
        }
    }
    let y = Batch {
        target: Tensor::from_data(TensorData::new(data.clone(), [2, 7, 12]), &device),
        ..batch(3, 3)
    };
    let (l2, g2, _) = loss_and_grad(&head, &y, TttAttention::Efficient);
    assert_eq!(
        l.to_bits(),
        l2.to_bits(),
        "a masked position changed the loss"
    );
    assert_eq!(g, g2, "a masked position changed the gradients");
    // Perturbing a valid position does change them (the check can fail).
    let mut data2 = data;
    data2[12] += 5.0;
    assert!(y.valid[0][1]);
    let z = Batch {
        target: Tensor::from_data(TensorData::new(data2, [2, 7, 12]), &device),
        ..batch(3, 3)
    };
    let (l3, _, _) = loss_and_grad(&head, &z, TttAttention::Efficient);
    assert_ne!(l.to_bits(), l3.to_bits());
}

#[test]
fn adamw_steps_lower_the_ttt_loss() {
    let c = config();
    let mut head = Eagle3::<Ad>::init(&c, 13, &Default::default());
    let mut optim = AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(0.0)
        .init();
    let x = batch(4, 5);
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..40 {
        let (loss, _) = loss_of(&head, &x, TttAttention::Efficient);
        last = loss.clone().into_data().to_vec::<f32>().unwrap()[0];
        first.get_or_insert(last);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(1e-2, head, grads);
    }
    let first = first.unwrap();
    println!("ttt: loss {first:.4} -> {last:.4} after 40 steps");
    assert!(last < first * 0.9, "{first} -> {last}");
    let _ = head.num_params();
}
