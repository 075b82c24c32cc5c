//! # confu-moe
//!
//! Owns ConFu's dynamic contemplate tokens (METHOD.md §5): a linear router over a hidden state,
//! softmax, the top-`K_expert` experts, and the weighted sum of their learned embeddings. Two
//! independent instances serve the target side (the `[con]` embedding) and the draft side (the
//! future token's `e_f`). Not built yet: the foundation only fixes the crate's place in the graph
//! (it depends on `confu-core` alone, and `confu-draft` / `confu-verify` depend on it).
