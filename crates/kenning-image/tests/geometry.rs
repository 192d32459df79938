mod common;

use image::{Rgb, RgbImage};
use kenning_core::Point;
use kenning_image::{align, resize_bilinear, to_planar_f32, Similarity};

fn grey_row(values: &[u8]) -> RgbImage {
    RgbImage::from_fn(values.len() as u32, 1, |x, _| {
        let v = values[x as usize];
        Rgb([v, v, v])
    })
}

fn reds(img: &RgbImage) -> Vec<u8> {
    img.pixels().map(|p| p[0]).collect()
}

#[test]
fn resize_matches_hand_computed_values() {
    // Upscale 2 -> 4: centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    assert_eq!(
        reds(&resize_bilinear(&grey_row(&[0, 200]), 4, 1)),
        [0, 50, 150, 200]
    );
    // Downscale 4 -> 2: centres at 0.5 and 2.5.
    assert_eq!(
        reds(&resize_bilinear(&grey_row(&[10, 20, 30, 40]), 2, 1)),
        [15, 35]
    );
    // 3 -> 2: centres at 0.25 and 1.75.
    assert_eq!(
        reds(&resize_bilinear(&grey_row(&[0, 100, 200]), 2, 1)),
        [25, 175]
    );
    // Vertical works the same way, and channels stay separate.
    let col = RgbImage::from_fn(1, 2, |_, y| Rgb([if y == 0 { 0 } else { 200 }, 7, 255]));
    let out = resize_bilinear(&col, 1, 4);
    assert_eq!(
        out.pixels().map(|p| p.0).collect::<Vec<_>>(),
        [[0, 7, 255], [50, 7, 255], [150, 7, 255], [200, 7, 255]]
    );
}

#[test]
fn resize_identity_and_degenerate_sizes() {
    let img = common::pattern(37, 23);
    assert_eq!(resize_bilinear(&img, 37, 23), img);
    assert_eq!(resize_bilinear(&img, 0, 5).dimensions(), (0, 5));
    assert_eq!(
        resize_bilinear(&RgbImage::new(0, 0), 3, 2),
        RgbImage::new(3, 2)
    );
    let one = resize_bilinear(&grey_row(&[9]), 5, 4);
    assert!(one.pixels().all(|p| p.0 == [9, 9, 9]));
}

#[test]
fn planar_layout_is_chw() {
    let img = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8, 10 + x as u8, 20 + x as u8]));
    assert_eq!(to_planar_f32(&img), [0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
}

fn known() -> Similarity {
    let (scale, angle) = (1.7_f64, 0.4_f64);
    Similarity {
        a: scale * angle.cos(),
        b: scale * angle.sin(),
        tx: 31.5,
        ty: -12.25,
    }
}

fn template() -> Vec<Point> {
    vec![
        Point::new(38.2946, 51.6963),
        Point::new(73.5318, 51.5014),
        Point::new(56.0252, 71.7366),
        Point::new(41.5493, 92.3655),
        Point::new(70.7299, 92.2041),
    ]
}

#[test]
fn fit_recovers_a_known_transform() {
    let s = known();
    let from = template();
    let to: Vec<Point> = from.iter().map(|&p| s.apply(p)).collect();
    let fit = Similarity::fit(&from, &to);
    for (got, want) in [(fit.a, s.a), (fit.b, s.b), (fit.tx, s.tx), (fit.ty, s.ty)] {
        assert!((got - want).abs() < 1e-12, "{fit:?} vs {s:?}");
    }
    assert!((fit.scale() - 1.7).abs() < 1e-12);
    assert!((fit.angle() - 0.4).abs() < 1e-12);
    let back = fit.inverse();
    for &p in &from {
        let q = back.apply(fit.apply(p));
        assert!((q.x - p.x).abs() < 1e-12 && (q.y - p.y).abs() < 1e-12);
    }
}

#[test]
fn fit_is_least_squares_and_handles_degenerate_input() {
    // Noisy correspondences: the fit must beat small perturbations of itself.
    let s = known();
    let from = template();
    let noise = [
        (0.3, -0.2),
        (-0.1, 0.4),
        (0.2, 0.1),
        (-0.4, -0.3),
        (0.1, 0.2),
    ];
    let to: Vec<Point> = from
        .iter()
        .zip(noise)
        .map(|(&p, (dx, dy))| {
            let q = s.apply(p);
            Point::new(q.x + dx, q.y + dy)
        })
        .collect();
    let cost = |t: &Similarity| -> f64 {
        from.iter()
            .zip(&to)
            .map(|(&p, q)| {
                let r = t.apply(p);
                (r.x - q.x).powi(2) + (r.y - q.y).powi(2)
            })
            .sum()
    };
    let fit = Similarity::fit(&from, &to);
    for d in [1e-4, -1e-4] {
        for tweak in [
            Similarity {
                a: fit.a + d,
                ..fit
            },
            Similarity {
                b: fit.b + d,
                ..fit
            },
            Similarity {
                tx: fit.tx + d,
                ..fit
            },
            Similarity {
                ty: fit.ty + d,
                ..fit
            },
        ] {
            assert!(cost(&fit) < cost(&tweak));
        }
    }
    assert_eq!(Similarity::fit(&[], &[]), Similarity::IDENTITY);
    let same = [Point::new(1.0, 1.0); 3];
    let shifted = Similarity::fit(&same, &[Point::new(4.0, 5.0); 3]);
    assert_eq!(shifted.apply(Point::new(1.0, 1.0)), Point::new(4.0, 5.0));
    let zero = Similarity {
        a: 0.0,
        b: 0.0,
        tx: 1.0,
        ty: 2.0,
    }
    .inverse();
    assert!(zero.a.is_finite() && zero.tx.is_finite());
}

/// R = x / 2 and G = y / 2 (+ 10): bilinear sampling and box averaging both
/// reproduce a linear ramp exactly, so aligned pixels can be predicted.
fn ramp(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x / 2) as u8, (y / 2 + 10) as u8, 77])
    })
}

fn check_align(scale: f64, angle: f64) {
    let img = ramp(480, 480);
    let s = Similarity {
        a: scale * angle.cos(),
        b: scale * angle.sin(),
        tx: 120.0,
        ty: 60.0,
    };
    let landmarks: Vec<Point> = template().iter().map(|&p| s.apply(p)).collect();
    let out = align(&img, &landmarks, &template(), 112, 112);
    assert_eq!(out.dimensions(), (112, 112));
    let mut checked = 0;
    for (u, v, px) in out.enumerate_pixels() {
        let p = s.apply(Point::new(f64::from(u), f64::from(v)));
        // Stay away from the edges and from the ramp's integer steps.
        let margin = scale + 2.0;
        if p.x < margin || p.y < margin || p.x > 479.0 - margin || p.y > 479.0 - margin {
            continue;
        }
        let (want_r, want_g) = ((p.x / 2.0).floor(), (p.y / 2.0).floor() + 10.0);
        assert!(
            (f64::from(px[0]) - want_r).abs() <= 1.0,
            "R at {u},{v}: {} vs {want_r}",
            px[0]
        );
        assert!(
            (f64::from(px[1]) - want_g).abs() <= 1.0,
            "G at {u},{v}: {} vs {want_g}",
            px[1]
        );
        assert_eq!(px[2], 77);
        checked += 1;
    }
    assert!(checked > 5000, "only {checked} pixels inside");
}

#[test]
fn align_places_template_on_landmarks() {
    check_align(1.3, 0.25);
    check_align(0.6, -0.5);
}

#[test]
fn align_downscales_large_faces_with_averaging() {
    check_align(3.9, 0.1);
    // A fine checkerboard shrunk 4x must come out mid-grey, not aliased.
    let checker = RgbImage::from_fn(800, 800, |x, y| {
        let v = if (x + y) % 2 == 0 { 255 } else { 0 };
        Rgb([v, v, v])
    });
    let s = Similarity {
        a: 4.0,
        b: 0.0,
        tx: 100.0,
        ty: 100.0,
    };
    let landmarks: Vec<Point> = template().iter().map(|&p| s.apply(p)).collect();
    let out = align(&checker, &landmarks, &template(), 112, 112);
    assert!(
        out.pixels().all(|p| (100..=156).contains(&p[0])),
        "aliasing"
    );
}

#[test]
fn align_outside_is_black() {
    let img = RgbImage::from_pixel(50, 50, Rgb([200, 200, 200]));
    let s = Similarity {
        a: 1.0,
        b: 0.0,
        tx: 500.0,
        ty: 500.0,
    };
    let landmarks: Vec<Point> = template().iter().map(|&p| s.apply(p)).collect();
    let out = align(&img, &landmarks, &template(), 112, 112);
    assert!(out.pixels().all(|p| p.0 == [0, 0, 0]));
    let out = align(&img, &[Point::new(f64::NAN, 0.0)], &template(), 8, 8);
    assert_eq!(out.dimensions(), (8, 8));
}
