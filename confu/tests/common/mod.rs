//! Shared pieces of the lossless tests: prompts, the fixture EAGLE-3 head, the near-tie rule of
//! greedy comparisons and the chi-square test of sampled distributions.
#![allow(dead_code)]

use backend_cpu::Cpu;
use confu::reference::fixture_dirs;
use confu::{Engine, Generation, GenerationConfig};
use confu_core::SamplingParams;
use confu_model::TargetModel;

pub fn draft_dir() -> std::path::PathBuf {
    let dir = confu::reference::fixture_folders("eagle3")
        .into_iter()
        .next()
        .expect("an eagle3 fixture");
    confu::reference::fixture_models(&dir).unwrap().1
}

pub fn prompts(vocab: u32) -> Vec<Vec<u32>> {
    let mut p: Vec<Vec<u32>> = (0..5u32)
        .map(|s| {
            (0..(4 + 7 * s))
                .map(|i| (i * 31 + s * 97 + 11) % vocab)
                .collect()
        })
        .collect();
    // Repetitive text, where lookup finds matches.
    p.push([5u32, 6, 7, 8].iter().cycle().take(24).copied().collect());
    p.push(vec![465]);
    p
}

pub fn top2_gap(model: &TargetModel<Cpu>, seq: &[u32]) -> f32 {
    confu::greedy_rule::top2_gap(model, seq).unwrap()
}

/// Pearson chi-square of two samples over categories; rare categories are pooled so each
/// expected count is at least 5. Returns (statistic, degrees of freedom).
pub fn chi_square(a: &[u32], b: &[u32]) -> (f64, usize) {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for &x in a {
        counts.entry(x).or_default().0 += 1.0;
    }
    for &x in b {
        counts.entry(x).or_default().1 += 1.0;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pool = (0.0, 0.0);
    for &(ca, cb) in counts.values() {
        if (ca + cb) * na.min(nb) / (na + nb) >= 5.0 {
            cells.push((ca, cb));
        } else {
            pool.0 += ca;
            pool.1 += cb;
        }
    }
    if pool.0 + pool.1 > 0.0 {
        cells.push(pool);
    }
    let mut stat = 0.0;
    for (ca, cb) in &cells {
        let total = ca + cb;
        let ea = total * na / (na + nb);
        let eb = total * nb / (na + nb);
        stat += (ca - ea).powi(2) / ea + (cb - eb).powi(2) / eb;
    }
    (stat, cells.len().saturating_sub(1))
}

/// Upper 0.999 quantile of chi-square with `df` degrees of freedom (Wilson–Hilferty).
pub fn chi2_critical(df: usize) -> f64 {
    let k = df.max(1) as f64;
    let z = 3.09;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

pub fn same_distribution(label: &str, a: &[u32], b: &[u32]) -> Result<(), String> {
    let (stat, df) = chi_square(a, b);
    let crit = chi2_critical(df);
    println!("lossless {label}: chi2 = {stat:.1} with {df} dof (0.999 critical {crit:.1})");
    if stat < crit {
        Ok(())
    } else {
        Err(format!(
            "{label}: distributions differ (chi2 {stat:.1} >= {crit:.1}, {df} dof)"
        ))
    }
}

/// `got` equals vanilla's `want` under the near-tie rule (`confu::greedy_rule`).
pub fn check_greedy(
    target: &TargetModel<Cpu>,
    name: &str,
    label: &str,
    prompt: &[u32],
    want: &Generation,
    got: &Generation,
) {
    match confu::greedy_rule::check_greedy(target, prompt, want, got) {
        Ok(None) => {}
        Ok(Some((i, gap))) => println!("speculative {name} {label}: prompt of {} tokens diverges at step {i}, top-2 logit gap {gap:.2e} < 1e-4 (tolerated)", prompt.len()),
        Err(e) => panic!("{name} {label}, {e}"),
    }
}

/// `n` sampled runs of `positions` tokens each from `vanilla` and from `spec` (other seeds), at
/// `(temperature, top_k, top_p)`: the tokens per position of each, and the drafts `spec` accepted.
pub fn sample_both(
    vanilla: &Engine<Cpu>,
    spec: &Engine<Cpu>,
    prompt: &[u32],
    (temperature, top_k, top_p): (f32, Option<usize>, Option<f32>),
    n: usize,
    positions: usize,
) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, usize) {
    let mut a = vec![Vec::new(); positions];
    let mut b = vec![Vec::new(); positions];
    let mut accepted = 0;
    for seed in 0..n as u64 {
        let config = GenerationConfig {
            max_new_tokens: positions,
            sampling: SamplingParams {
                temperature,
                top_k,
                top_p,
                seed,
            },
            stop_at_eos: false,
        };
        let g = vanilla.generate(prompt, &config, |_| {}).unwrap();
        let sampling = SamplingParams {
            seed: seed + 1_000_000,
            ..config.sampling.clone()
        };
        let h = spec
            .generate(prompt, &GenerationConfig { sampling, ..config }, |_| {})
            .unwrap();
        accepted += h.rounds.iter().map(|r| r.accepted_drafts).sum::<usize>();
        for p in 0..positions {
            a[p].push(g.generated_ids[p]);
            b[p].push(h.generated_ids[p]);
        }
    }
    (a, b, accepted)
}

/// The sampling tests' target (`llama3-tiny`), prompt and tree.
pub fn sampling_setup() -> (TargetModel<Cpu>, Vec<u32>, confu_draft::TreeSettings) {
    let dir = fixture_dirs("hf")
        .into_iter()
        .find(|d| d.ends_with("llama3-tiny"))
        .expect("llama3-tiny");
    let target = TargetModel::<Cpu>::load(&dir, backend_cpu::ops(), &Default::default()).unwrap();
    let prompt: Vec<u32> = vec![465, 317, 443, 397, 440, 442, 375, 267, 452, 388, 13];
    let tree = confu_draft::TreeSettings {
        total_tokens: 16,
        depth: 3,
        top_k: 4,
    };
    (target, prompt, tree)
}
