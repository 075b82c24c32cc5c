//! # confu-train
//!
//! Owns training on burn's autodiff backend. The models trained are the very modules decoding
//! uses (`confu_model::Llama`, `confu_draft::Eagle3`): a trained module becomes its inference
//! form with `valid()`, and exports through the same name walk that loads it. Every trainer
//! calls one loop ([`trainer::train`]: AdamW, schedule, clipping, divergence check, atomic
//! [`checkpoint`]s, exact resume, stop, step log) with only its module and its loss:
//! - the testbed's tokenizer ([`tokenizer`]);
//! - target LMs from a corpus ([`pretrain`]);
//! - EAGLE-3 heads with the training-time test ([`eagle3`], [`eagle3_train`]) on corpus text or on
//!   the target's own continuations ([`self_distill`]).
//!
//! ConFu training (anchors, replication, gradients through the frozen target) is the next trainer.

pub mod checkpoint;
pub mod config_file;
pub mod eagle3;
pub mod eagle3_train;
pub mod pretrain;
pub mod self_distill;
pub mod tokenizer;
pub mod trainer;
