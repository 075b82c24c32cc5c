//! The self-distillation cache holds one target's text: a changed target (or corpus) regenerates
//! it instead of silently training on the old target's continuations.

mod common;

use backend_cpu::Cpu;
use confu_model::{Llama, TargetModel};
use confu_train::pretrain::Packed;
use confu_train::self_distill::{self_distilled, SelfDistill, CACHE_FILE};

#[test]
fn the_cache_is_keyed_by_the_target_and_the_corpus() {
    let c = common::tiny_llama(30, 16, 32, 2, 2, 1, 64);
    let device = Default::default();
    let target = |seed| {
        TargetModel::from_module(
            c.clone(),
            Llama::<Cpu>::init(&c, seed, &device).unwrap(),
            backend_cpu::ops(),
            &device,
        )
    };
    let corpus = Packed {
        seq_len: 10,
        tokens: (0..11 * 6).map(|i| 2 + ((i * 5) % 23) as u32).collect(),
    };
    let settings = SelfDistill {
        sequences: 3,
        prompt_tokens: 3,
        temperature: 0.0,
        top_p: None,
        seed: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join(CACHE_FILE);
    let mut runs = 0;
    let a = self_distilled(&target(1), &corpus, &settings, &cache, |_, _| runs += 1).unwrap();
    assert_eq!(runs, 3);
    // Same target: read back. Another target: generated anew (its own text).
    let again = self_distilled(&target(1), &corpus, &settings, &cache, |_, _| runs += 1).unwrap();
    assert_eq!((runs, &again.tokens), (3, &a.tokens));
    let b = self_distilled(&target(2), &corpus, &settings, &cache, |_, _| runs += 1).unwrap();
    assert_eq!(runs, 6, "a changed target must not reuse the cache");
    assert_ne!(b.tokens, a.tokens);
    // Another corpus: generated anew too.
    let other = Packed {
        tokens: corpus.tokens.iter().map(|t| 2 + (t + 1) % 23).collect(),
        ..corpus
    };
    self_distilled(&target(2), &other, &settings, &cache, |_, _| runs += 1).unwrap();
    assert_eq!(runs, 9);
}
