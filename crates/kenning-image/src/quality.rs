//! Face-region quality measures on a 0-100 scale.

use image::RgbImage;
use kenning_core::PixelBox;

use crate::transform::{warp, Affine};

/// Side of the square the face region is resampled to before measuring
/// sharpness, which makes the measure independent of the face's size.
const SHARPNESS_SIDE: u32 = 64;

/// Laplacian variance at which sharpness reads 50. Calibrated on a studio
/// portrait: its face gives about 1500 (83), and about 50 (14) after a
/// Gaussian blur of sigma 6 px on the 270 px face.
const SHARPNESS_HALF: f64 = 300.0;

/// The box clipped to the image, as whole-pixel bounds `(x0, y0, x1, y1)`,
/// or `None` when nothing is left.
fn clip(img: &RgbImage, b: &PixelBox) -> Option<(u32, u32, u32, u32)> {
    let bound = |v: f64, max: u32| v.clamp(0.0, f64::from(max));
    let (w, h) = img.dimensions();
    // NaN clamps to NaN, whose cast is 0: an unusable box ends up empty.
    let x0 = bound(b.left.floor(), w) as u32;
    let y0 = bound(b.top.floor(), h) as u32;
    let x1 = bound(b.right.ceil(), w) as u32;
    let y1 = bound(b.bottom.ceil(), h) as u32;
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}

fn luma(px: &[u8; 3]) -> f64 {
    0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2])
}

/// Mean luma (`0.299 R + 0.587 G + 0.114 B`) of the face region clipped to
/// the image, scaled from 0-255 to 0-100. An empty region scores 0.
pub fn brightness(img: &RgbImage, face: &PixelBox) -> f32 {
    let Some((x0, y0, x1, y1)) = clip(img, face) else {
        return 0.0;
    };
    let mut sum = 0.0;
    for y in y0..y1 {
        for x in x0..x1 {
            sum += luma(&img.get_pixel(x, y).0);
        }
    }
    let count = f64::from(x1 - x0) * f64::from(y1 - y0);
    (sum / count * 100.0 / 255.0) as f32
}

/// Sharpness of the face region clipped to the image, 0-100.
///
/// The region is resampled to 64x64 (area-averaged when shrinking, so the
/// score does not depend on the face's size in pixels), converted to luma,
/// and the variance `v` of its 4-neighbour Laplacian over the interior is
/// mapped through the saturating curve `100 * v / (v + 300)`: 50 at
/// `v = 300`, above 80 for crisp studio portraits, under 20 once detail is
/// blurred away. An empty region scores 0.
pub fn sharpness(img: &RgbImage, face: &PixelBox) -> f32 {
    let Some((x0, y0, x1, y1)) = clip(img, face) else {
        return 0.0;
    };
    let n = SHARPNESS_SIDE;
    let (sx, sy) = (
        f64::from(x1 - x0) / f64::from(n),
        f64::from(y1 - y0) / f64::from(n),
    );
    // Output pixel centre u maps to the source centre x0 + (u + 0.5) * sx - 0.5.
    let map = Affine([
        sx,
        0.0,
        f64::from(x0) + 0.5 * sx - 0.5,
        0.0,
        sy,
        f64::from(y0) + 0.5 * sy - 0.5,
    ]);
    let patch = warp(img, map, n, n);
    let n = n as usize;
    let grey: Vec<f64> = patch.pixels().map(|p| luma(&p.0)).collect();
    let (mut sum, mut sum_sq, mut count) = (0.0, 0.0, 0.0);
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let i = y * n + x;
            let lap = grey[i - 1] + grey[i + 1] + grey[i - n] + grey[i + n] - 4.0 * grey[i];
            sum += lap;
            sum_sq += lap * lap;
            count += 1.0;
        }
    }
    let mean = sum / count;
    let variance = (sum_sq / count - mean * mean).max(0.0);
    (100.0 * variance / (variance + SHARPNESS_HALF)) as f32
}
