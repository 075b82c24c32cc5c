//! The AVX-512 sweep of [`crate::tiles`]: tiles of up to 4 weight rows x 4 input rows, one
//! 16-lane register per output, summed by `lane_sums` in `dot_body`'s tree.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use crate::ahead::{per_piece, Spread};
use crate::exact_dot::{tail_dot, Grid};
use crate::lane_sums::lane_sums;
use crate::tiles::Chunk;
use crate::weight_elem::WeightElem;

/// [`crate::tiles::Tiles`]' sweep with AVX-512: tiles of up to 4 weight rows x 4 input rows
/// (16 accumulators of 32 registers), the next tile's rows prefetched across its blocks of input
/// rows.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn chunk_avx512<W: WeightElem>(c: Chunk<W>, xs: &[&[f32]], out: Grid) {
    let pieces = c.inner / 16;
    let blocks = xs.len().div_ceil(4);
    let per = per_piece(
        c.per_tile * c.inner * std::mem::size_of::<W>(),
        blocks * pieces,
    );
    for g in (0..c.n).step_by(c.per_tile) {
        let (k, ws, ahead) = c.tile(g);
        let ahead = c.ahead(ahead, per);
        for (b, rows) in xs.chunks(4).enumerate() {
            let (ws, out, first) = (&ws[..k], out.at(g, 4 * b), b * pieces);
            macro_rules! go {
                ($($j:literal, $r:literal);*) => {
                    match (k, rows.len()) {
                        // SAFETY: the CPU has AVX-512F (this function's feature).
                        $(($j, $r) => unsafe { tile_avx512::<W, $j, $r>(ws, rows, out, ahead, first) },)*
                        _ => unreachable!("tiles are at most 4 x 4"),
                    }
                };
            }
            go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4)
        }
    }
}

/// A tile of `J` weight rows x `R` input rows with AVX-512 (one register per output), piece `c`
/// prefetching `ahead`'s share `first + c`; writes output `(j, r)` of `out`.
///
/// # Safety
/// The CPU has AVX-512F; as for [`Grid::set`], for every output of the tile.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_avx512<W: WeightElem, const J: usize, const R: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: Grid,
    ahead: Spread,
    first: usize,
) {
    const L: usize = 16;
    let n = ws[0].len();
    assert!(ws.len() == J && xs.len() == R);
    assert!(ws.iter().all(|w| w.len() == n) && xs.iter().all(|x| x.len() == n));
    let body = n - n % L;
    let mut acc = [[_mm512_setzero_ps(); R]; J];
    for c in 0..body / L {
        ahead.fetch(first + c);
        let i = c * L;
        // SAFETY: i + 16 <= body <= n, and every row has n elements (asserted above).
        let w: [__m512; J] = std::array::from_fn(|j| W::load16(ws[j].as_ptr().add(i)));
        for r in 0..R {
            let x = _mm512_loadu_ps(xs[r].as_ptr().add(i));
            for j in 0..J {
                acc[j][r] = _mm512_fmadd_ps(x, w[j], acc[j][r]);
            }
        }
    }
    let flat: [__m512; 16] = std::array::from_fn(|t| {
        if t < J * R {
            acc[t / R][t % R]
        } else {
            _mm512_setzero_ps()
        }
    });
    let mut sums = [0f32; 16];
    lane_sums(&flat[..J * R], &mut sums);
    for j in 0..J {
        for r in 0..R {
            let tail = tail_dot(&xs[r][body..], &ws[j][body..]);
            out.set(j, r, sums[j * R + r] + tail);
        }
    }
}
