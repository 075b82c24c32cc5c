//! # confu-train
//!
//! Owns training on burn's autodiff backend: the testbed's tokenizer ([`tokenizer`]), small target
//! LMs ([`lm`], [`pretrain`]), EAGLE-3 heads with the training-time test ([`eagle3`],
//! [`eagle3_train`]) on corpus text or on the target's own continuations ([`self_distill`]), with
//! atomic checkpoints and exact resume. ConFu training (anchors, replication, gradients through the
//! frozen target) comes next.

pub mod eagle3;
pub mod eagle3_train;
pub mod lm;
pub mod pretrain;
pub mod self_distill;
pub mod tokenizer;
