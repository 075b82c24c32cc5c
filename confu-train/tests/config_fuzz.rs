//! Fuzz-style tests of every configuration file a user writes: `train lm` configs and a model's
//! `config.json`. Each field, alone and in seeded random pairs, gets hostile values (zero,
//! negative, huge, fractional, non-finite spellings, wrong types, missing, misspelled keys). The
//! parser must never panic, and every refusal must name a field it was given.

use std::panic::{catch_unwind, AssertUnwindSafe};

use confu_model::ModelConfig;
use confu_train::pretrain::LmTrainConfig;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn hostile() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1e308),
        json!(-1e308),
        json!(1e-300),
        json!(18446744073709551615u64),
        json!(4294967297u64),
        json!(1.5),
        json!("12"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
    ]
}

/// Apply `(section, field, value)` edits; `None` removes the field.
fn edited(base: &Value, edits: &[(&str, &str, Option<Value>)]) -> Value {
    let mut v = base.clone();
    for (section, field, value) in edits {
        let obj = if section.is_empty() {
            &mut v
        } else {
            &mut v[*section]
        };
        let obj = obj.as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(field.to_string(), x.clone()),
            None => obj.remove(*field),
        };
    }
    v
}

/// Parse `text` with `parse`; panics fail the test; errors must name one of `fields`.
fn check_one(
    what: &str,
    text: &str,
    fields: &[&str],
    parse: &dyn Fn(&std::path::Path) -> Result<(), String>,
) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, text).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| parse(&path)));
    match r {
        Err(_) => panic!("{what}: the parser panicked on {text}"),
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            assert!(
                fields.iter().any(|f| e.contains(f)),
                "{what}: `{e}` names none of {fields:?} (input {text})"
            );
            true
        }
    }
}

fn fuzz(
    what: &str,
    base: Value,
    fields: &[(&str, &str)],
    parse: &dyn Fn(&std::path::Path) -> Result<(), String>,
) {
    let (mut tried, mut refused) = (0, 0);
    // Every field alone: each hostile value, and removed.
    for &(section, field) in fields {
        for value in hostile().into_iter().map(Some).chain([None]) {
            let v = edited(&base, &[(section, field, value)]);
            tried += 1;
            refused += check_one(what, &v.to_string(), &[field], parse) as usize;
        }
    }
    // Seeded random pairs, and a misspelled extra key.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let values = hostile();
    for _ in 0..300 {
        let a = fields[rng.random_range(0..fields.len())];
        let b = fields[rng.random_range(0..fields.len())];
        let va = values[rng.random_range(0..values.len())].clone();
        let vb = values[rng.random_range(0..values.len())].clone();
        let v = edited(&base, &[(a.0, a.1, Some(va)), (b.0, b.1, Some(vb))]);
        tried += 1;
        refused += check_one(what, &v.to_string(), &[a.1, b.1], parse) as usize;
    }
    for &(section, field) in fields {
        let typo = format!("{field}x");
        let v = edited(&base, &[(section, &typo, Some(json!(4)))]);
        tried += 1;
        let named = check_one(what, &v.to_string(), &[&typo], parse);
        refused += named as usize;
        if !section.is_empty() || what.starts_with("train") {
            assert!(named, "{what}: the misspelled key `{typo}` was ignored");
        }
    }
    println!("{what}: {tried} hostile configs, {refused} refused naming the field, none panicked");
}

#[test]
fn train_lm_configs_never_panic_and_name_the_field() {
    let base = json!({
        "model": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
                  "rope_theta": 10000.0},
        "train": {"seq_len": 64, "batch_size": 2, "steps": 10, "lr": 0.001, "warmup_steps": 2,
                  "min_lr_ratio": 0.1, "weight_decay": 0.01, "grad_clip": 1.0, "seed": 0,
                  "checkpoint_every": 5, "dev_tokens": 128}
    });
    let fields: Vec<(&str, &str)> = base["model"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| ("model", k.as_str()))
        .chain(
            base["train"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| ("train", k.as_str())),
        )
        .collect();
    // Accepted configs must be sane: sizes within bounds, positive rates.
    let parse = |p: &std::path::Path| -> Result<(), String> {
        let c = LmTrainConfig::from_file(p).map_err(|e| e.to_string())?;
        assert!(c.model.hidden_size <= 1 << 16 && c.train.steps >= 1 && c.train.lr > 0.0);
        Ok(())
    };
    fuzz("train lm config", base.clone(), &fields, &parse);
}

#[test]
fn model_configs_never_panic_and_name_the_field() {
    let dir = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let fields = [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "rope_theta",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ]
    .map(|f| ("", f));
    let parse = |p: &std::path::Path| -> Result<(), String> {
        ModelConfig::from_file(p)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    fuzz("model config.json", base, &fields, &parse);
}
