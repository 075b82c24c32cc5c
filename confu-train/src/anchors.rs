//! ConFu's anchor token sampling and future-prediction replication (METHOD.md §6), on the host:
//! which positions of a training sequence get a `[con]` row, and which draft rows see which
//! anchor's future slot.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How anchor positions are drawn from `0..=N−3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorSampling {
    /// Uniformly without replacement (METHOD.md's default).
    Uniform,
    /// One uniform draw in each of `A` equal strata: evenly spread, still random.
    Stratified,
}

/// The highest anchor of a sequence of `tokens` tokens: row `a` must predict token `a + 2`.
fn last_anchor(tokens: usize) -> Option<usize> {
    tokens.checked_sub(3)
}

/// Anchors per sequence of `tokens` tokens: `tokens / every`, at least 1, at most every position.
pub fn anchor_count(tokens: usize, every: usize) -> usize {
    let room = last_anchor(tokens).map_or(0, |l| l + 1);
    (tokens / every.max(1)).max(1).min(room)
}

/// `count` distinct anchors in `0..=tokens−3`, ascending, drawn by `rule` from `seed`.
pub fn sample_anchors(tokens: usize, count: usize, rule: AnchorSampling, seed: u64) -> Vec<usize> {
    let Some(last) = last_anchor(tokens) else {
        return Vec::new();
    };
    let room = last + 1;
    let count = count.min(room);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = match rule {
        AnchorSampling::Uniform => {
            // Partial Fisher–Yates over the candidate positions.
            let mut pool: Vec<usize> = (0..room).collect();
            for i in 0..count {
                let j = rng.random_range(i..room);
                pool.swap(i, j);
            }
            pool.truncate(count);
            pool
        }
        AnchorSampling::Stratified => (0..count)
            .map(|i| {
                let (lo, hi) = (i * room / count, (i + 1) * room / count);
                rng.random_range(lo..hi.max(lo + 1))
            })
            .collect(),
    };
    out.sort_unstable();
    out
}

/// For each of `rows` draft rows, the index (into `anchors`, ascending) of the latest anchor
/// `a <= j` with `j − a < replication`; `None` where no anchor covers the row.
pub fn row_slots(anchors: &[usize], rows: usize, replication: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; rows];
    let mut next = 0;
    let mut current: Option<usize> = None;
    for (j, slot) in out.iter_mut().enumerate() {
        while next < anchors.len() && anchors[next] <= j {
            current = Some(next);
            next += 1;
        }
        *slot = current.filter(|&i| j - anchors[i] < replication);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_distinct_sorted_and_leave_two_tokens_to_predict() {
        for rule in [AnchorSampling::Uniform, AnchorSampling::Stratified] {
            for seed in 0..50 {
                let a = sample_anchors(40, 5, rule, seed);
                assert_eq!(a.len(), 5);
                assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
                assert!(*a.last().unwrap() <= 37);
            }
        }
        assert_eq!(
            sample_anchors(5, 9, AnchorSampling::Uniform, 1),
            vec![0, 1, 2]
        );
        assert!(sample_anchors(2, 1, AnchorSampling::Uniform, 1).is_empty());
        assert_eq!(anchor_count(513, 8), 64);
        assert_eq!(anchor_count(4, 8), 1);
        assert_eq!(anchor_count(2, 8), 0);
    }

    #[test]
    fn uniform_sampling_reaches_every_position() {
        let mut seen = [0usize; 8];
        for seed in 0..400 {
            for a in sample_anchors(10, 2, AnchorSampling::Uniform, seed) {
                seen[a] += 1;
            }
        }
        // 800 draws over 8 positions: each about 100.
        assert!(seen.iter().all(|&n| (60..140).contains(&n)), "{seen:?}");
    }

    #[test]
    fn replication_covers_the_next_rows_of_the_latest_anchor() {
        let anchors = [2, 4, 9];
        let l1 = row_slots(&anchors, 12, 1);
        assert_eq!(
            l1,
            vec![
                None,
                None,
                Some(0),
                None,
                Some(1),
                None,
                None,
                None,
                None,
                Some(2),
                None,
                None
            ]
        );
        let l4 = row_slots(&anchors, 12, 4);
        assert_eq!(
            l4,
            vec![
                None,
                None,
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                None,
                Some(2),
                Some(2),
                Some(2)
            ]
        );
    }
}
