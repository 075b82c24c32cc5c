//! ConFu readiness of the target forward, on every HF fixture model:
//! 1. rows no real row may see (contemplate-like rows, soft-prompt rows in the reserved region)
//!    leave the real rows' logits unchanged;
//! 2. a tree verified in one forward with a tree mask gives each node the logits of its
//!    root-to-node path run alone with a causal mask;
//! 3. after keeping one path's slots, decoding on equals a fresh forward over the accepted sequence.

use backend_cpu::Cpu;
use burn::tensor::{Tensor, TensorData};
use confu::reference::{fixture_dirs, rel_l2};
use confu_core::{kv_cache::Region, DenseKvCache, KvCache, Visibility};
use confu_model::{ForwardRequest, LogitRows, ModelInput, TargetModel};

type Model = TargetModel<Cpu>;

fn models() -> Vec<(String, Model)> {
    let dirs = fixture_dirs("hf");
    assert!(!dirs.is_empty(), "no HF fixtures found");
    dirs.iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            let m = Model::load(d, backend_cpu::ops(), &Default::default())
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            (name, m)
        })
        .collect()
}

fn ids(n: usize, salt: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + salt * 101 + 3) % vocab as u32)
        .collect()
}

/// Deterministic pseudo-random embeddings with roughly unit-scale entries.
fn embeds(rows: usize, d: usize, salt: usize) -> Tensor<Cpu, 2> {
    let v: Vec<f32> = (0..rows * d)
        .map(|i| ((i * 7919 + salt * 104729) as f32 * 0.618).sin())
        .collect();
    Tensor::from_data(TensorData::new(v, [rows, d]), &Default::default())
}

fn forward(
    m: &Model,
    cache: &mut DenseKvCache<Cpu>,
    input: ModelInput<'_, Cpu>,
    positions: &[usize],
    vis: &Visibility,
    region: Region,
) -> Vec<Vec<f32>> {
    let out = m
        .forward(
            cache,
            ForwardRequest {
                input,
                positions,
                visibility: vis,
                logits: if region == Region::Main {
                    LogitRows::All
                } else {
                    LogitRows::None
                },
                taps: &[],
                region,
            },
        )
        .unwrap();
    match out.logits {
        None => vec![],
        Some(l) => {
            let v = m.config().vocab_size;
            let flat: Vec<f32> = l.into_data().to_vec().unwrap();
            flat.chunks(v).map(|c| c.to_vec()).collect()
        }
    }
}

fn prefill(m: &Model, cache: &mut DenseKvCache<Cpu>, prompt: &[u32]) {
    m.forward_causal(cache, prompt, LogitRows::None, &[])
        .unwrap();
}

fn max_rel(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| rel_l2(x, y))
        .fold(0.0, f64::max)
}

#[test]
fn hidden_extra_rows_leave_real_logits_unchanged() {
    for (name, m) in models() {
        let (v, d) = (m.config().vocab_size, m.config().hidden_size);
        let prompt = ids(9, 1, v);
        let real = ids(3, 2, v);
        let n = prompt.len();

        // Reference: prefix, then the real rows alone.
        let mut c0 = m.new_cache(0, 32);
        prefill(&m, &mut c0, &prompt);
        let pos: Vec<usize> = (n..n + real.len()).collect();
        let want = forward(
            &m,
            &mut c0,
            ModelInput::Ids(&real),
            &pos,
            &Visibility::causal(0, n, 3),
            Region::Main,
        );

        // Soft-prompt rows in the reserved region (causal among themselves, positions 0..s), a
        // prefix that never sees them, then real rows followed by 2 contemplate-like rows that see
        // the soft prompt, the prefix and themselves; no real row sees them.
        let s = 4;
        let mut c1 = m.new_cache(s, 32);
        let mut soft = Visibility::blank(s, s);
        for r in 0..s {
            soft.allow_range(r, 0..r + 1);
        }
        let soft_pos: Vec<usize> = (0..s).collect();
        forward(
            &m,
            &mut c1,
            ModelInput::Embeds(embeds(s, d, 7)),
            &soft_pos,
            &soft,
            Region::Reserved,
        );
        prefill(&m, &mut c1, &prompt);
        let extra = 2;
        let rows = real.len() + extra;
        let mut vis = Visibility::causal(s, n, real.len());
        let mut full = Visibility::blank(rows, s + n + rows);
        for r in 0..real.len() {
            for col in 0..vis.cols() {
                if vis.get(r, col) {
                    full.allow(r, col);
                }
            }
        }
        for e in 0..extra {
            let r = real.len() + e;
            full.allow_range(r, 0..s + n);
            full.allow(r, s + n + r);
        }
        vis = full;
        let input = Tensor::cat(vec![m.embed(&real).unwrap(), embeds(extra, d, 11)], 0);
        let mut pos: Vec<usize> = (n..n + real.len()).collect();
        pos.extend([n + 1, n + 3]);
        let got = forward(
            &m,
            &mut c1,
            ModelInput::Embeds(input),
            &pos,
            &vis,
            Region::Main,
        );
        let r = max_rel(&got[..real.len()], &want);
        let identical = got[..real.len()] == want[..];
        println!("readiness {name}: hidden extra rows + reserved soft prompt: real-row logits max rel_l2={r:.2e} bit-identical={identical}");
        assert!(
            r <= 1e-6,
            "{name}: real rows changed by hidden rows (rel_l2 {r:.3e})"
        );
        // The CPU kernels are row-independent and skip hidden keys, so here it is exact.
        assert!(
            identical,
            "{name}: CPU kernels should leave real rows bit-identical"
        );
    }
}

/// A small tree: 0 root; 1, 2 children of 0; 3, 4 children of 1; 5 child of 2; 6 child of 3.
const PARENTS: [Option<usize>; 7] = [None, Some(0), Some(0), Some(1), Some(1), Some(2), Some(3)];

fn path_to(node: usize) -> Vec<usize> {
    let mut path = vec![node];
    while let Some(p) = PARENTS[*path.last().unwrap()] {
        path.push(p);
    }
    path.reverse();
    path
}

/// Prefill `prompt`, then verify the tree of `tokens` (shaped by `PARENTS`) in one forward with a
/// tree mask; returns each node's logits, the cache left holding prefix + tree.
fn prefill_and_verify_tree(
    m: &Model,
    cache: &mut DenseKvCache<Cpu>,
    prompt: &[u32],
    tokens: &[u32],
) -> Vec<Vec<f32>> {
    let n = prompt.len();
    prefill(m, cache, prompt);
    let pos: Vec<usize> = (0..PARENTS.len())
        .map(|i| n + path_to(i).len() - 1)
        .collect();
    let vis = Visibility::tree(0, n, &PARENTS).unwrap();
    forward(m, cache, ModelInput::Ids(tokens), &pos, &vis, Region::Main)
}

#[test]
fn tree_nodes_match_their_paths_run_causally() {
    for (name, m) in models() {
        let v = m.config().vocab_size;
        let prompt = ids(11, 3, v);
        let n = prompt.len();
        let tokens = ids(PARENTS.len(), 4, v);
        let mut cache = m.new_cache(0, 64);
        let tree = prefill_and_verify_tree(&m, &mut cache, &prompt, &tokens);

        let mut worst = 0.0f64;
        for (node, node_logits) in tree.iter().enumerate() {
            let path: Vec<u32> = path_to(node).iter().map(|&i| tokens[i]).collect();
            cache.truncate(n).unwrap();
            let pos: Vec<usize> = (n..n + path.len()).collect();
            let causal = forward(
                &m,
                &mut cache,
                ModelInput::Ids(&path),
                &pos,
                &Visibility::causal(0, n, path.len()),
                Region::Main,
            );
            let r = rel_l2(node_logits, causal.last().unwrap());
            worst = worst.max(r);
            assert!(
                r <= 1e-5,
                "{name}: node {node} differs from its path (rel_l2 {r:.3e})"
            );
        }
        println!(
            "readiness {name}: tree of {} nodes vs causal paths: max rel_l2={worst:.2e} ok",
            PARENTS.len()
        );
    }
}

#[test]
fn keeping_one_path_then_decoding_equals_a_fresh_forward() {
    for (name, m) in models() {
        let v = m.config().vocab_size;
        let prompt = ids(10, 5, v);
        let n = prompt.len();
        let tokens = ids(PARENTS.len(), 6, v);
        let mut cache = m.new_cache(0, 64);
        prefill_and_verify_tree(&m, &mut cache, &prompt, &tokens);

        // Accept the path 0 → 1 → 3 → 6 and compact the cache to prefix + path.
        let path = path_to(6);
        let mut keep: Vec<usize> = (0..n).collect();
        keep.extend(path.iter().map(|&i| n + i));
        cache.keep(&keep).unwrap();
        assert_eq!(cache.len(), n + path.len());

        // Continue decoding three more tokens, one at a time.
        let more = ids(3, 8, v);
        let mut continued = Vec::new();
        for (i, &t) in more.iter().enumerate() {
            let p = n + path.len() + i;
            let vis = Visibility::causal(0, cache.len(), 1);
            continued.extend(forward(
                &m,
                &mut cache,
                ModelInput::Ids(&[t]),
                &[p],
                &vis,
                Region::Main,
            ));
        }

        // Fresh forward over the accepted sequence.
        let mut seq = prompt.clone();
        seq.extend(path.iter().map(|&i| tokens[i]));
        seq.extend(&more);
        let mut fresh_cache = m.new_cache(0, 64);
        let pos: Vec<usize> = (0..seq.len()).collect();
        let fresh = forward(
            &m,
            &mut fresh_cache,
            ModelInput::Ids(&seq),
            &pos,
            &Visibility::causal(0, 0, seq.len()),
            Region::Main,
        );
        let r = max_rel(&continued, &fresh[seq.len() - more.len()..]);
        println!(
            "readiness {name}: keep path {path:?} then decode 3: max rel_l2 vs fresh={r:.2e} ok"
        );
        assert!(
            r <= 1e-5,
            "{name}: decoding after compaction differs (rel_l2 {r:.3e})"
        );
    }
}
