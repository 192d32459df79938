// Shared helpers for the integration tests (included with `mod common`).
#![allow(dead_code)]
use kenning_eval::rng::SplitMix64;

/// Standard normal samples by Box-Muller.
pub fn gauss(rng: &mut SplitMix64) -> f32 {
    let (u, v) = (rng.unit().max(1e-12), rng.unit());
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// `n` points around `centre` with per-dimension spread `sigma`.
pub fn cluster(rng: &mut SplitMix64, centre: &[f32], sigma: f32, n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| centre.iter().map(|c| c + sigma * gauss(rng)).collect())
        .collect()
}

pub fn axis(dim: usize, k: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[k] = scale;
    v
}
