//! # confu-train
//!
//! Owns training on burn's autodiff backend: the testbed's tokenizer ([`tokenizer`]), small target
//! LMs, EAGLE-3 heads with the training-time test, and ConFu (anchors, replication, gradients
//! through the frozen target), with checkpoints and resume. So far: the tokenizer trainer.

pub mod eagle3;
pub mod eagle3_train;
pub mod lm;
pub mod pretrain;
pub mod tokenizer;
