//! The cost model's starting point for `--tree auto`: verification passes of growing row counts,
//! timed on this device with this target, before the first prompt. Rounds refine it later; what
//! matters here is the shape of the curve (how fast a pass of `n` rows grows with `n`), which
//! decides whether the first rounds draft at all.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use confu_core::{DraftTree, KvCache, Result, WarmThreads};
use confu_model::{LogitRows, ModelInput, Tap, TargetModel};
use confu_verify::{score, RowLayout};

/// Time the calibration may take: on a large target only the small row counts are measured, and
/// the cost model extends them.
pub const CALIBRATION_BUDGET: Duration = Duration::from_millis(400);

/// Row counts measured, up to the largest pass a tree can ask for.
const ROWS: [usize; 15] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192];

/// Passes per row count; the fastest is kept (the first also warms caches and allocators).
const REPEATS: usize = 5;

/// `(rows, seconds)` of verification passes (tree-masked, logits of every row read to the host,
/// `taps` gathered) after a 128-token context, for row counts up to `max_rows`, within `budget`
/// (rows 1 and 2 are always measured).
pub fn calibrate<B: Backend>(
    target: &TargetModel<B>,
    max_rows: usize,
    taps: &[Tap],
    budget: Duration,
) -> Result<Vec<(usize, f64)>> {
    let c = target.config();
    let context = 128.min(c.max_position_embeddings.saturating_sub(max_rows + 1));
    let vocab = c.vocab_size.max(1);
    let prompt: Vec<u32> = (0..context.max(1))
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let mut cache = target.new_cache(0, prompt.len() + max_rows);
    target.forward_causal(&mut cache, &prompt, LogitRows::Last, &[])?;
    let prefix: Vec<usize> = (0..cache.len()).collect();
    // Measured as the decode loop runs them: with the backend's threads kept ready.
    let warm = target.ops().warm_threads();
    let start = Instant::now();
    let mut points = Vec::new();
    for rows in ROWS.into_iter().filter(|&r| r <= max_rows.max(1)) {
        if rows > 2 && start.elapsed() > budget {
            break;
        }
        // A chain: every row sees the context and the rows before it.
        let tree = DraftTree {
            tokens: (0..rows).map(|i| ((i * 31 + 7) % vocab) as u32).collect(),
            parents: (0..rows).map(|i| i.checked_sub(1)).collect(),
            depths: (0..rows).collect(),
        };
        let mut best = f64::INFINITY;
        for _ in 0..REPEATS {
            let layout = RowLayout::tree(cache.reserved(), cache.len(), &tree)?;
            warm.beat();
            let t = Instant::now();
            score(
                target,
                &mut cache,
                &layout,
                ModelInput::Ids(&tree.tokens),
                taps,
            )?;
            best = best.min(t.elapsed().as_secs_f64());
            cache.keep(&prefix)?;
        }
        points.push((rows, best));
    }
    Ok(points)
}
