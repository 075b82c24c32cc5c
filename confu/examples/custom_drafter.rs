//! A research drafter plugged into the engine: it proposes a chain that repeats the token seen
//! `period` steps back. The engine verifies it losslessly like any drafter, so greedy output
//! equals plain decoding whatever the drafter proposes.
//!
//! `cargo run -p confu --example custom_drafter [TARGET_DIR]` (default: a fixture target).

use backend_cpu::Cpu;
use confu::{Drafter, Engine, GenerationConfig, Observation};
use confu_core::{DraftTree, Result};
use confu_model::TargetModel;

/// Proposes `len` tokens copied from `period` positions earlier in the context.
struct Periodic {
    period: usize,
    len: usize,
}

impl Drafter<Cpu> for Periodic {
    fn max_tree(&self) -> usize {
        self.len + 1
    }

    fn observe(&mut self, _obs: Observation<'_, Cpu>) -> Result<()> {
        Ok(())
    }

    fn propose(&mut self, context: &[u32], root: u32, room: usize) -> Result<DraftTree> {
        let mut text = context.to_vec();
        text.push(root);
        let mut tree = DraftTree::root_only(root);
        for i in 0..self.len.min(room.saturating_sub(1)) {
            let Some(&t) = text
                .len()
                .checked_sub(self.period)
                .and_then(|j| text.get(j))
            else {
                break;
            };
            text.push(t);
            tree.tokens.push(t);
            tree.parents.push(Some(i));
            tree.depths.push(i + 1);
        }
        Ok(tree)
    }
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| confu::reference::fixture_roots()[0].join("hf/llama3-tiny"));
    let target = TargetModel::<Cpu>::load(&dir, backend_cpu::ops(), &Default::default())?;
    let engine = Engine::new(target);
    let prompt: Vec<u32> = [5u32, 6, 7, 8].iter().cycle().take(16).copied().collect();
    let config = GenerationConfig {
        max_new_tokens: 32,
        ..Default::default()
    };
    let plain = engine.generate(&prompt, &config, |_| {})?;
    let mut drafter = Periodic { period: 4, len: 4 };
    let spec = engine.generate_with(&prompt, &config, &mut drafter, |_| {})?;
    assert_eq!(
        spec.generated_ids, plain.generated_ids,
        "a drafter can never change greedy output"
    );
    println!(
        "custom drafter: {} tokens in {} rounds (tau {:.2}), identical to plain decoding",
        spec.generated_ids.len(),
        spec.rounds.len(),
        spec.tau()
    );
    Ok(())
}
