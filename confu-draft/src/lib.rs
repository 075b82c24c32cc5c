//! # confu-draft
//!
//! Owns the drafting side of a speculative round (METHOD.md §1–2, §4 draft side): the EAGLE-3 draft
//! head loaded from the official checkpoint layout, its own KV cache, the draft vocabulary
//! (`d2t`/`t2d`), the ConFu future-token slot, and the EAGLE-2 dynamic tree builder. Not built yet;
//! it will reuse `confu-model`'s layer and embedding code and `confu-moe`'s router.
