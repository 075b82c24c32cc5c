//! # confu-verify
//!
//! Owns the target side of a speculative round (METHOD.md §3–4): the verification visibility mask
//! (tree nodes, contemplate rows, soft prompt), greedy and lossless-sampling acceptance, KV
//! compaction to the accepted path, and the choice of the future vector `f`. Not built yet; the
//! target forward it needs (ids or embeddings, explicit positions, masks, taps, a reserved cache
//! region, keep-and-compact) is in `confu-model` and `confu-core` and tested for ConFu readiness.
