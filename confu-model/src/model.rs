//! The target transformer and its one forward.
//!
//! A forward takes token ids **or** raw input embeddings, explicit position ids, a visibility mask
//! over the cache's key slots and a list of layer taps; it writes the rows' K/V into the cache and
//! returns logits only for the rows asked for, plus the tapped hidden states. Vanilla decoding,
//! tree verification and ConFu's contemplate/soft-prompt rows are all this one call with different
//! arguments, which is what makes their logits comparable bit for bit.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{id_tensor, index_tensor, kv_cache::Region, DenseKvCache, Error, KvCache, Ops};
use confu_core::{Result, Visibility};

use crate::config::ModelConfig;
use crate::keys::CachedKeys;
use crate::llama::Llama;
use crate::rope_rows::RopeRows;
use crate::weights::WeightFiles;

/// The rows a forward consumes.
pub enum ModelInput<'a, B: Backend> {
    /// Token ids, embedded with the model's table.
    Ids(&'a [u32]),
    /// Raw input embeddings `[rows, hidden]` (soft prompt, contemplate tokens, or a mix built with
    /// [`TargetModel::embed`]).
    Embeds(Tensor<B, 2>),
}

/// Which hidden states to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// The state entering decoder layer `i` (`i == num_layers` is the last layer's output).
    LayerInput(usize),
    /// The output of the final RMSNorm.
    FinalNorm,
}

/// Which rows get logits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogitRows {
    None,
    Last,
    All,
    Rows(Vec<usize>),
}

/// One forward's arguments.
pub struct ForwardRequest<'a, B: Backend> {
    pub input: ModelInput<'a, B>,
    /// One position id per row.
    pub positions: &'a [usize],
    /// `[rows, cache key slots after this forward]`, see [`Visibility`].
    pub visibility: &'a Visibility,
    pub logits: LogitRows,
    pub taps: &'a [Tap],
    /// Where the rows' K/V go.
    pub region: Region,
}

/// One forward's results.
#[derive(Debug)]
pub struct ForwardOutput<B: Backend> {
    /// `[requested rows, vocab]`, in the order requested.
    pub logits: Option<Tensor<B, 2>>,
    /// One `[rows, hidden]` tensor per requested tap, in the order requested.
    pub taps: Vec<Tensor<B, 2>>,
}

/// The frozen target model for decoding: the [`Llama`] module, its configuration and the op
/// implementation (a backend's kernels) it runs with.
#[derive(Debug, Clone)]
pub struct TargetModel<B: Backend> {
    config: ModelConfig,
    ops: Arc<dyn Ops<B>>,
    weights: Llama<B>,
    inv_freq: Vec<f32>,
    device: B::Device,
}

impl<B: Backend> TargetModel<B> {
    /// Load a Hugging Face checkpoint folder (`config.json` + safetensors).
    pub fn load(dir: &Path, ops: Arc<dyn Ops<B>>, device: &B::Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            ));
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let files = WeightFiles::open(dir)?;
        let mut weights = Llama::load(&files, &config, device)?;
        if ops.keeps_half_weights() {
            let (narrowed, n) = crate::keep_half_precision(weights, "", &files);
            weights = narrowed;
            if n > 0 {
                tracing::info!(
                    "{}: {n} linear weights kept in half precision",
                    dir.display()
                );
            }
        }
        Ok(Self::from_module(config, weights, ops, device))
    }

    /// A model of the given shape with seeded random weights.
    pub fn random(
        config: ModelConfig,
        seed: u64,
        ops: Arc<dyn Ops<B>>,
        device: &B::Device,
    ) -> Result<Self> {
        let weights = Llama::random(&config, seed, device)?;
        Ok(Self::from_module(config, weights, ops, device))
    }

    /// Wrap a module (loaded, or trained and turned into its inference form with `valid()`).
    pub fn from_module(
        config: ModelConfig,
        weights: Llama<B>,
        ops: Arc<dyn Ops<B>>,
        device: &B::Device,
    ) -> Self {
        let inv_freq = config.rope.inv_freq();
        Self {
            config,
            ops,
            weights,
            inv_freq,
            device: device.clone(),
        }
    }

    /// The module.
    pub fn weights(&self) -> &Llama<B> {
        &self.weights
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The op implementation in use.
    pub fn ops(&self) -> &Arc<dyn Ops<B>> {
        &self.ops
    }

    /// The token embedding table `[vocab, hidden]` (shared with EAGLE-3 draft heads).
    pub fn embed_tokens(&self) -> Tensor<B, 2> {
        self.weights.model.embed_tokens.weight.val()
    }

    /// A fresh KV cache sized for this model: `capacity` main slots and `reserved` slots.
    pub fn new_cache(&self, reserved: usize, capacity: usize) -> DenseKvCache<B> {
        let c = &self.config;
        DenseKvCache::new(
            c.num_hidden_layers,
            c.num_key_value_heads,
            c.head_dim,
            reserved,
            capacity,
            &self.device,
            self.ops.clone(),
        )
    }

    /// Embed token ids: `[ids.len(), hidden]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor<B, 2>> {
        let v = self.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= v) {
            return Err(Error::invalid(
                "token id",
                bad,
                format!("the vocabulary has {v} entries"),
            ));
        }
        Ok(self
            .weights
            .model
            .embed_tokens
            .forward(id_tensor(ids, &self.device)))
    }

    /// Logits `[rows, vocab]` from final-normed states.
    pub fn head(&self, normed: Tensor<B, 2>) -> Tensor<B, 2> {
        self.weights.head(normed, self.ops.as_ref())
    }

    /// Run the model over new rows; see the module docs.
    pub fn forward(
        &self,
        cache: &mut DenseKvCache<B>,
        req: ForwardRequest<'_, B>,
    ) -> Result<ForwardOutput<B>> {
        let c = &self.config;
        let x = match &req.input {
            ModelInput::Ids(ids) => self.embed(ids)?,
            ModelInput::Embeds(e) => {
                let [_, d] = e.dims();
                if d != c.hidden_size {
                    return Err(Error::shape(
                        "input embeddings",
                        format!(
                            "width {d}, but the model's hidden size is {}",
                            c.hidden_size
                        ),
                    ));
                }
                e.clone()
            }
        };
        let rows = x.dims()[0];
        self.check_request(cache, rows, &req)?;
        if rows == 0 {
            return Ok(ForwardOutput {
                logits: None,
                taps: vec![],
            });
        }

        let rope = RopeRows::new(&c.rope, &self.inv_freq, req.positions, &self.device);
        // Key slots no row sees (ConFu's soft prompt, for ordinary rows) are left out.
        let skip = req.visibility.hidden_prefix();
        let visible = match skip {
            0 => std::borrow::Cow::Borrowed(req.visibility),
            n => std::borrow::Cow::Owned(req.visibility.without_prefix(n)),
        };
        let mask = (!visible.is_all_visible()).then(|| visible.to_masked_out::<B>(&self.device));
        let mut keys = CachedKeys {
            cache: &mut *cache,
            region: req.region,
            masked_out: mask.as_ref(),
            skip,
        };
        let mut taps: Vec<Option<Tensor<B, 2>>> = vec![None; req.taps.len()];
        let mut record = |i: usize, x: &Tensor<B, 2>| {
            for (slot, tap) in taps.iter_mut().zip(req.taps) {
                if *tap == Tap::LayerInput(i) {
                    *slot = Some(x.clone());
                }
            }
        };
        let x = self
            .weights
            .forward_layers(x, &rope, self.ops.as_ref(), &mut keys, &mut record);
        cache.commit(req.region, rows);

        let wants_norm = req.taps.contains(&Tap::FinalNorm);
        let selected = |t: Tensor<B, 2>| -> Tensor<B, 2> {
            match &req.logits {
                LogitRows::All | LogitRows::None => t,
                LogitRows::Last => t.narrow(0, rows - 1, 1),
                LogitRows::Rows(r) => t.select(0, index_tensor(r, &self.device)),
            }
        };
        let eps = c.rms_norm_eps;
        let (logits, normed_all) = if wants_norm {
            let normed = self
                .ops
                .rms_norm2(x, &self.weights.model.norm.weight.val(), eps);
            let logits =
                (req.logits != LogitRows::None).then(|| self.head(selected(normed.clone())));
            (logits, Some(normed))
        } else if req.logits != LogitRows::None {
            // Norm only the rows that need logits: prefill asks for one row out of many.
            let normed =
                self.ops
                    .rms_norm2(selected(x), &self.weights.model.norm.weight.val(), eps);
            (Some(self.head(normed)), None)
        } else {
            (None, None)
        };
        let taps = taps
            .into_iter()
            .zip(req.taps)
            .map(|(t, tap)| match tap {
                Tap::FinalNorm => normed_all.clone().expect("final norm computed when tapped"),
                Tap::LayerInput(_) => t.expect("layer taps validated before the forward"),
            })
            .collect();
        Ok(ForwardOutput { logits, taps })
    }

    /// Plain causal decoding: append `ids` after the cache's main region, at the positions that
    /// follow it, each row seeing the prefix and the rows before it (never the reserved region).
    pub fn forward_causal(
        &self,
        cache: &mut DenseKvCache<B>,
        ids: &[u32],
        logits: LogitRows,
        taps: &[Tap],
    ) -> Result<ForwardOutput<B>> {
        let start = cache.len();
        let positions: Vec<usize> = (start..start + ids.len()).collect();
        let visibility = Visibility::causal(cache.reserved(), start, ids.len());
        self.forward(
            cache,
            ForwardRequest {
                input: ModelInput::Ids(ids),
                positions: &positions,
                visibility: &visibility,
                logits,
                taps,
                region: Region::Main,
            },
        )
    }

    fn check_request(
        &self,
        cache: &DenseKvCache<B>,
        rows: usize,
        req: &ForwardRequest<'_, B>,
    ) -> Result<()> {
        let c = &self.config;
        if req.positions.len() != rows {
            return Err(Error::shape(
                "forward",
                format!("{rows} input rows but {} position ids", req.positions.len()),
            ));
        }
        if let Some(&p) = req.positions.iter().max() {
            if p >= c.max_position_embeddings {
                return Err(Error::Capacity {
                    what: "position ids (max_position_embeddings)",
                    requested: p + 1,
                    limit: c.max_position_embeddings,
                });
            }
        }
        cache.check_room(req.region, rows)?;
        let cols = match req.region {
            Region::Main => cache.key_slots_after(rows),
            Region::Reserved => cache.reserved() + cache.len(),
        };
        let vis = req.visibility;
        if vis.rows() != rows || vis.cols() != cols {
            return Err(Error::shape(
                "visibility",
                format!(
                    "mask is {}x{}, but this forward has {rows} rows over {cols} key slots",
                    vis.rows(),
                    vis.cols()
                ),
            ));
        }
        vis.validate()?;
        for tap in req.taps {
            if let Tap::LayerInput(i) = tap {
                if *i > c.num_hidden_layers {
                    return Err(Error::invalid(
                        "layer tap",
                        i,
                        format!("the model has {} layers", c.num_hidden_layers),
                    ));
                }
            }
        }
        if let LogitRows::Rows(r) = &req.logits {
            if let Some(&bad) = r.iter().find(|&&i| i >= rows) {
                return Err(Error::invalid(
                    "logit row",
                    bad,
                    format!("the forward has {rows} rows"),
                ));
            }
        }
        Ok(())
    }
}
