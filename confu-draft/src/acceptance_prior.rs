//! What `--tree auto` assumes about a head before it has verified anything: the probability that
//! the target takes the child of each sibling rank at each depth. A head trained by
//! `confu train eagle3` or `confu train confu` records its dev evaluation in `log.json` in its
//! folder, per unrolled training-time-test step: the top-1 accuracy of step `k` is how often the
//! head's best draft at depth `k + 1`, fed its own features, is the target's next token. That is
//! the rank-0 rate at that depth under greedy verification; the prior takes it, and gives the
//! other ranks the generic prior's shares of what it leaves. A head without that record (an
//! official checkpoint) gets the generic prior.
//!
//! The dev top-1 is a greedy figure: under sampling (T > 0) acceptance is lower, and the online
//! statistics, which start from this prior as a few pseudo-trials, correct it within a few rounds.

use std::path::{Path, PathBuf};

use confu_core::{Error, Result};
use serde::Deserialize;

/// The generic prior's rank-0 rate: the best-ranked child is taken 60 % of the time.
pub const GENERIC_TOP1: f64 = 0.6;

/// The generic prior's rate of rank `r ≥ 1` is `GENERIC_SIBLING / r` (about 0.39 over 7 ranks, so
/// that 8 siblings cover nearly every token the target takes).
const GENERIC_SIBLING: f64 = 0.15;

/// Rank-0 rate per depth, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptancePrior {
    /// `[depth - 1]`; depths past the end use the last. Never empty, each in [0, 1].
    top1: Vec<f64>,
    /// The file the rates were read from (`None`: the generic prior).
    source: Option<PathBuf>,
}

impl Default for AcceptancePrior {
    fn default() -> Self {
        Self::generic()
    }
}

/// The part of a training log (`confu_train::TrainLog`) the prior reads.
#[derive(Deserialize)]
struct LogView {
    #[serde(default)]
    dev: Vec<DevView>,
}

#[derive(Deserialize)]
struct DevView {
    #[serde(default)]
    per_step: Vec<StepView>,
}

#[derive(Deserialize)]
struct StepView {
    top1: f64,
    count: usize,
}

impl AcceptancePrior {
    /// The prior used when nothing is known about the head.
    pub fn generic() -> Self {
        Self {
            top1: vec![GENERIC_TOP1],
            source: None,
        }
    }

    /// A prior whose rank-0 rate at depth `d` is `top1[d - 1]` (the last for deeper ones).
    pub fn from_top1(top1: Vec<f64>) -> Result<Self> {
        if top1.is_empty() {
            return Err(Error::invalid("top1", "[]", "needs a rate for depth 1"));
        }
        if let Some((i, p)) = top1
            .iter()
            .enumerate()
            .find(|(_, p)| !(p.is_finite() && (0.0..=1.0).contains(*p)))
        {
            return Err(Error::invalid(
                "top1",
                format!("{p} (depth {})", i + 1),
                "a rate must lie in [0, 1]",
            ));
        }
        Ok(Self { top1, source: None })
    }

    /// The prior recorded in `dir/log.json` by our trainer, if the folder has one with a dev
    /// evaluation per step (rates averaged over categories, weighted by their token counts).
    /// Steps from the first that evaluated no dev token on are left out (deeper depths then use
    /// the last step measured). `Ok(None)` when there is no such file, or it is a log without
    /// per-step dev results; an error when the file cannot be read or parsed, or a rate is not
    /// one.
    pub fn from_head_folder(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("log.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let log: LogView = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: path.clone(),
            msg: format!(
                "not a training log of `confu train` ({e}); the head reads its dev evaluation \
                 from this file: fix it, or move it out of the folder to use the generic prior"
            ),
        })?;
        let steps = log.dev.iter().map(|d| d.per_step.len()).max().unwrap_or(0);
        if steps == 0 {
            return Ok(None);
        }
        let bad = |field: String, msg: String| Error::Config {
            path: path.clone(),
            field,
            msg,
        };
        let mut top1 = Vec::with_capacity(steps);
        for k in 0..steps {
            let (mut hits, mut count) = (0.0, 0usize);
            for (c, dev) in log.dev.iter().enumerate() {
                let Some(s) = dev.per_step.get(k) else {
                    continue;
                };
                if !(s.top1.is_finite() && (0.0..=1.0).contains(&s.top1)) {
                    return Err(bad(
                        format!("dev[{c}].per_step[{k}].top1"),
                        format!("{} is not a rate in [0, 1]", s.top1),
                    ));
                }
                hits += s.top1 * s.count as f64;
                count += s.count;
            }
            if count == 0 {
                // A dev set too short for this many unrolled steps: the deeper steps are unknown.
                break;
            }
            top1.push(hits / count as f64);
        }
        if top1.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            top1,
            source: Some(path),
        }))
    }

    /// [`Self::from_head_folder`], or the generic prior when the folder records none.
    pub fn for_head_folder(dir: &Path) -> Result<Self> {
        Ok(Self::from_head_folder(dir)?.unwrap_or_default())
    }

    /// Probability that the child of `rank` at `depth` (≥ 1) is taken once its parent is: the
    /// rank-0 rate of that depth, and for rank `r ≥ 1` the generic prior's rate scaled to the
    /// probability the rank-0 child leaves (the generic prior itself when rank 0's is 0.6).
    pub fn rate(&self, depth: usize, rank: usize) -> f64 {
        let p = self.top1[depth.clamp(1, self.top1.len()) - 1];
        if rank == 0 {
            p
        } else {
            GENERIC_SIBLING / rank as f64 * (1.0 - p) / (1.0 - GENERIC_TOP1)
        }
    }

    /// The rank-0 rates per depth.
    pub fn top1(&self) -> &[f64] {
        &self.top1
    }

    /// The file the prior was read from (`None`: generic, or set in code).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(log: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "confu-prior-{}-{:x}",
            std::process::id(),
            log.len() * 7919 + log.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log.json"), log).unwrap();
        dir
    }

    #[test]
    fn the_generic_prior_takes_the_best_child_sixty_percent_of_the_time() {
        let g = AcceptancePrior::generic();
        assert_eq!(g.rate(1, 0), 0.6);
        assert_eq!(g.rate(5, 0), 0.6);
        assert!((g.rate(3, 1) - 0.15).abs() < 1e-12);
        assert!((g.rate(3, 3) - 0.05).abs() < 1e-12);
        let all: f64 = (0..8).map(|r| g.rate(1, r)).sum();
        assert!(all > 0.95 && all < 1.0, "{all}");
    }

    #[test]
    fn a_trained_heads_log_gives_its_per_step_top1_weighted_by_tokens() {
        // Two categories, the second with three times the tokens; a step only the first has.
        let dir = folder_with(
            r#"{"steps": [[0, 1.0, 0.001]], "wall_s": 1.0, "dev": [
                {"category": "a", "tokens": 100, "loss": 1.0, "top1": 0.5,
                 "per_step": [{"loss": 1.0, "top1": 0.5, "count": 100},
                              {"loss": 1.0, "top1": 0.4, "count": 100},
                              {"loss": 1.0, "top1": 0.2, "count": 50}]},
                {"category": "b", "tokens": 300, "loss": 1.0, "top1": 0.9,
                 "per_step": [{"loss": 1.0, "top1": 0.9, "count": 300},
                              {"loss": 1.0, "top1": 0.8, "count": 300}]}]}"#,
        );
        let p = AcceptancePrior::from_head_folder(&dir).unwrap().unwrap();
        assert_eq!(p.source(), Some(dir.join("log.json").as_path()));
        let want = [0.8, 0.7, 0.2];
        for (got, want) in p.top1().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{:?}", p.top1());
        }
        assert!(
            (p.rate(9, 0) - 0.2).abs() < 1e-12,
            "past the steps: the last"
        );
        // Rank 1 at depth 1: the generic 0.15 scaled by (1 - 0.8) / (1 - 0.6).
        assert!((p.rate(1, 1) - 0.075).abs() < 1e-12);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn folders_without_a_dev_record_get_the_generic_prior_and_bad_ones_are_named() {
        let none = std::env::temp_dir().join(format!("confu-prior-none-{}", std::process::id()));
        std::fs::create_dir_all(&none).unwrap();
        assert_eq!(AcceptancePrior::from_head_folder(&none).unwrap(), None);
        assert_eq!(
            AcceptancePrior::for_head_folder(&none).unwrap(),
            AcceptancePrior::generic()
        );
        std::fs::remove_dir_all(none).unwrap();
        // A target's log: dev results without per-step ones.
        let target = folder_with(r#"{"dev": [{"category": "a", "top1": 0.3}]}"#);
        assert_eq!(AcceptancePrior::from_head_folder(&target).unwrap(), None);
        std::fs::remove_dir_all(target).unwrap();
        let broken = folder_with("{not json");
        let e = AcceptancePrior::from_head_folder(&broken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.json") && e.contains("generic prior"), "{e}");
        std::fs::remove_dir_all(broken).unwrap();
        // A step without dev tokens ends what is known; none at step 0 is no record.
        let short = folder_with(
            r#"{"dev": [{"per_step": [{"top1": 0.75, "count": 4}, {"top1": 0.0, "count": 0}]}]}"#,
        );
        let p = AcceptancePrior::from_head_folder(&short).unwrap().unwrap();
        assert_eq!(p.top1(), &[0.75]);
        std::fs::remove_dir_all(short).unwrap();
        let empty = folder_with(r#"{"dev": [{"per_step": [{"top1": 0.0, "count": 0}]}]}"#);
        assert_eq!(AcceptancePrior::from_head_folder(&empty).unwrap(), None);
        std::fs::remove_dir_all(empty).unwrap();
        let out_of_range = folder_with(r#"{"dev": [{"per_step": [{"top1": 1.5, "count": 3}]}]}"#);
        let e = AcceptancePrior::from_head_folder(&out_of_range).unwrap_err();
        assert!(e.to_string().contains("dev[0].per_step[0].top1"), "{e}");
        std::fs::remove_dir_all(out_of_range).unwrap();
        assert!(AcceptancePrior::from_top1(vec![]).is_err());
        assert!(AcceptancePrior::from_top1(vec![0.5, f64::NAN]).is_err());
    }
}
