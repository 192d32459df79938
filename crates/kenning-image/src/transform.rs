//! 2-D similarity transforms and the face alignment warp built on them.

use image::RgbImage;
use kenning_core::Point;

/// A similarity transform (rotation, uniform scale, translation; no
/// reflection): `x' = a*x - b*y + tx`, `y' = b*x + a*y + ty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f64,
    /// `scale * sin(angle)`.
    pub b: f64,
    /// Horizontal translation.
    pub tx: f64,
    /// Vertical translation.
    pub ty: f64,
}

impl Default for Similarity {
    /// The identity.
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl Similarity {
    /// The identity transform.
    pub const IDENTITY: Self = Self {
        a: 1.0,
        b: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    /// The least-squares similarity mapping `from[k]` onto `to[k]` (the 2-D
    /// closed form of Umeyama's method, which never reflects).
    ///
    /// With `p_k = from_k - mean(from)` and `q_k = to_k - mean(to)`:
    /// `a = Σ(p·q) / Σ|p|²`, `b = Σ(p_x q_y - p_y q_x) / Σ|p|²` and
    /// `t = mean(to) - M·mean(from)`, every sum taken over the points in
    /// order in `f64`. Extra points in the longer slice are ignored. With no
    /// points this is the identity; when all `from` points coincide it is
    /// the translation between the means.
    pub fn fit(from: &[Point], to: &[Point]) -> Similarity {
        let n = from.len().min(to.len());
        if n == 0 {
            return Self::IDENTITY;
        }
        let (from, to) = (&from[..n], &to[..n]);
        let mean = |pts: &[Point]| {
            let (sx, sy) = pts
                .iter()
                .fold((0.0, 0.0), |(sx, sy), p| (sx + p.x, sy + p.y));
            Point::new(sx / n as f64, sy / n as f64)
        };
        let (mf, mt) = (mean(from), mean(to));
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for (f, t) in from.iter().zip(to) {
            let (px, py) = (f.x - mf.x, f.y - mf.y);
            let (qx, qy) = (t.x - mt.x, t.y - mt.y);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        let (a, b) = if norm > 0.0 {
            (dot / norm, cross / norm)
        } else {
            (1.0, 0.0)
        };
        Similarity {
            a,
            b,
            tx: mt.x - (a * mf.x - b * mf.y),
            ty: mt.y - (b * mf.x + a * mf.y),
        }
    }

    /// Maps a point.
    pub fn apply(&self, p: Point) -> Point {
        Point::new(
            self.a * p.x - self.b * p.y + self.tx,
            self.b * p.x + self.a * p.y + self.ty,
        )
    }

    /// The uniform scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The rotation in radians (counter-clockwise in x-right/y-up axes, so
    /// clockwise on screen where y points down).
    pub fn angle(&self) -> f64 {
        self.b.atan2(self.a)
    }

    /// The inverse transform. A zero-scale transform has none; its
    /// "inverse" is the zero transform, which maps everything to the origin.
    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        if det == 0.0 || !det.is_finite() {
            return Similarity {
                a: 0.0,
                b: 0.0,
                tx: 0.0,
                ty: 0.0,
            };
        }
        let (a, b) = (self.a / det, -self.b / det);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }
}

/// An affine map from output to source pixel coordinates:
/// `x = m[0]*u + m[1]*v + m[2]`, `y = m[3]*u + m[4]*v + m[5]`.
#[derive(Clone, Copy)]
pub(crate) struct Affine(pub [f64; 6]);

impl Affine {
    /// Source pixels spanned by one output pixel along each output axis.
    fn footprint(&self) -> (f64, f64) {
        let m = &self.0;
        (m[0].hypot(m[3]), m[1].hypot(m[4]))
    }
}

/// Bilinear sample of channel values at (x, y) (pixel centres at integer
/// coordinates); neighbours outside the image count as black.
fn sample(img: &RgbImage, x: f64, y: f64) -> [f64; 3] {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let (fx, fy) = (x.floor(), y.floor());
    let (dx, dy) = (x - fx, y - fy);
    let mut acc = [0.0; 3];
    if !(fx > -2.0 && fy > -2.0 && fx < w as f64 && fy < h as f64) {
        return acc;
    }
    let (x0, y0) = (fx as i64, fy as i64);
    for (yy, wy) in [(y0, 1.0 - dy), (y0 + 1, dy)] {
        for (xx, wx) in [(x0, 1.0 - dx), (x0 + 1, dx)] {
            if (0..w).contains(&xx) && (0..h).contains(&yy) {
                let px = img.get_pixel(xx as u32, yy as u32).0;
                for c in 0..3 {
                    acc[c] += wx * wy * f64::from(px[c]);
                }
            }
        }
    }
    acc
}

/// Renders `out_width` x `out_height` pixels, output pixel (u, v) taken from
/// source point `map(u, v)` (integer coordinates are pixel centres on both
/// sides). Where one output pixel spans more than two source pixels it
/// averages an n x n grid of bilinear samples over its footprint (a box
/// prefilter), so a large face shrunk to a small crop does not alias.
pub(crate) fn warp(img: &RgbImage, map: Affine, out_width: u32, out_height: u32) -> RgbImage {
    let mut out = RgbImage::new(out_width, out_height);
    if img.width() == 0 || img.height() == 0 || !map.0.iter().all(|v| v.is_finite()) {
        return out;
    }
    let steps = |span: f64| {
        if span > 2.0 {
            span.ceil().min(16.0) as usize
        } else {
            1
        }
    };
    let (nu, nv) = map.footprint();
    let (nu, nv) = (steps(nu), steps(nv));
    let m = map.0;
    let weight = 1.0 / (nu * nv) as f64;
    for (u, v, px) in out.enumerate_pixels_mut() {
        let mut acc = [0.0; 3];
        for j in 0..nv {
            let sv = f64::from(v) + (j as f64 + 0.5) / nv as f64 - 0.5;
            for i in 0..nu {
                let su = f64::from(u) + (i as f64 + 0.5) / nu as f64 - 0.5;
                let s = sample(
                    img,
                    m[0] * su + m[1] * sv + m[2],
                    m[3] * su + m[4] * sv + m[5],
                );
                for c in 0..3 {
                    acc[c] += s[c];
                }
            }
        }
        px.0 = acc.map(|a| (a * weight).round().clamp(0.0, 255.0) as u8);
    }
    out
}

/// How a template alignment samples the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// Exact bilinear sampling, averaged over each output pixel's footprint
    /// when the face is more than twice the crop's size (no aliasing).
    #[default]
    Prefiltered,
    /// Bit for bit what OpenCV's `warpAffine` with `INTER_LINEAR` and a
    /// black constant border computes (coordinates in 1/32 pixel, 15-bit
    /// integer weights, one sample per output pixel), as
    /// `FaceRecognizerSF::alignCrop` uses it: for recognisers whose
    /// reference pipeline is OpenCV's.
    OpenCv,
}

/// Bilinear weights of OpenCV's `INTER_LINEAR` remap table for a fractional
/// position of (`fx`, `fy`) 32nds: four 15-bit integers summing to 32768.
fn opencv_weights(fx: usize, fy: usize) -> [i32; 4] {
    let (x, y) = (fx as f32 / 32.0, fy as f32 / 32.0);
    let kx = [1.0 - x, x];
    let ky = [1.0 - y, y];
    let mut w = [0i32; 4];
    let (mut sum, mut min_k, mut max_k) = (0, 0, 0);
    for (i, wy) in ky.iter().enumerate() {
        for (j, wx) in kx.iter().enumerate() {
            let k = i * 2 + j;
            w[k] = (wy * wx * 32768.0).round_ties_even() as i32;
            sum += w[k];
            if w[k] < w[min_k] {
                min_k = k;
            }
            if w[k] > w[max_k] {
                max_k = k;
            }
        }
    }
    let diff = sum - 32768;
    if diff < 0 {
        w[max_k] -= diff;
    } else if diff > 0 {
        w[min_k] -= diff;
    }
    w
}

/// OpenCV's `warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)` with the map
/// output -> source `map` (what OpenCV computes from the forward matrix).
fn warp_opencv(img: &RgbImage, map: Affine, out_width: u32, out_height: u32) -> RgbImage {
    let mut out = RgbImage::new(out_width, out_height);
    let m = map.0;
    if !m.iter().all(|v| v.is_finite()) {
        return out;
    }
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let fixed = |v: f64| (v * 1024.0).round_ties_even() as i64;
    let pixel = |x: i64, y: i64| -> [i32; 3] {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.get_pixel(x as u32, y as u32).0.map(i32::from)
        } else {
            [0; 3]
        }
    };
    for v in 0..out_height {
        let yv = f64::from(v);
        let (x0, y0) = (fixed(m[1] * yv + m[2]) + 16, fixed(m[4] * yv + m[5]) + 16);
        for u in 0..out_width {
            let xu = f64::from(u);
            let x = (x0 + fixed(m[0] * xu)) >> 5;
            let y = (y0 + fixed(m[3] * xu)) >> 5;
            let (sx, sy) = (x >> 5, y >> 5);
            if sx >= w || sx + 1 < 0 || sy >= h || sy + 1 < 0 {
                continue;
            }
            let wt = opencv_weights((x & 31) as usize, (y & 31) as usize);
            let p = [
                pixel(sx, sy),
                pixel(sx + 1, sy),
                pixel(sx, sy + 1),
                pixel(sx + 1, sy + 1),
            ];
            let px = out.get_pixel_mut(u, v);
            for (c, channel) in px.0.iter_mut().enumerate() {
                let acc: i32 = p.iter().zip(wt).map(|(q, w)| q[c] * w).sum();
                *channel = ((acc + (1 << 14)) >> 15).clamp(0, 255) as u8;
            }
        }
    }
    out
}

/// Warps the face to an `out_width` x `out_height` crop whose `template`
/// points (in output pixel coordinates) land on the face's `landmarks`
/// (in image pixel coordinates), as ArcFace-style recognisers expect.
///
/// Fits the [`Similarity`] image -> template by least squares (the direction
/// OpenCV's `FaceRecognizerSF::alignCrop` and insightface's `norm_crop` fit,
/// which differs from fitting template -> image when the five points do not
/// fit the template exactly, e.g. a turned face), inverts it and samples
/// every output pixel bilinearly, integer coordinates being pixel centres on both sides (the
/// convention of `cv2.warpAffine`); outside the image is black. When the
/// face is more than twice the crop's size, each output pixel averages a grid
/// of samples over its footprint instead of aliasing.
pub fn align(
    img: &RgbImage,
    landmarks: &[Point],
    template: &[Point],
    out_width: u32,
    out_height: u32,
) -> RgbImage {
    align_with(
        img,
        landmarks,
        template,
        out_width,
        out_height,
        Sampling::Prefiltered,
    )
}

/// [`align`] with a choice of [`Sampling`].
pub fn align_with(
    img: &RgbImage,
    landmarks: &[Point],
    template: &[Point],
    out_width: u32,
    out_height: u32,
    sampling: Sampling,
) -> RgbImage {
    let s = Similarity::fit(landmarks, template).inverse();
    let map = Affine([s.a, -s.b, s.tx, s.b, s.a, s.ty]);
    match sampling {
        Sampling::Prefiltered => warp(img, map, out_width, out_height),
        Sampling::OpenCv => warp_opencv(img, map, out_width, out_height),
    }
}
