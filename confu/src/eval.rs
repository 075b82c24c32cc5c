//! The evaluation harness: prompts in Spec-Bench's `question.jsonl` format
//! (`question_id`, `category`, `turns`), decoded by vanilla and by a speculative engine in the same
//! process, summarised per category and overall: τ, tokens/s, speedup over vanilla and — at
//! temperature 0 — whether every speculative output equals vanilla's.
//!
//! Only the first turn of each question is used as the prompt (the testbed models are not chat
//! models, so there is no template to place later turns into).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use confu_core::{Error, Result};
use confu_model::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{ratios_to_first, TauRatio};
use crate::eval_summary::summarize;
pub use crate::eval_summary::{AutoSummary, RoundCost, Summary};
use crate::question_result::measure;
pub use crate::question_result::QuestionResult;
use crate::{Engine, Generation, GenerationConfig};

/// One Spec-Bench question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: serde_json::Value,
    pub category: String,
    pub turns: Vec<String>,
    /// Line of the file it came from (1-based; 0 when not read from a file).
    #[serde(skip)]
    pub line: usize,
}

/// Read a `question.jsonl` file; errors name the line.
pub fn read_questions(path: &Path) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut q: Question = serde_json::from_str(line).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            msg: format!("line {}: {e}", i + 1),
        })?;
        q.line = i + 1;
        if q.turns.is_empty() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                msg: format!("line {}: `turns` is empty", i + 1),
            });
        }
        out.push(q);
    }
    if out.is_empty() {
        return Err(Error::Format {
            path: path.to_path_buf(),
            msg: "no questions".into(),
        });
    }
    Ok(out)
}

/// The whole evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub per_category: BTreeMap<String, Summary>,
    pub overall: Summary,
    pub results: Vec<QuestionResult>,
}

/// Run vanilla and `spec` on every question. `progress(i, n)` is called after each question.
pub fn evaluate<B: Backend>(
    vanilla: &Engine<B>,
    spec: &Engine<B>,
    tokenizer: &Tokenizer,
    questions: &[Question],
    config: &GenerationConfig,
    progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    let drafters = [("drafter".to_string(), spec.clone())];
    let c = compare(
        vanilla, &drafters, tokenizer, questions, config, 1, progress,
    )?;
    Ok(c.drafters.into_iter().next().expect("one drafter").report)
}

/// One drafter's evaluation, by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrafterReport {
    pub name: String,
    pub report: EvalReport,
}

/// Several drafters evaluated on the same prompts against the same vanilla runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub drafters: Vec<DrafterReport>,
    /// τ of every other drafter relative to the first, per category and overall, with 95 %
    /// bootstrap intervals over prompts.
    #[serde(default)]
    pub tau_ratios: Vec<TauRatio>,
}

/// Run vanilla and every drafter on every question `repeat` times (in turn, so that they share
/// the machine's conditions, in the order of [`run_order`]); a question's repeats are summed
/// into one result (see [`QuestionResult::absorb`]). `progress(i, n)` is called after each
/// question.
#[allow(clippy::too_many_arguments)]
pub fn compare<B: Backend>(
    vanilla: &Engine<B>,
    drafters: &[(String, Engine<B>)],
    tokenizer: &Tokenizer,
    questions: &[Question],
    config: &GenerationConfig,
    repeat: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Comparison> {
    check_repeat(repeat)?;
    // Every prompt is checked before any work, so that one bad question cannot discard the
    // results of the others; the error names it by id and line.
    let limit = vanilla.target().config().max_position_embeddings;
    let prompts = questions
        .iter()
        .map(|q| {
            let ids = tokenizer.encode(&q.turns[0])?;
            if ids.is_empty() || ids.len() >= limit {
                return Err(Error::invalid(
                    "question",
                    format!("{} (line {})", q.question_id, q.line),
                    format!(
                        "its prompt is {} tokens; it must be 1..{limit} (the model's max_position_embeddings)",
                        ids.len()
                    ),
                ));
            }
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut results: Vec<Vec<QuestionResult>> =
        vec![Vec::with_capacity(questions.len()); drafters.len()];
    for (i, (q, prompt)) in questions.iter().zip(&prompts).enumerate() {
        let mut merged: Vec<Option<QuestionResult>> = vec![None; drafters.len()];
        for r in 0..repeat {
            let mut outputs: Vec<Option<Generation>> = (0..=drafters.len()).map(|_| None).collect();
            for e in run_order(i * repeat + r, drafters.len() + 1) {
                let engine = if e == 0 { vanilla } else { &drafters[e - 1].1 };
                outputs[e] = Some(engine.generate(prompt, config, |_| {})?);
            }
            let mut outputs = outputs.into_iter().map(|o| o.expect("every engine ran"));
            let v = outputs.next().expect("vanilla ran");
            for (m, s) in merged.iter_mut().zip(outputs) {
                let one = measure(q, &v, &s);
                match m {
                    Some(m) => m.absorb(one),
                    None => *m = Some(one),
                }
            }
        }
        for (out, m) in results.iter_mut().zip(merged) {
            out.push(m.expect("repeat >= 1"));
        }
        progress(i + 1, questions.len());
    }
    let greedy = config.sampling.is_greedy();
    let drafters: Vec<DrafterReport> = drafters
        .iter()
        .zip(results)
        .map(|((name, _), results)| DrafterReport {
            name: name.clone(),
            report: EvalReport::from_results(results, greedy),
        })
        .collect();
    let tau_ratios = ratios_to_first(&drafters);
    Ok(Comparison {
        drafters,
        tau_ratios,
    })
}

/// `repeat` of [`compare`]: the times every prompt runs on every engine, at least once.
pub fn check_repeat(repeat: usize) -> Result<()> {
    if repeat == 0 {
        return Err(Error::invalid(
            "repeat",
            0,
            "must be >= 1 (the times every prompt runs on every engine)",
        ));
    }
    Ok(())
}

/// The order in which question `i` runs the `engines` (0: vanilla, then the drafters): rotated
/// by one each question, so that over any `engines` consecutive questions every engine runs in
/// every place once. With a fixed order the last engine always ran after the others and was
/// measured 1–2 % slower per round than the first drafter on the same rounds (the machine's state
/// after the runs before it), which read as that drafter's cost.
pub fn run_order(i: usize, engines: usize) -> impl Iterator<Item = usize> {
    (0..engines).map(move |k| (i + k) % engines)
}

impl Comparison {
    /// Each drafter's table, then τ and speedup side by side per category.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for d in &self.drafters {
            s.push_str(&format!("== {}\n{}", d.name, d.report.table()));
        }
        if self.drafters.len() > 1 {
            s.push_str(&format!("{:<12}", "tau / speedup"));
            for d in &self.drafters {
                s.push_str(&format!(" {:>22}", d.name));
            }
            s.push('\n');
            let first = &self.drafters[0].report;
            let cats = first
                .per_category
                .keys()
                .map(String::as_str)
                .chain(["overall"]);
            for c in cats {
                s.push_str(&format!("{c:<12}"));
                for d in &self.drafters {
                    let m = d.report.summary(c);
                    let cell =
                        m.map_or("-".into(), |m| format!("{:.2} / {:.2}x", m.tau, m.speedup));
                    s.push_str(&format!(" {cell:>22}"));
                }
                s.push('\n');
            }
        }
        if !self.tau_ratios.is_empty() {
            s.push_str(&format!(
                "tau ratio to {} (95% bootstrap interval over prompts):\n",
                self.tau_ratios[0].reference
            ));
            for r in &self.tau_ratios {
                s.push_str(&format!(
                    "  {:<22} {:<12} {:.3} [{:.3}, {:.3}]\n",
                    r.variant, r.category, r.ratio, r.low, r.high
                ));
            }
        }
        s
    }
}

impl EvalReport {
    /// Summaries per category and overall from per-question results.
    pub fn from_results(results: Vec<QuestionResult>, greedy: bool) -> Self {
        let mut by_cat: BTreeMap<String, Vec<&QuestionResult>> = BTreeMap::new();
        for r in &results {
            by_cat.entry(r.category.clone()).or_default().push(r);
        }
        let per_category = by_cat
            .iter()
            .map(|(c, rs)| (c.clone(), summarize(rs, greedy)))
            .collect();
        let overall = summarize(&results.iter().collect::<Vec<_>>(), greedy);
        Self {
            per_category,
            overall,
            results,
        }
    }

    /// The summary of a category, or `overall`.
    pub fn summary(&self, category: &str) -> Option<&Summary> {
        match category {
            "overall" => Some(&self.overall),
            c => self.per_category.get(c),
        }
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<12} {:>5} {:>6} {:>12} {:>12} {:>8} {:>14} {:>6}\n",
            "category", "n", "tau", "vanilla t/s", "spec t/s", "speedup", "95% interval", "equal"
        );
        let row = |name: &str, m: &Summary| {
            format!(
                "{:<12} {:>5} {:>6.2} {:>12.1} {:>12.1} {:>7.2}x {:>14} {:>6}\n",
                name,
                m.questions,
                m.tau,
                m.vanilla_tokens_per_s,
                m.spec_tokens_per_s,
                m.speedup,
                format!("[{:.2}, {:.2}]", m.speedup_low, m.speedup_high),
                match m.all_equal {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            )
        };
        for (c, m) in &self.per_category {
            s.push_str(&row(c, m));
        }
        s.push_str(&row("overall", &self.overall));
        let o = &self.overall;
        let r = o.round_ms;
        if o.vanilla_step_ms > 0.0 {
            s.push_str(&format!(
                "one round: draft {:.2} + verify {:.2} + update {:.2} (drafter {:.2}) = {:.2} ms against a vanilla step of {:.2} ms (break-even tau {:.2})\n",
                r.draft,
                r.verify,
                r.update,
                r.head,
                r.total(),
                o.vanilla_step_ms,
                r.total() / o.vanilla_step_ms
            ));
        }
        if let Some(a) = &o.auto {
            s.push_str(&format!(
                "tree auto: predicted {:.1} t/s, achieved {:.1} t/s over the same rounds; rounds: {:.0}% plain, {:.0}% prompt lookup, {:.0}% head trees\n",
                a.predicted_tokens_per_s,
                a.achieved_tokens_per_s,
                100.0 * a.plain_share,
                100.0 * a.lookup_share,
                100.0 * (1.0 - a.plain_share - a.lookup_share).max(0.0)
            ));
        }
        s
    }

    /// Accepted drafts per round → number of rounds, over all questions.
    pub fn acceptance_histogram(&self) -> Vec<usize> {
        let max = self
            .results
            .iter()
            .flat_map(|r| r.accepted.iter().copied())
            .max()
            .unwrap_or(0);
        let mut h = vec![0; max + 1];
        for r in &self.results {
            for &a in &r.accepted {
                h[a] += 1;
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_runs_in_every_place_once_per_rotation() {
        for engines in 1..=4 {
            for first in [0, 5] {
                let mut seen = vec![vec![0; engines]; engines];
                for i in first..first + engines {
                    let order: Vec<usize> = run_order(i, engines).collect();
                    let mut sorted = order.clone();
                    sorted.sort();
                    assert_eq!(sorted, (0..engines).collect::<Vec<_>>(), "question {i}");
                    for (place, e) in order.into_iter().enumerate() {
                        seen[e][place] += 1;
                    }
                }
                assert!(seen.iter().flatten().all(|&n| n == 1), "{seen:?}");
            }
        }
    }

    #[test]
    fn questions_parse_and_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("confu-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("q.jsonl");
        std::fs::write(&p, "{\"question_id\": 1, \"category\": \"a\", \"turns\": [\"hi\"]}\n\n{\"question_id\": 2}\n").unwrap();
        let e = read_questions(&p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        std::fs::write(
            &p,
            "{\"question_id\": \"x\", \"category\": \"a\", \"turns\": [\"hi\"]}\n",
        )
        .unwrap();
        assert_eq!(read_questions(&p).unwrap()[0].category, "a");
        std::fs::remove_dir_all(&dir).ok();
    }
}
