//! The draft vocabulary: draft id `i` (a row of the draft's `lm_head`) means target id
//! `i + d2t[i]` — the official checkpoint stores offsets, not ids.

/// Mapping between draft ids and target ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftVocab {
    to_target: Vec<u32>,
}

impl DraftVocab {
    /// From the official `d2t` offsets; every mapped id must lie in the target vocabulary.
    pub fn from_offsets(d2t: &[i64], target_vocab: usize) -> Result<Self, String> {
        let to_target = d2t
            .iter()
            .enumerate()
            .map(|(i, &off)| {
                let t = i as i64 + off;
                if t < 0 || t as usize >= target_vocab {
                    Err(format!(
                        "draft id {i} maps to target id {t}, outside the target vocabulary of {target_vocab}"
                    ))
                } else {
                    Ok(t as u32)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { to_target })
    }

    /// The identity mapping (draft vocabulary = target vocabulary).
    pub fn identity(size: usize) -> Self {
        Self {
            to_target: (0..size as u32).collect(),
        }
    }

    /// Target id of draft id `i`.
    pub fn target_id(&self, draft_id: usize) -> u32 {
        self.to_target[draft_id]
    }

    /// Size of the draft vocabulary.
    pub fn len(&self) -> usize {
        self.to_target.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.to_target.is_empty()
    }

    /// The official `d2t` offsets (target id minus draft id) and the `t2d` mask over a target
    /// vocabulary of `target_vocab` ids: what an exported checkpoint stores.
    pub fn offsets_and_mask(&self, target_vocab: usize) -> (Vec<i64>, Vec<bool>) {
        let mut t2d = vec![false; target_vocab];
        let d2t = self
            .to_target
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if let Some(m) = t2d.get_mut(t as usize) {
                    *m = true;
                }
                t as i64 - i as i64
            })
            .collect();
        (d2t, t2d)
    }
}
