//! `confu bench spec`: the cost model of a speculative round — one draft expansion step, a tree
//! build, target verification at several tree sizes, the same with ConFu's `[con]` rows (on every
//! node, and on the root plus a quarter of the nodes, `top:M`), and KV compaction — each a median
//! over runs — and the verification of every size against the first, timed in turn within each
//! run so that the ratios are paired.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{backend::Backend, Tensor};
use clap::Args;
use confu_core::{DenseKvCache, DraftTree, Error, KvCache, Ops, Result, WarmThreads};
use confu_draft::{DraftConfig, Eagle3Drafter, Eagle3Head, TreeSettings};
use confu_model::{LogitRows, ModelInput, Tap, TargetModel};
use confu_moe::{ConfuDims, ConfuOptions, ConfuParams, ContemplateNodes};
use confu_verify::{compact_to_path, covered_nodes, score, verify_tree, Contemplator};

use crate::backend::Job;
use crate::bench::{TargetArgs, MAX_RUNS};

/// Arguments of `confu bench spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// EAGLE-3 head folder (random weights of the usual shape when absent).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub draft: Option<PathBuf>,
    /// Tokens in the cache before each measurement.
    #[arg(long, default_value_t = 128, allow_hyphen_values = true)]
    pub prompt_len: usize,
    /// Tree sizes (nodes) to verify.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,16,32,64",
        allow_negative_numbers = true
    )]
    pub tree_sizes: Vec<usize>,
    /// Tree used for the drafting measurement: TOTAL,DEPTH,TOPK.
    #[arg(long, default_value = "30,4,8", value_parser = crate::draft_args::parse_tree, allow_hyphen_values = true)]
    pub tree: TreeSettings,
    /// Measured runs (median reported).
    #[arg(long, default_value_t = 5, allow_hyphen_values = true)]
    pub runs: usize,
    /// Compute device.
    #[arg(long, default_value = "cpu", allow_hyphen_values = true)]
    pub device: String,
}

thread_local! {
    /// The backend's threads kept ready while the benchmark runs, as in generation
    /// ([`confu_core::Ops::warm_threads`]); every timed pass beats it.
    static WARM: std::cell::RefCell<Option<Box<dyn WarmThreads>>> = const { std::cell::RefCell::new(None) };
}

fn beat() {
    WARM.with_borrow(|w| w.beat());
}

fn median_of(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    beat();
    f()?; // warm-up
    Ok(median(
        (0..runs)
            .map(|_| {
                beat();
                f()
            })
            .collect::<Result<Vec<f64>>>()?,
    ))
}

/// The middle value (the upper one of an even count); `v` is not empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of one verification of `tree` after the cached prefix, which is restored after it.
fn time_verify<B: Backend>(
    target: &TargetModel<B>,
    cache: &mut DenseKvCache<B>,
    tree: &DraftTree,
    taps: &[Tap],
) -> Result<f64> {
    let prefix = cache.len();
    beat();
    let t = Instant::now();
    let v = verify_tree(target, cache, tree, taps)?;
    std::hint::black_box(v.logits.len());
    let dt = t.elapsed().as_secs_f64();
    cache.truncate(prefix)?;
    Ok(dt)
}

/// A tree of `n` nodes shaped like a dynamic tree: a main chain with side branches.
fn shaped_tree(n: usize, vocab: usize) -> DraftTree {
    let mut t = DraftTree::root_only(1);
    for i in 1..n {
        let parent = if i % 3 == 0 { i - 2 } else { i - 1 };
        t.tokens.push(((i * 7919) % vocab) as u32);
        t.parents.push(Some(parent));
        t.depths.push(t.depths[parent] + 1);
    }
    t
}

impl Job for SpecArgs {
    type Output = ();

    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<()> {
        if self.runs == 0 || self.runs > MAX_RUNS {
            return Err(Error::invalid(
                "runs",
                self.runs,
                format!("must be in 1..={MAX_RUNS}"),
            ));
        }
        if self.prompt_len == 0 {
            return Err(Error::invalid("prompt-len", 0, "must be >= 1"));
        }
        let (_, target) = self.target.load(ops.clone(), &device)?;
        WARM.set(ops.warm_threads());
        let head = Arc::new(match &self.draft {
            Some(dir) => Eagle3Head::load(dir, &target)?,
            None => Eagle3Head::random(DraftConfig::for_target(target.config()), 1, &target)?,
        });
        let c = target.config().clone();
        let max_tree = self
            .tree_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(self.tree.total_tokens);
        let capacity = self.prompt_len.saturating_add(max_tree).saturating_add(1);
        if capacity > c.max_position_embeddings {
            return Err(Error::Capacity {
                what: "prompt-len + largest tree",
                requested: capacity,
                limit: c.max_position_embeddings,
            });
        }
        let prompt: Vec<u32> = (0..self.prompt_len as u32)
            .map(|i| (i * 31 + 7) % c.vocab_size as u32)
            .collect();
        let taps: Vec<Tap> = confu_model::feature_taps(c.num_hidden_layers);
        let mut cache = target.new_cache(0, capacity);
        let out = target.forward_causal(&mut cache, &prompt, LogitRows::Last, &taps)?;
        let features = burn::tensor::Tensor::cat(out.taps, 1);

        let mut drafter = Eagle3Drafter::new(
            head.clone(),
            ops.clone(),
            capacity + self.tree.expansion_slots(),
        );
        let next: Vec<u32> = prompt[1..].iter().copied().chain([1]).collect();
        drafter.extend(features, &next)?;
        let build = median_of(self.runs, || {
            let t = Instant::now();
            let tree = drafter.draft_tree(1, self.tree)?;
            std::hint::black_box(tree.len());
            Ok(t.elapsed().as_secs_f64())
        })?;
        crate::outln!(
            "draft tree {},{},{}: {:.2} ms ({} expansion steps of {} rows + root)",
            self.tree.total_tokens,
            self.tree.depth,
            self.tree.top_k,
            build * 1e3,
            self.tree.depth,
            self.tree.top_k
        );
        let prefix = cache.len();
        let mut confu = ConfuBench::new(&target, &head, &prompt, &taps, 2 * capacity)?;
        let trees: Vec<DraftTree> = self
            .tree_sizes
            .iter()
            .map(|&n| shaped_tree(n.max(1), c.vocab_size))
            .collect();
        for (&n, tree) in self.tree_sizes.iter().zip(&trees) {
            let verify = median_of(self.runs, || time_verify(&target, &mut cache, tree, &taps))?;
            let path: Vec<usize> = (0..tree.len())
                .filter(|i| i % 3 != 0 || *i == 0)
                .take(5)
                .collect();
            let compact = median_of(self.runs, || {
                verify_tree(&target, &mut cache, tree, &[])?;
                let t = Instant::now();
                compact_to_path(&mut cache, prefix, &path)?;
                let dt = t.elapsed().as_secs_f64();
                cache.truncate(prefix)?;
                Ok(dt)
            })?;
            crate::outln!(
                "verify {n:>3} nodes: {:>8.2} ms ({:.2} ms/node); compaction to a {}-node path: {:.3} ms",
                verify * 1e3,
                verify * 1e3 / n.max(1) as f64,
                path.len(),
                compact * 1e3
            );
            for (label, rule) in [
                ("all", ContemplateNodes::All),
                ("top", ContemplateNodes::Top(n / 4)),
            ] {
                let covered = covered_nodes(tree, &[], rule);
                let with_con = confu.verify(&target, tree, &covered, &taps, self.runs)?;
                let rule = if label == "all" {
                    "all".to_string()
                } else {
                    rule.to_string()
                };
                crate::outln!(
                    "  + {:>3} [con] rows ({rule}): {:>8.2} ms = {:.2}x the nodes alone",
                    covered.len(),
                    with_con * 1e3,
                    with_con / verify
                );
            }
        }
        if trees.len() > 1 {
            let ratios = interleaved_ratios(self.runs, trees.len(), |i| {
                time_verify(&target, &mut cache, &trees[i], &taps)
            })?;
            let cells: Vec<String> = trees
                .iter()
                .zip(&ratios)
                .skip(1)
                .map(|(t, r)| format!("{}: {r:.2}x", t.len()))
                .collect();
            crate::outln!(
                "verify against {} node(s), sizes interleaved in every run (median of the runs' ratios): {}",
                trees[0].len(),
                cells.join(", ")
            );
        }
        Ok(())
    }
}

/// Time `sizes` measurements in turn, `runs` times (after one warm-up turn), and return each
/// one's median ratio to the first, taken within a turn: the machine's drift between sizes,
/// which separate medians keep, cancels.
fn interleaved_ratios(
    runs: usize,
    sizes: usize,
    mut time: impl FnMut(usize) -> Result<f64>,
) -> Result<Vec<f64>> {
    let mut per_size: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); sizes];
    for turn in 0..=runs {
        let times = (0..sizes).map(&mut time).collect::<Result<Vec<f64>>>()?;
        if turn == 0 {
            continue;
        }
        for (ratios, t) in per_size.iter_mut().zip(&times) {
            ratios.push(t / times[0].max(f64::MIN_POSITIVE));
        }
    }
    Ok(per_size.into_iter().map(median).collect())
}

/// ConFu's verification cost: a cache holding the soft prompt and the same prompt, random
/// ConFu parameters of the default options (only shapes matter for timing).
struct ConfuBench<B: Backend> {
    contemplator: Contemplator<B>,
    cache: DenseKvCache<B>,
    embedding: Tensor<B, 2>,
}

impl<B: Backend> ConfuBench<B> {
    fn new(
        target: &TargetModel<B>,
        head: &Eagle3Head<B>,
        prompt: &[u32],
        taps: &[Tap],
        capacity: usize,
    ) -> Result<Self> {
        let options = ConfuOptions::default();
        let dims = ConfuDims {
            target_hidden: target.config().hidden_size,
            draft_hidden: head.config.hidden_size,
            draft_kv_heads: head.config.shape.kv_heads,
        };
        let params = ConfuParams::random(&options, dims, 2, target.device());
        let contemplator = Contemplator::new(target, options, Arc::new(params))?;
        let mut cache = target.new_cache(contemplator.reserved(), capacity);
        contemplator.install(&mut cache)?;
        let out = target.forward_causal(&mut cache, prompt, LogitRows::Last, taps)?;
        let last = Tensor::cat(out.taps, 1).narrow(0, prompt.len() - 1, 1);
        let embedding = contemplator.embedding(last, target.ops().as_ref()).0;
        Ok(Self {
            contemplator,
            cache,
            embedding,
        })
    }

    /// Median time of one pass over `tree` with `[con]` rows on `covered`.
    fn verify(
        &mut self,
        target: &TargetModel<B>,
        tree: &DraftTree,
        covered: &[usize],
        taps: &[Tap],
        runs: usize,
    ) -> Result<f64> {
        let prefix = self.cache.len();
        median_of(runs, || {
            let t = Instant::now();
            let c = &self.contemplator;
            let layout = c.layout(&self.cache, tree, covered)?;
            let inputs = c.inputs(target, tree, self.embedding.clone(), covered.len())?;
            let s = score(
                target,
                &mut self.cache,
                &layout,
                ModelInput::Embeds(inputs),
                taps,
            )?;
            std::hint::black_box(s.logits.len());
            let dt = t.elapsed().as_secs_f64();
            self.cache.truncate(prefix)?;
            Ok(dt)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_ratios_cancel_drift_between_turns_and_skip_the_warm_up() {
        // Size i costs (i + 1) units; the machine runs 1x, 3x, 0.5x, ... slower turn by turn,
        // and the warm-up turn is 100x slow for the first size only.
        let drift: [f64; 6] = [100.0, 1.0, 3.0, 0.5, 2.0, 1.5];
        let mut calls = 0usize;
        let ratios = interleaved_ratios(5, 3, |i| {
            let turn = calls / 3;
            calls += 1;
            let warm = if turn == 0 && i == 0 { 100.0 } else { 1.0 };
            Ok((i + 1) as f64 * drift[turn].min(3.0) * warm)
        })
        .unwrap();
        assert_eq!(
            calls, 18,
            "one warm-up turn and 5 measured turns of 3 sizes"
        );
        assert_eq!(ratios, vec![1.0, 2.0, 3.0]);
    }
}
