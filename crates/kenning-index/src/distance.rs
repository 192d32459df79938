//! Distance kernels (public so callers can compare vectors the same way
//! the index does).
//!
//! Each kernel is written as a plain loop over fixed-width lanes that LLVM
//! auto-vectorises, then compiled twice: once for the baseline target and once
//! with AVX2+FMA enabled, picked at run time. This keeps the code portable and
//! free of intrinsics while still getting 256-bit SIMD on the machines we run on.

const LANES: usize = 16;

macro_rules! multiversion {
    ($(#[$doc:meta])* $name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features the function was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn l2_sq_body(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ac, ar) = a.split_at(a.len() - a.len() % LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = d.mul_add(d, acc[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += (x - y) * (x - y);
    }
    s
}

#[inline(always)]
fn l2_sq_i8_body(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0i32; LANES];
    let (ac, ar) = a.split_at(a.len() - a.len() % LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for i in 0..LANES {
            let d = x[i] as i32 - y[i] as i32;
            acc[i] += d * d;
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        let d = *x as i32 - *y as i32;
        s += d * d;
    }
    s
}

#[inline(always)]
fn l2_sq_f32_i8_body(q: &[f32], c: &[i8]) -> f32 {
    debug_assert_eq!(q.len(), c.len());
    let mut acc = [0f32; LANES];
    let (qc, qr) = q.split_at(q.len() - q.len() % LANES);
    let (cc, cr) = c.split_at(qc.len());
    for (x, y) in qc.chunks_exact(LANES).zip(cc.chunks_exact(LANES)) {
        for i in 0..LANES {
            let d = x[i] - y[i] as f32;
            acc[i] = d.mul_add(d, acc[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in qr.iter().zip(cr) {
        let d = x - *y as f32;
        s += d * d;
    }
    s
}

multiversion!(
    /// Squared Euclidean distance between two f32 vectors of equal length.
    l2_sq, l2_sq_body, (a: &[f32], b: &[f32]) -> f32
);
multiversion!(
    /// Squared Euclidean distance between two int8 codes, in code units.
    l2_sq_i8, l2_sq_i8_body, (a: &[i8], b: &[i8]) -> i32
);
multiversion!(
    /// Squared distance between a query already mapped into code units (f32)
    /// and an int8 code: asymmetric, so the query loses no precision.
    l2_sq_f32_i8, l2_sq_f32_i8_body, (q: &[f32], c: &[i8]) -> f32
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive() {
        for n in [1usize, 7, 16, 33, 128, 130] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((l2_sq(&a, &b) - naive).abs() < 1e-4);
            let ai: Vec<i8> = (0..n).map(|i| (i as i32 * 37 % 255 - 127) as i8).collect();
            let bi: Vec<i8> = (0..n).map(|i| (i as i32 * 91 % 255 - 127) as i8).collect();
            let naive_i: i32 = ai
                .iter()
                .zip(&bi)
                .map(|(x, y)| (*x as i32 - *y as i32).pow(2))
                .sum();
            assert_eq!(l2_sq_i8(&ai, &bi), naive_i);
            let naive_a: f32 = a
                .iter()
                .zip(&bi)
                .map(|(x, y)| (x - *y as f32).powi(2))
                .sum();
            assert!((l2_sq_f32_i8(&a, &bi) - naive_a).abs() <= 1e-5 * naive_a.max(1.0));
        }
    }
}
