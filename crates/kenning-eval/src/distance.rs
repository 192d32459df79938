//! Embedding matrices, distance functions and fast all-pairs loops.

use rayon::prelude::*;

use crate::error::{invalid, Result};

pub use kenning_core::fair::{dot, Distance};

/// A dense row-major matrix of embeddings with cached squared norms.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
    sq_norms: Vec<f32>,
}

impl Embeddings {
    /// Builds the matrix from rows, which must be non-empty vectors of one
    /// length with finite values.
    pub fn new(rows: &[Vec<f32>]) -> Result<Self> {
        let dim = rows.first().map_or(0, Vec::len);
        if let Some(i) = rows.iter().position(|r| r.len() != dim) {
            return Err(invalid(format!(
                "embedding {i} has {} values, expected {dim}",
                rows[i].len()
            )));
        }
        Self::from_flat(dim, rows.concat())
    }

    /// Builds the matrix from `n * dim` values laid out row after row.
    pub fn from_flat(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 && !data.is_empty() {
            return Err(invalid("embedding dimension is 0"));
        }
        if dim > 0 && !data.len().is_multiple_of(dim) {
            return Err(invalid(format!(
                "{} values do not split into rows of {dim}",
                data.len()
            )));
        }
        if data.iter().any(|x| !x.is_finite()) {
            return Err(invalid("embeddings contain NaN or infinite values"));
        }
        let sq_norms = if dim == 0 {
            Vec::new()
        } else {
            data.chunks_exact(dim).map(|r| dot(r, r)).collect()
        };
        Ok(Self {
            dim,
            data,
            sq_norms,
        })
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.sq_norms.len()
    }

    /// True when there are no embeddings.
    pub fn is_empty(&self) -> bool {
        self.sq_norms.is_empty()
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embedding `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Distance between embeddings `i` and `j`.
    #[inline]
    pub fn distance(&self, i: usize, j: usize, distance: Distance) -> f32 {
        distance.combine(
            dot(self.row(i), self.row(j)),
            self.sq_norms[i],
            self.sq_norms[j],
        )
    }

    /// Distance between embedding `i` and embedding `j` of `other`.
    #[inline]
    pub fn distance_to(&self, i: usize, other: &Embeddings, j: usize, distance: Distance) -> f32 {
        distance.combine(
            dot(self.row(i), other.row(j)),
            self.sq_norms[i],
            other.sq_norms[j],
        )
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Embeddings {
        let data = indices
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        let sq_norms = indices.iter().map(|&i| self.sq_norms[i]).collect();
        Embeddings {
            dim: self.dim,
            data,
            sq_norms,
        }
    }

    /// A copy with every row scaled to unit length (zero rows stay zero).
    pub fn unit_normalised(&self) -> Embeddings {
        let mut data = self.data.clone();
        if self.dim > 0 {
            for (row, &n2) in data.chunks_exact_mut(self.dim).zip(&self.sq_norms) {
                if n2 > 0.0 {
                    let s = 1.0 / n2.sqrt();
                    row.iter_mut().for_each(|x| *x *= s);
                }
            }
        }
        let sq_norms = if self.dim == 0 {
            Vec::new()
        } else {
            data.chunks_exact(self.dim).map(|r| dot(r, r)).collect()
        };
        Embeddings {
            dim: self.dim,
            data,
            sq_norms,
        }
    }

    /// Distances for the given index pairs, in parallel.
    pub fn pair_distances(&self, pairs: &[(usize, usize)], distance: Distance) -> Result<Vec<f32>> {
        let n = self.len();
        if let Some(&(a, b)) = pairs.iter().find(|&&(a, b)| a >= n || b >= n) {
            return Err(invalid(format!(
                "pair ({a}, {b}) refers past the {n} embeddings"
            )));
        }
        Ok(pairs
            .par_iter()
            .map(|&(a, b)| self.distance(a, b, distance))
            .collect())
    }
}

/// Rows per tile of the all-pairs loop: a tile of rows and a tile of columns
/// stay in cache while their pairs are computed.
const ROW_TILE: usize = 32;
const COL_TILE: usize = 256;

/// Visits every unordered pair `i < j` of `0..n` exactly once, in parallel,
/// folding into per-task accumulators that are then merged.
///
/// Work is split into a bounded number of tasks (not one per rayon split) so
/// accumulators may be large, e.g. histograms. Row tiles are dealt out
/// round-robin so that every task gets a similar share of the triangle.
pub(crate) fn pairwise_fold<A, I, F, M>(n: usize, init: I, visit: F, merge: M) -> A
where
    A: Send,
    I: Fn() -> A + Sync + Send,
    F: Fn(&mut A, usize, usize) + Sync + Send,
    M: Fn(A, A) -> A + Sync + Send,
{
    let tiles = n.div_ceil(ROW_TILE);
    let tasks = (rayon::current_num_threads() * 4).clamp(1, tiles.max(1));
    (0..tasks)
        .into_par_iter()
        .map(|task| {
            let mut acc = init();
            for tile in (task..tiles).step_by(tasks) {
                let (r0, r1) = (tile * ROW_TILE, ((tile + 1) * ROW_TILE).min(n));
                let mut c0 = r0;
                while c0 < n {
                    let c1 = (c0 + COL_TILE).min(n);
                    for i in r0..r1 {
                        for j in (i + 1).max(c0)..c1 {
                            visit(&mut acc, i, j);
                        }
                    }
                    c0 = c1;
                }
            }
            acc
        })
        .reduce(&init, &merge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_definitions() {
        let e = Embeddings::new(&[vec![3.0, 0.0], vec![0.0, 4.0], vec![6.0, 0.0]]).unwrap();
        assert!((e.distance(0, 1, Distance::Euclidean) - 5.0).abs() < 1e-5);
        assert!((e.distance(0, 1, Distance::Cosine) - 1.0).abs() < 1e-6);
        assert!(e.distance(0, 2, Distance::Cosine).abs() < 1e-6);
        assert!((Distance::Euclidean.between(&[1.0; 9], &[0.0; 9]) - 3.0).abs() < 1e-5);
    }

    #[test]
    fn pairwise_visits_each_pair_once() {
        let n = 300;
        let (count, sum) = pairwise_fold(
            n,
            || (0u64, 0u64),
            |a, i, j| {
                assert!(i < j);
                a.0 += 1;
                a.1 += (i * n + j) as u64;
            },
            |a, b| (a.0 + b.0, a.1 + b.1),
        );
        assert_eq!(count, (n * (n - 1) / 2) as u64);
        let expect: u64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i * n + j) as u64))
            .sum();
        assert_eq!(sum, expect);
    }

    #[test]
    fn rejects_ragged_and_nan() {
        assert!(Embeddings::new(&[vec![1.0], vec![1.0, 2.0]]).is_err());
        assert!(Embeddings::new(&[vec![f32::NAN]]).is_err());
    }
}
