//! `confu bench decode`: prefill and decode speed of the target, next to the two floors that bound
//! them on this machine, measured in the same run: the memory-bandwidth floor of a decode step
//! (weight bytes ÷ measured read bandwidth) and the matmul rate a prefill can at best reach.

use confu_core::ToHost;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use clap::{Args, Subcommand};
use confu_core::{Error, Ops, Result, RopeConfig, RopeScaling, WarmThreads};
use confu_model::{Architecture, LogitRows, ModelConfig, TargetModel};
use rayon::prelude::*;

use crate::backend::Job;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s of the target, with the machine's bandwidth and matmul floors.
    Decode(DecodeArgs),
    /// Cost model of a speculative round: drafting, verification per tree size, compaction.
    Spec(crate::bench_spec::SpecArgs),
}

/// Arguments of `confu bench decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128, allow_hyphen_values = true)]
    pub prompt_len: usize,
    /// Tokens decoded per run.
    #[arg(long, default_value_t = 32, allow_hyphen_values = true)]
    pub new_tokens: usize,
    /// Measured runs (the median is reported).
    #[arg(long, default_value_t = 5, allow_hyphen_values = true)]
    pub runs: usize,
    /// Unmeasured warm-up runs.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub warmup: usize,
    /// Compute device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu", allow_hyphen_values = true)]
    pub device: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Most measured (or warm-up) runs a benchmark takes: beyond it a typo runs for days.
pub const MAX_RUNS: usize = 10_000;

/// Which target a benchmark runs: a checkpoint, or random weights of a preset shape.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Hugging Face checkpoint folder to benchmark.
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    pub model: Option<PathBuf>,
    /// Random weights of a preset shape instead of files: tiny, small (~0.6 GB f32), large (~2 GB f32).
    #[arg(long, allow_hyphen_values = true)]
    pub synthetic: Option<String>,
}

impl TargetArgs {
    /// Load or build the target; returns a label for reports.
    pub fn load<B: Backend>(
        &self,
        ops: Arc<dyn Ops<B>>,
        device: &B::Device,
    ) -> Result<(String, TargetModel<B>)> {
        match (&self.model, &self.synthetic) {
            (Some(dir), _) => Ok((
                dir.display().to_string(),
                TargetModel::<B>::load(dir, ops, device)?,
            )),
            (None, Some(name)) => {
                let config = preset(name)?;
                eprintln!(
                    "building synthetic `{name}` model ({:.2} GB f32)...",
                    config.num_parameters() as f64 * 4e-9
                );
                Ok((
                    format!("synthetic:{name}"),
                    TargetModel::<B>::random(config, 0, ops, device)?,
                ))
            }
            (None, None) => Err(Error::invalid(
                "model",
                "none",
                "give --model DIR or --synthetic SIZE",
            )),
        }
    }
}

/// A synthetic model shape by name.
pub fn preset(name: &str) -> Result<ModelConfig> {
    let (hidden, layers, inter, heads, kv, vocab) = match name {
        "tiny" => (64, 4, 192, 4, 2, 468),
        "small" => (1024, 8, 2816, 16, 4, 32000),
        "large" => (2048, 8, 5632, 16, 4, 32000),
        other => {
            return Err(Error::invalid(
                "synthetic preset",
                other,
                "expected tiny, small or large",
            ))
        }
    };
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim: hidden / heads,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
        attention_bias: false,
        rope: RopeConfig {
            head_dim: hidden / heads,
            theta: 500000.0,
            scaling: RopeScaling::None,
        },
        bos_token_id: None,
        eos_token_ids: vec![],
        declared_dtype: Some("float32".into()),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Read bandwidth of this machine: a parallel sum over a buffer far larger than the caches, best
/// of three passes, in bytes/s.
pub fn read_bandwidth() -> f64 {
    let n = 256 << 20; // 1 GiB of f32
    let buf: Vec<f32> = (0..n).into_par_iter().map(|i| (i & 7) as f32).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: f32 = buf.par_chunks(1 << 16).map(lane_sum).sum();
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        best = best.max((n * 4) as f64 / dt);
    }
    best
}

/// A sum with 16 independent accumulators, so that it runs at memory speed rather than at the
/// latency of one dependent add per element.
fn lane_sum(c: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for chunk in c.chunks_exact(16) {
        for i in 0..16 {
            acc[i] += chunk[i];
        }
    }
    acc.iter().sum::<f32>() + c.chunks_exact(16).remainder().iter().sum::<f32>()
}

/// FLOP/s of a prefill-shaped matmul (`[rows, d] x [d, d]`) through the model's own ops.
fn matmul_rate<B: Backend>(ops: &dyn Ops<B>, d: usize, rows: usize, device: &B::Device) -> f64 {
    let x: Tensor<B, 2> =
        Tensor::from_data(TensorData::new(vec![0.5f32; rows * d], [rows, d]), device);
    let w: Tensor<B, 2> = Tensor::from_data(TensorData::new(vec![0.25f32; d * d], [d, d]), device);
    let mut best = 0f64;
    for i in 0..4 {
        let t = Instant::now();
        let y = ops.linear(x.clone(), &w);
        let _ = y.into_data();
        let dt = t.elapsed().as_secs_f64();
        if i > 0 {
            best = best.max(2.0 * (rows * d * d) as f64 / dt);
        }
    }
    best
}

fn sync<B: Backend>(t: Tensor<B, 2>) {
    let _ = t.into_data();
}

impl Job for DecodeArgs {
    type Output = ();

    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<()> {
        if self.runs == 0 || self.runs > MAX_RUNS {
            return Err(Error::invalid(
                "runs",
                self.runs,
                format!("must be in 1..={MAX_RUNS}"),
            ));
        }
        if self.warmup > MAX_RUNS {
            return Err(Error::invalid(
                "warmup",
                self.warmup,
                format!("must be at most {MAX_RUNS}"),
            ));
        }
        if self.prompt_len == 0 || self.new_tokens == 0 {
            return Err(Error::invalid("prompt-len/new-tokens", 0, "must be >= 1"));
        }
        let (label, model) = self.target.load(ops.clone(), &device)?;
        let c = model.config().clone();
        let total = self.prompt_len.saturating_add(self.new_tokens);
        if total > c.max_position_embeddings {
            return Err(Error::Capacity {
                what: "prompt-len + new-tokens",
                requested: total,
                limit: c.max_position_embeddings,
            });
        }
        let prompt: Vec<u32> = (0..self.prompt_len as u32)
            .map(|i| (i * 7919 + 13) % c.vocab_size as u32)
            .collect();

        let mut prefill_s = Vec::new();
        let mut step_s = Vec::new();
        eprintln!(
            "measuring: {} warm-up + {} runs of prefill {} + decode {}",
            self.warmup, self.runs, self.prompt_len, self.new_tokens
        );
        // As generation runs: the backend's threads kept ready between passes.
        let warm = model.ops().warm_threads();
        for run in 0..self.warmup + self.runs {
            warm.beat();
            let mut cache = model.new_cache(0, total);
            let t = Instant::now();
            let out = model.forward_causal(&mut cache, &prompt, LogitRows::Last, &[])?;
            sync(out.logits.expect("requested"));
            let p = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut token = 1u32;
            for _ in 0..self.new_tokens {
                warm.beat();
                let out = model.forward_causal(&mut cache, &[token], LogitRows::Last, &[])?;
                let logits: Vec<f32> = out.logits.expect("requested").to_host();
                token = confu_core::sampling::argmax(&logits) as u32;
            }
            let d = t.elapsed().as_secs_f64() / self.new_tokens as f64;
            if run >= self.warmup {
                prefill_s.push(p);
                step_s.push(d);
            }
        }
        let prefill = median(prefill_s);
        let step = median(step_s);

        eprintln!("measuring memory bandwidth and matmul rate...");
        let bandwidth = read_bandwidth();
        let rate = matmul_rate(
            ops.as_ref(),
            c.hidden_size.max(256),
            self.prompt_len.max(64),
            &device,
        );

        // Bytes a decode step must read: every layer weight, the final norm and the full head.
        let params = c.num_parameters();
        let embed = c.vocab_size * c.hidden_size;
        let step_params = if c.tie_word_embeddings {
            params
        } else {
            params - embed
        };
        // In their stored dtypes (half-precision linear weights stay half on the CPU).
        let tied = c.tie_word_embeddings;
        let weight_bytes = confu_model::param_bytes(model.weights(), &|name| {
            !tied && name == "model.embed_tokens.weight"
        }) as f64;
        let floor = weight_bytes / bandwidth;
        // Prefill FLOPs: the linear layers on every prompt row, the head on the last one.
        let linear_params = (step_params - embed) as f64;
        let prefill_flops = 2.0 * linear_params * self.prompt_len as f64 + 2.0 * embed as f64;
        let prefill_rate = prefill_flops / prefill;

        let report = serde_json::json!({
            "model": label,
            "device": self.device,
            "parameters": params,
            "prompt_len": self.prompt_len,
            "new_tokens": self.new_tokens,
            "runs": self.runs,
            "prefill_s": prefill,
            "prefill_tokens_per_s": self.prompt_len as f64 / prefill,
            "decode_step_s": step,
            "decode_tokens_per_s": 1.0 / step,
            "weight_bytes_per_step": weight_bytes,
            "read_bandwidth_gb_s": bandwidth / 1e9,
            "decode_floor_s": floor,
            "decode_vs_floor": step / floor,
            "matmul_gflop_s": rate / 1e9,
            "prefill_gflop_s": prefill_rate / 1e9,
            "prefill_vs_matmul": prefill_rate / rate,
        });
        if self.json {
            crate::outln!("{report}");
        } else {
            crate::outln!(
                "model               {label} ({:.1} M parameters) on {}",
                params as f64 / 1e6,
                self.device
            );
            crate::outln!(
                "prefill             {:.1} tok/s  ({} tokens in {:.3} s, median of {})",
                self.prompt_len as f64 / prefill,
                self.prompt_len,
                prefill,
                self.runs
            );
            crate::outln!(
                "decode              {:.2} tok/s  ({:.2} ms/step)",
                1.0 / step,
                step * 1e3
            );
            crate::outln!("read bandwidth      {:.1} GB/s", bandwidth / 1e9);
            crate::outln!("decode floor        {:.2} ms/step ({:.0} MB of weights / bandwidth) -> decode at {:.2}x the floor", floor * 1e3, weight_bytes / 1e6, step / floor);
            crate::outln!("matmul rate         {:.1} GFLOP/s", rate / 1e9);
            crate::outln!(
                "prefill compute     {:.1} GFLOP/s -> {:.0}% of the matmul rate",
                prefill_rate / 1e9,
                100.0 * prefill_rate / rate
            );
        }
        Ok(())
    }
}
