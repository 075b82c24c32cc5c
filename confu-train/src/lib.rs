//! # confu-train
//!
//! Owns training on burn's autodiff backend: small target LMs for the testbed, EAGLE-3 heads with
//! the training-time test, and ConFu (anchors, replication, gradients through the frozen target),
//! with checkpoints and resume. Not built yet.
