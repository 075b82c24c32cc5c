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
//!   the target's own continuations ([`self_distill`]);
//! - ConFu heads ([`confu_train`]): the EAGLE-3 head plus the soft prompt and both MoEs, with
//!   anchor token sampling ([`anchors`]), the contemplate rows through the frozen target on the
//!   autodiff backend ([`contemplate_pass`]) and future slots in the training-time test
//!   ([`confu_loss`], [`ttt_attention`]).

pub mod anchors;
pub mod checkpoint;
pub mod config_file;
pub mod confu_loss;
pub mod confu_train;
pub mod contemplate_pass;
pub mod eagle3;
pub mod eagle3_train;
pub mod pretrain;
pub mod self_distill;
pub mod tokenizer;
pub mod trainer;
pub mod ttt_attention;
pub mod ttt_batch;
