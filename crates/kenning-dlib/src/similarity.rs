//! The least-squares 2-D similarity transform (Umeyama without reflection)
//! in closed form, in f64.
//!
//! kenning-image is getting a public `Similarity::fit` with the same maths;
//! this private copy exists so this crate does not block on it. Both the
//! shape predictor and the chip geometry depend on the exact arithmetic
//! order below (sums over the points in order, then one division), which
//! matched dlib's SVD-based fit to ~1e-13.

/// x' = a*x - b*y + tx, y' = b*x + a*y + ty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sim {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

/// Fits the similarity mapping `from[k]` onto `to[k]` in the least-squares
/// sense. Degenerate input (all `from` points equal) gives a = b = 0.
pub(crate) fn fit(from: &[[f64; 2]], to: &[[f64; 2]]) -> Sim {
    let n = from.len().min(to.len()).max(1) as f64;
    let mean = |p: &[[f64; 2]]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(sx, sy), q| (sx + q[0], sy + q[1]));
        (sx / n, sy / n)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (p, q) in from.iter().zip(to) {
        let (ax, ay) = (p[0] - fx, p[1] - fy);
        let (bx, by) = (q[0] - tx, q[1] - ty);
        dot += ax * bx + ay * by;
        cross += ax * by - ay * bx;
        norm += ax * ax + ay * ay;
    }
    let (a, b) = if norm > 0.0 { (dot / norm, cross / norm) } else { (0.0, 0.0) };
    Sim { a, b, tx: tx - (a * fx - b * fy), ty: ty - (b * fx + a * fy) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_transform() {
        let from = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]];
        let (a, b, tx, ty) = (1.5, -0.4, 10.0, -3.0);
        let to: Vec<[f64; 2]> = from.iter().map(|p| [a * p[0] - b * p[1] + tx, b * p[0] + a * p[1] + ty]).collect();
        let s = fit(&from, &to);
        for (x, y) in [(s.a, a), (s.b, b), (s.tx, tx), (s.ty, ty)] {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
