//! The EAGLE-3 draft head: one burn module ([`Eagle3`]) for decoding and training, and its
//! decoding form ([`Eagle3Head`]) loaded from the official checkpoint layout unchanged
//! (`config.json` + `model.safetensors` with `fc`, `midlayer.*`, `norm`, `lm_head`, `d2t`, `t2d`).
//!
//! ```text
//! g   = fc(h)            when h is the target's 3-layer taps (3d wide); h itself when d wide
//! x   = [input_layernorm(emb(token)) ; hidden_norm(g)]                     (2d, embedding first)
//! h1  = g + o_proj(attn(rope(q_proj x), rope(k_proj x), v_proj x))         (residual from g)
//! out = h1 + mlp(post_attention_layernorm(h1));   logits = lm_head(norm(out))   (draft vocab)
//! ```
//! The token embedding is the target's table: EAGLE-3 training freezes it and the official
//! checkpoint does not store it (a checkpoint that does store `embed_tokens.weight` is honoured).
//! The module's field names are the official tensor names, walked by `confu_model::naming`.

use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{id_tensor, kv_cache::Region, DenseKvCache, Error, Ops, Result, Visibility};
use confu_model::naming::{fill, SeededNormal, SeededUniform, TensorValues};
use confu_model::{
    Attention, AttentionKeys, CachedKeys, Embedding, Linear, Mlp, RmsNorm, RopeRows, TargetModel,
    WeightFiles,
};

use confu_moe::SlotGain;

use crate::acceptance_prior::AcceptancePrior;
use crate::config::DraftConfig;
use crate::vocab::DraftVocab;

/// The head's decoder layer (`midlayer.*`): two input norms and attention over `2d` inputs.
#[derive(Module, Debug)]
pub struct Eagle3Layer<B: Backend> {
    pub hidden_norm: RmsNorm<B>,
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

/// The EAGLE-3 head as a module; field order is also the seeded initialiser's draw order.
#[derive(Module, Debug)]
pub struct Eagle3<B: Backend> {
    pub fc: Linear<B>,
    pub midlayer: Eagle3Layer<B>,
    pub norm: RmsNorm<B>,
    pub lm_head: Linear<B>,
    /// Only when a checkpoint stores its own table; otherwise the target's is used.
    pub embed_tokens: Option<Embedding<B>>,
}

/// One head forward's outputs.
#[derive(Debug)]
pub struct DraftOutput<B: Backend> {
    /// `[rows, d]`, before the final norm: the feature deeper draft steps feed back.
    pub hidden: Tensor<B, 2>,
    /// `[rows, draft_vocab]`.
    pub logits: Tensor<B, 2>,
}

impl<B: Backend> Eagle3<B> {
    /// A skeleton of shape `c` (with its own embedding table when `own_embedding`).
    pub fn new(c: &DraftConfig, own_embedding: bool, device: &B::Device) -> Self {
        let (d, eps) = (c.hidden_size, c.rms_norm_eps);
        Self {
            fc: Linear::new(3 * c.target_hidden_size, d, false, device),
            midlayer: Eagle3Layer {
                hidden_norm: RmsNorm::new(d, eps, device),
                input_layernorm: RmsNorm::new(d, eps, device),
                self_attn: Attention::new(2 * d, d, c.shape, false, false, device),
                post_attention_layernorm: RmsNorm::new(d, eps, device),
                mlp: Mlp::new(d, c.intermediate_size, device),
            },
            norm: RmsNorm::new(d, eps, device),
            lm_head: Linear::new(d, c.draft_vocab_size, false, device),
            embed_tokens: own_embedding.then(|| Embedding::new(c.vocab_size, d, device)),
        }
    }

    /// A head of shape `c` with every tensor taken from `values` by its official name.
    pub fn from_values(
        c: &DraftConfig,
        own_embedding: bool,
        values: &mut dyn TensorValues,
        device: &B::Device,
    ) -> Result<Self> {
        fill(Self::new(c, own_embedding, device), "", values, device)
    }

    /// Training initialisation: weight matrices N(0, 0.02²), norms 1, from one seeded stream.
    pub fn init(c: &DraftConfig, seed: u64, device: &B::Device) -> Self {
        Self::from_values(c, false, &mut SeededNormal::new(seed, 0.02), device)
            .expect("seeded values never fail")
    }

    /// `fc` applied to target taps `[rows, 3 * target_hidden]`.
    pub fn fuse(&self, taps: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        self.fc.forward(taps, ops)
    }

    /// The keys and values (`[rows, kv_heads, head_dim]`, k rotated) of rows pairing `g` with
    /// `e`, without attending: a future slot attends only to itself, and only its K/V matter.
    pub fn slot_kv(
        &self,
        g: Tensor<B, 2>,
        e: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let qkv = self
            .midlayer
            .self_attn
            .project(self.layer_input(g, e, ops), rope, ops);
        (qkv.k, qkv.v)
    }

    /// `[input_layernorm(e) ; hidden_norm(g)]`, embedding half first.
    fn layer_input(&self, g: Tensor<B, 2>, e: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        let m = &self.midlayer;
        Tensor::cat(
            vec![
                m.input_layernorm.forward(e, ops),
                m.hidden_norm.forward(g, ops),
            ],
            1,
        )
    }

    /// The head's layer on rows pairing a fused feature `g: [rows, d]` with a token embedding
    /// `e: [rows, d]`; `keys` decides what the rows attend over (the draft cache when decoding,
    /// the training-time-test pattern when training). Returns the output states and logits.
    pub fn forward_rows(
        &self,
        g: Tensor<B, 2>,
        e: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
        keys: &mut dyn AttentionKeys<B>,
    ) -> DraftOutput<B> {
        let hidden = self.states(g, e, rope, ops, keys);
        let logits = self.logits(hidden.clone(), ops);
        DraftOutput { hidden, logits }
    }

    /// [`Self::forward_rows`] without the `lm_head`: the output states only (a catch-up over
    /// many positions needs the logits of its last row alone).
    pub fn states(
        &self,
        g: Tensor<B, 2>,
        e: Tensor<B, 2>,
        rope: &RopeRows<B>,
        ops: &dyn Ops<B>,
        keys: &mut dyn AttentionKeys<B>,
    ) -> Tensor<B, 2> {
        let m = &self.midlayer;
        let x = self.layer_input(g.clone(), e, ops);
        let h1 = g + m.self_attn.forward(x, rope, ops, keys, 0);
        h1.clone()
            + m.mlp
                .forward(m.post_attention_layernorm.forward(h1, ops), ops)
    }

    /// Draft-vocabulary logits of output states.
    pub fn logits(&self, hidden: Tensor<B, 2>, ops: &dyn Ops<B>) -> Tensor<B, 2> {
        self.lm_head.forward(self.norm.forward(hidden, ops), ops)
    }
}

/// The head ready for decoding: the module, its shape, its draft vocabulary and the target's
/// embedding table (shared, not copied).
#[derive(Debug, Clone)]
pub struct Eagle3Head<B: Backend> {
    pub config: DraftConfig,
    pub net: Eagle3<B>,
    pub vocab: DraftVocab,
    /// The embedding table `[vocab, d]` the head reads tokens with.
    pub embed_tokens: Tensor<B, 2>,
    /// What `--tree auto` assumes about this head's acceptance before it has measured any: its
    /// dev evaluation when its folder records one, else the generic prior.
    pub prior: AcceptancePrior,
    inv_freq: Vec<f32>,
}

impl<B: Backend> Eagle3Head<B> {
    /// Load a draft folder for `target`, checking that the two fit together.
    pub fn load(dir: &Path, target: &TargetModel<B>) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = DraftConfig::from_file(&config_path)?;
        let t = target.config();
        let mismatch = |field: &str, msg: String| Error::Config {
            path: config_path.clone(),
            field: field.into(),
            msg,
        };
        let fits = [
            (
                "hidden_size / target_hidden_size",
                config.target_hidden_size == t.hidden_size,
                format!(
                    "the draft expects target features of width {}, but the target's hidden size is {}",
                    config.target_hidden_size, t.hidden_size
                ),
            ),
            (
                "vocab_size",
                config.vocab_size == t.vocab_size,
                format!(
                    "{} does not match the target's vocabulary of {}",
                    config.vocab_size, t.vocab_size
                ),
            ),
            (
                "hidden_size",
                config.hidden_size == t.hidden_size,
                format!(
                    "{} differs from the target's {}: the draft shares the target's embedding table",
                    config.hidden_size, t.hidden_size
                ),
            ),
        ];
        if let Some((field, _, msg)) = fits.into_iter().find(|f| !f.1) {
            return Err(mismatch(field, msg));
        }
        let files = WeightFiles::open(dir)?;
        let d2t = files.read_i64("d2t", &[config.draft_vocab_size])?;
        let vocab =
            DraftVocab::from_offsets(&d2t, config.vocab_size).map_err(|msg| Error::Tensor {
                path: files.path_of("d2t").to_path_buf(),
                name: "d2t".into(),
                msg,
            })?;
        let own_embedding = files.contains("embed_tokens.weight");
        let net = Eagle3::from_values(&config, own_embedding, &mut &files, target.device())?;
        Ok(Self {
            prior: AcceptancePrior::for_head_folder(dir)?,
            ..Self::from_module(config, vocab, net, target)
        })
    }

    /// A head of the given shape with seeded random weights and the identity draft vocabulary
    /// (for benchmarks).
    pub fn random(config: DraftConfig, seed: u64, target: &TargetModel<B>) -> Result<Self> {
        let vocab = DraftVocab::identity(config.draft_vocab_size);
        let net = Eagle3::from_values(
            &config,
            false,
            &mut SeededUniform::new(seed),
            target.device(),
        )?;
        Ok(Self::from_module(config, vocab, net, target))
    }

    /// Wrap a module (loaded, or trained and turned into its inference form with `valid()`).
    pub fn from_module(
        config: DraftConfig,
        vocab: DraftVocab,
        net: Eagle3<B>,
        target: &TargetModel<B>,
    ) -> Self {
        let embed_tokens = match &net.embed_tokens {
            Some(e) => e.weight.val(),
            None => target.embed_tokens(),
        };
        let inv_freq = config.rope.inv_freq();
        Self {
            config,
            net,
            vocab,
            embed_tokens,
            prior: AcceptancePrior::generic(),
            inv_freq,
        }
    }

    /// A one-layer cache for this head.
    pub fn new_cache(&self, ops: Arc<dyn Ops<B>>, capacity: usize) -> DenseKvCache<B> {
        self.new_cache_with_reserved(ops, 0, capacity)
    }

    /// A one-layer cache with `reserved` slots before the main region (ConFu's future slot).
    pub fn new_cache_with_reserved(
        &self,
        ops: Arc<dyn Ops<B>>,
        reserved: usize,
        capacity: usize,
    ) -> DenseKvCache<B> {
        let s = self.config.shape;
        let device = self.embed_tokens.device();
        DenseKvCache::new(1, s.kv_heads, s.head_dim, reserved, capacity, &device, ops)
    }

    /// Write ConFu's future slot into the cache's reserved region: the row
    /// `[input_layernorm(e_f) ; hidden_norm(fc(f))]` at `position` (`e_f: [1, d]`; `f: [1, 3d]`
    /// target taps, or `[1, d]` taken as is), attending only to itself; only its K/V matter, and
    /// every draft query may then see them. `gain` scales them per head (`future_slot_gain`).
    pub fn write_future_slot(
        &self,
        ops: &dyn Ops<B>,
        cache: &mut DenseKvCache<B>,
        e_f: Tensor<B, 2>,
        f: Tensor<B, 2>,
        position: usize,
        gain: Option<&SlotGain<B>>,
    ) -> Result<()> {
        cache.check_room(Region::Reserved, 1)?;
        let device = e_f.device();
        let c = &self.config;
        let width = f.dims()[1];
        let g = if width == 3 * c.target_hidden_size {
            self.fuse(ops, f)
        } else if width == c.hidden_size {
            f
        } else {
            return Err(Error::shape(
                "future vector",
                format!(
                    "width {width}; expected {} (target taps) or {} (one layer)",
                    3 * c.target_hidden_size,
                    c.hidden_size
                ),
            ));
        };
        let rope = RopeRows::new(&self.config.rope, &self.inv_freq, &[position], &device);
        let (k, v) = self.net.slot_kv(g, e_f, &rope, ops);
        let (k, v) = match gain {
            Some(gain) => gain.apply(k, v),
            None => (k, v),
        };
        cache.write_and_view(0, Region::Reserved, k.swap_dims(0, 1), v.swap_dims(0, 1));
        cache.commit(Region::Reserved, 1);
        Ok(())
    }

    /// `fc` applied to target taps `[rows, 3 * target_hidden]`.
    pub fn fuse(&self, ops: &dyn Ops<B>, taps: Tensor<B, 2>) -> Tensor<B, 2> {
        self.net.fuse(taps, ops)
    }

    /// Run the head on `rows` (feature, next token) pairs, appending their K/V to `cache`.
    /// `hidden` is either target taps (`3 * target_hidden` wide, fused by `fc`) or the head's own
    /// output states (`hidden` wide).
    pub fn forward(
        &self,
        ops: &dyn Ops<B>,
        cache: &mut DenseKvCache<B>,
        hidden: Tensor<B, 2>,
        tokens: &[u32],
        positions: &[usize],
        visibility: &Visibility,
    ) -> Result<DraftOutput<B>> {
        let hidden = self.states(ops, cache, hidden, tokens, positions, visibility)?;
        let logits = self.net.logits(hidden.clone(), ops);
        Ok(DraftOutput { hidden, logits })
    }

    /// [`Self::forward`] without the logits: the output states of the rows.
    pub fn states(
        &self,
        ops: &dyn Ops<B>,
        cache: &mut DenseKvCache<B>,
        hidden: Tensor<B, 2>,
        tokens: &[u32],
        positions: &[usize],
        visibility: &Visibility,
    ) -> Result<Tensor<B, 2>> {
        let c = &self.config;
        let [rows, width] = hidden.dims();
        if rows != tokens.len() || rows != positions.len() || visibility.rows() != rows {
            return Err(Error::shape(
                "draft forward",
                format!(
                    "{rows} feature rows, {} tokens, {} positions, {} mask rows",
                    tokens.len(),
                    positions.len(),
                    visibility.rows()
                ),
            ));
        }
        if visibility.cols() != cache.key_slots_after(rows) {
            return Err(Error::shape(
                "draft visibility",
                format!(
                    "{} columns for {} key slots",
                    visibility.cols(),
                    cache.key_slots_after(rows)
                ),
            ));
        }
        cache.check_room(Region::Main, rows)?;
        let g = if width == 3 * c.target_hidden_size {
            self.fuse(ops, hidden)
        } else if width == c.hidden_size {
            hidden
        } else {
            return Err(Error::shape(
                "draft features",
                format!(
                    "width {width}; expected {} (target taps) or {} (draft states)",
                    3 * c.target_hidden_size,
                    c.hidden_size
                ),
            ));
        };
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::invalid(
                "draft input token",
                bad,
                format!("vocabulary has {}", c.vocab_size),
            ));
        }
        let device = g.device();
        let e = self
            .embed_tokens
            .clone()
            .select(0, id_tensor(tokens, &device));
        let rope = RopeRows::new(&c.rope, &self.inv_freq, positions, &device);
        let mask = (!visibility.is_all_visible()).then(|| visibility.to_masked_out::<B>(&device));
        let mut keys = CachedKeys {
            cache: &mut *cache,
            region: Region::Main,
            masked_out: mask.as_ref(),
            skip: 0,
        };
        let out = self.net.states(g, e, &rope, ops, &mut keys);
        cache.commit(Region::Main, rows);
        Ok(out)
    }
}
