//! dlib's aligned face chip (`get_face_chip_details` followed by
//! `extract_image_chip` with bilinear interpolation), byte-exact.
//!
//! The subtle parts, each of which moves embeddings measurably when done
//! differently:
//! - chip pixel (i, j) samples c + k*R(θ)*(i - (n-1)/2, j - (n-1)/2) with
//!   k = (n*s - 1)/(n - 1), not the fitted similarity itself;
//! - large faces are sampled from a 5-tap image pyramid, using dlib's
//!   point map q/2 - (1.25, 0.75) between levels;
//! - samples outside the source are black; values are truncated, not
//!   rounded.

use kenning_core::Point;
use kenning_image::{RgbImage, Similarity};

use crate::floor_i64;

/// dlib's 5-point chip template (unit face box, before padding); point k
/// matches shape-predictor landmark k.
const TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// A floating-point rectangle with dlib's inclusive `drectangle` semantics.
#[derive(Debug, Clone, Copy)]
struct DRect {
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl DRect {
    /// dlib's area: (r - l + 1)(b - t + 1), zero when empty.
    fn area(&self) -> f64 {
        if self.r < self.l || self.b < self.t {
            0.0
        } else {
            (self.r - self.l + 1.0) * (self.b - self.t + 1.0)
        }
    }

    fn center(&self) -> (f64, f64) {
        ((self.l + self.r) / 2.0, (self.t + self.b) / 2.0)
    }

    /// pyramid_down<2>'s rectangle map: both corners through q/2 - (1.25, 0.75).
    fn down(&self) -> Self {
        let (l, t) = point_down(self.l, self.t);
        let (r, b) = point_down(self.r, self.b);
        Self { l, t, r, b }
    }
}

fn point_down(x: f64, y: f64) -> (f64, f64) {
    (x / 2.0 - 1.25, y / 2.0 - 0.75)
}

/// Rotates (x, y) about `c` by the angle with cosine `cs` and sine `sn`.
fn rotate(c: (f64, f64), x: f64, y: f64, cs: f64, sn: f64) -> (f64, f64) {
    let (dx, dy) = (x - c.0, y - c.1);
    (cs * dx - sn * dy + c.0, sn * dx + cs * dy + c.1)
}

/// A borrowed RGB raster (the crop, or a pyramid level).
struct Plane<'a> {
    data: &'a [u8],
    w: usize,
    h: usize,
}

/// Extracts dlib's aligned face chip of `size` x `size` pixels for the 5
/// shape-predictor landmarks, with `padding` around the unit face box
/// (dlib's default, and face_recognition's, is 150 and 0.25).
///
/// Only the region the chip needs is copied from `img`.
pub fn extract(img: &RgbImage, landmarks: &[Point; 5], size: u32, padding: f64) -> RgbImage {
    let n = size.max(1);
    let nf = f64::from(n);
    let mut chip = RgbImage::new(n, n);

    // 1. Similarity from the padded template (in chip pixels) to the
    //    landmarks, then rotation angle, scale and the chip rectangle.
    let from: [Point; 5] = TEMPLATE.map(|t| {
        Point::new(
            (padding + t[0]) / (2.0 * padding + 1.0) * nf,
            (padding + t[1]) / (2.0 * padding + 1.0) * nf,
        )
    });
    let s = Similarity::fit(&from, landmarks);
    let angle = s.b.atan2(s.a);
    let scale = (s.a * s.a + s.b * s.b).sqrt();
    let half = nf / 2.0;
    let cx = s.a * half - s.b * half + s.tx;
    let cy = s.b * half + s.a * half + s.ty;
    let ext = (nf * scale - 1.0) / 2.0;
    let rect = DRect {
        l: cx - ext,
        t: cy - ext,
        r: cx + ext,
        b: cy + ext,
    };
    let (sn, cs) = angle.sin_cos();

    // 2. Pyramid depth: levels while the chip rect, mapped down, still has
    //    more pixels than the chip.
    let chip_area = nf * nf;
    let mut depth = 0usize;
    let mut probe = rect;
    loop {
        let next = probe.down();
        if next.area() > chip_area {
            depth += 1;
            probe = next;
        } else {
            break;
        }
        if depth > 60 {
            break;
        }
    }

    // 3. Crop box: the rotated rect's bounds, grown by the margin the
    //    pyramid filters need, clipped to the image and rounded half away
    //    from zero.
    let c = rect.center();
    let corners = [
        (rect.l, rect.t),
        (rect.r, rect.t),
        (rect.l, rect.b),
        (rect.r, rect.b),
    ]
    .map(|(x, y)| rotate(c, x, y, cs, sn));
    // 2 pixels for bilinear at level 0; each pyramid level doubles it
    // and adds its own 2-pixel filter reach: 2, 6, 14, ...
    let mut grow = 2.0;
    for _ in 0..depth {
        grow = 2.0 * grow + 2.0;
    }
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if iw == 0 || ih == 0 {
        return chip;
    }
    let bl = (corners.iter().map(|p| p.0).fold(f64::INFINITY, f64::min) - grow)
        .max(0.0)
        .round();
    let bt = (corners.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) - grow)
        .max(0.0)
        .round();
    let br = (corners
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max)
        + grow)
        .min((iw - 1) as f64)
        .round();
    let bb = (corners
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max)
        + grow)
        .min((ih - 1) as f64)
        .round();
    // f64::round is half away from zero, like lround. An empty or
    // non-finite box (face entirely outside) leaves the chip black.
    if !(bl <= br
        && bt <= bb
        && bl.is_finite()
        && bt.is_finite()
        && br.is_finite()
        && bb.is_finite())
    {
        return chip;
    }
    let (bl, bt, br, bb) = (bl as usize, bt as usize, br as usize, bb as usize);
    let (cw, ch) = (br - bl + 1, bb - bt + 1);
    let src = img.as_raw();
    let mut crop = Vec::with_capacity(cw * ch * 3);
    for y in bt..=bb {
        let row = (y * iw + bl) * 3;
        crop.extend_from_slice(&src[row..row + cw * 3]);
    }

    // 4. Pyramid levels from the crop.
    let mut level = (crop, cw, ch);
    for _ in 0..depth {
        level = pyramid_down(&level.0, level.1, level.2);
    }
    let plane = Plane {
        data: &level.0,
        w: level.1,
        h: level.2,
    };

    // 5. The chip rect in level coordinates, its rotated corners, and the
    //    affine map from chip corners (0,0), (n-1,0), (0,n-1) onto them.
    let mut lr = DRect {
        l: rect.l - bl as f64,
        t: rect.t - bt as f64,
        r: rect.r - bl as f64,
        b: rect.b - bt as f64,
    };
    for _ in 0..depth {
        lr = lr.down();
    }
    let lc = lr.center();
    let p00 = rotate(lc, lr.l, lr.t, cs, sn);
    let p10 = rotate(lc, lr.r, lr.t, cs, sn);
    let p01 = rotate(lc, lr.l, lr.b, cs, sn);
    let span = f64::from(n - 1).max(1.0);
    let (m00, m10) = ((p10.0 - p00.0) / span, (p10.1 - p00.1) / span);
    let (m01, m11) = ((p01.0 - p00.0) / span, (p01.1 - p00.1) / span);

    let out: &mut [u8] = &mut chip;
    for j in 0..n as usize {
        for i in 0..n as usize {
            let (fi, fj) = (i as f64, j as f64);
            let px = m00 * fi + m01 * fj + p00.0;
            let py = m10 * fi + m11 * fj + p00.1;
            let o = (j * n as usize + i) * 3;
            bilinear(&plane, px, py, &mut out[o..o + 3]);
        }
    }
    chip
}

/// dlib's bilinear sample, truncated to u8; black when any of the four
/// neighbours is outside the source.
fn bilinear(p: &Plane<'_>, x: f64, y: f64, out: &mut [u8]) {
    let (xi, yi) = (floor_i64(x), floor_i64(y));
    let inside = x.is_finite() && y.is_finite() && xi >= 0 && yi >= 0;
    if !(inside && ((xi + 1) as u64) < p.w as u64 && ((yi + 1) as u64) < p.h as u64) {
        out.fill(0);
        return;
    }
    let (fx, fy) = (x - xi as f64, y - yi as f64);
    let (x0, y0) = (xi as usize, yi as usize);
    let i00 = (y0 * p.w + x0) * 3;
    let i10 = i00 + p.w * 3;
    for (ch, o) in out.iter_mut().enumerate() {
        let tl = f64::from(p.data[i00 + ch]);
        let tr = f64::from(p.data[i00 + 3 + ch]);
        let bl = f64::from(p.data[i10 + ch]);
        let br = f64::from(p.data[i10 + 3 + ch]);
        let v = (1.0 - fy) * ((1.0 - fx) * tl + fx * tr) + fy * ((1.0 - fx) * bl + fx * br);
        // Truncation, as dlib's assign_pixel from double (rounding would
        // differ by one level in about half the samples).
        *o = v as u8;
    }
}

/// dlib's pyramid_down<2> on RGB: separable 5-tap (1 4 6 4 1) filter,
/// every other pixel, integer sums divided by 256 with truncation. The
/// output has (h-3)/2 rows and (w-3)/2 columns; inputs of 8 pixels or fewer
/// on a side give an empty image.
fn pyramid_down(src: &[u8], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    if w <= 8 || h <= 8 {
        return (Vec::new(), 0, 0);
    }
    let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
    // Horizontal pass on the rows, then vertical. Sums fit in u16: at most
    // 16*255 after one pass and 256*255 after both. Slices and zips keep
    // the inner loops free of bounds checks so they vectorise.
    let mut horiz = vec![0u16; ow * h * 3];
    for (row, hrow) in src.chunks_exact(w * 3).zip(horiz.chunks_exact_mut(ow * 3)) {
        for (x, o) in hrow.chunks_exact_mut(3).enumerate() {
            let p = &row[x * 6..x * 6 + 15];
            for c in 0..3 {
                o[c] = u16::from(p[c])
                    + 4 * u16::from(p[3 + c])
                    + 6 * u16::from(p[6 + c])
                    + 4 * u16::from(p[9 + c])
                    + u16::from(p[12 + c]);
            }
        }
    }
    let mut out = vec![0u8; ow * oh * 3];
    let stride = ow * 3;
    for (y, orow) in out.chunks_exact_mut(stride).enumerate() {
        let r = |t: usize| &horiz[(2 * y + t) * stride..(2 * y + t + 1) * stride];
        let (r0, r1, r2, r3, r4) = (r(0), r(1), r(2), r(3), r(4));
        for (k, o) in orow.iter_mut().enumerate() {
            let s = u32::from(r0[k])
                + 4 * u32::from(r1[k])
                + 6 * u32::from(r2[k])
                + 4 * u32::from(r3[k])
                + u32::from(r4[k]);
            *o = (s / 256) as u8;
        }
    }
    (out, ow, oh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_of_a_flat_image_is_flat() {
        let src = vec![200u8; 20 * 11 * 3];
        let (out, w, h) = pyramid_down(&src, 20, 11);
        assert_eq!((w, h), (8, 4));
        assert!(out.iter().all(|&v| v == 200));
        assert_eq!(pyramid_down(&src, 8, 30).0.len(), 0);
    }

    #[test]
    fn chip_of_a_tiny_or_empty_image_does_not_panic() {
        let pts = [
            Point::new(10.0, 5.0),
            Point::new(7.0, 5.0),
            Point::new(1.0, 5.0),
            Point::new(3.0, 5.0),
            Point::new(5.0, 9.0),
        ];
        for (w, h) in [(0, 0), (1, 1), (3, 40), (12, 12)] {
            let chip = extract(&RgbImage::new(w, h), &pts, 150, 0.25);
            assert_eq!(chip.dimensions(), (150, 150));
        }
        let far = [Point::new(1e6, 1e6); 5];
        assert!(extract(&RgbImage::new(20, 20), &far, 150, 0.25)
            .iter()
            .all(|&v| v == 0));
    }
}
