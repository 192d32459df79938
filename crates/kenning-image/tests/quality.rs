mod common;

use image::{Rgb, RgbImage};
use kenning_core::PixelBox;
use kenning_image::{brightness, decode_file, sharpness, DecodeLimits};

fn whole(img: &RgbImage) -> PixelBox {
    PixelBox {
        left: 0.0,
        top: 0.0,
        right: f64::from(img.width()),
        bottom: f64::from(img.height()),
    }
}

#[test]
fn brightness_is_scaled_mean_luma() {
    let img = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
    assert!((brightness(&img, &whole(&img)) - 100.0).abs() < 1e-3);
    let img = RgbImage::from_pixel(10, 10, Rgb([100, 50, 200]));
    let luma = 0.299 * 100.0 + 0.587 * 50.0 + 0.114 * 200.0;
    assert!((f64::from(brightness(&img, &whole(&img))) - luma / 2.55).abs() < 1e-3);
    // Clipped to the image: the part outside does not count as black.
    let clipped = PixelBox {
        left: -50.0,
        top: 5.0,
        right: 5.0,
        bottom: 500.0,
    };
    assert!((f64::from(brightness(&img, &clipped)) - luma / 2.55).abs() < 1e-3);
}

#[test]
fn empty_or_bad_boxes_score_zero() {
    let img = common::pattern(20, 20);
    let boxes = [
        PixelBox {
            left: 5.0,
            top: 5.0,
            right: 5.0,
            bottom: 9.0,
        },
        PixelBox {
            left: 9.0,
            top: 5.0,
            right: 5.0,
            bottom: 9.0,
        },
        PixelBox {
            left: 30.0,
            top: 30.0,
            right: 40.0,
            bottom: 40.0,
        },
        PixelBox {
            left: f64::NAN,
            top: 0.0,
            right: f64::NAN,
            bottom: 5.0,
        },
        PixelBox {
            left: f64::NEG_INFINITY,
            top: f64::NEG_INFINITY,
            right: -1.0,
            bottom: -1.0,
        },
    ];
    for b in boxes {
        assert_eq!(brightness(&img, &b), 0.0, "{b:?}");
        assert_eq!(sharpness(&img, &b), 0.0, "{b:?}");
    }
    let empty = RgbImage::new(0, 0);
    assert_eq!(sharpness(&empty, &whole(&img)), 0.0);
    // Infinite but overlapping boxes clip to the image.
    let huge = PixelBox {
        left: f64::NEG_INFINITY,
        top: f64::NEG_INFINITY,
        right: f64::INFINITY,
        bottom: f64::INFINITY,
    };
    assert!(brightness(&img, &huge) > 0.0);
    // A one-pixel region is valid.
    let tiny = PixelBox {
        left: 3.0,
        top: 3.0,
        right: 4.0,
        bottom: 4.0,
    };
    assert!((0.0..=100.0).contains(&sharpness(&img, &tiny)));
}

#[test]
fn flat_region_has_zero_sharpness() {
    let img = RgbImage::from_pixel(100, 100, Rgb([90, 90, 90]));
    assert_eq!(sharpness(&img, &whole(&img)), 0.0);
}

#[test]
fn sharp_portrait_beats_blurred_copy() {
    let Some(data) = kenning_testdata::data("quality::sharp_portrait_beats_blurred_copy") else {
        return;
    };
    let img = decode_file(
        &data.join("misc/face_recognition/obama.jpg"),
        &DecodeLimits::default(),
    )
    .unwrap();
    // Brow to chin, measured by eye on this 910x1137 portrait.
    let face = PixelBox {
        left: 360.0,
        top: 160.0,
        right: 630.0,
        bottom: 430.0,
    };
    let sharp = sharpness(&img, &face);
    let blurred = image::imageops::blur(&img, 6.0);
    let soft = sharpness(&blurred, &face);
    eprintln!("sharpness: original {sharp:.1}, blurred {soft:.1}");
    assert!(sharp > 60.0, "sharp portrait scored {sharp}");
    assert!(soft < 20.0, "blurred portrait scored {soft}");
    // Scale independence: the same face at half size still reads sharp.
    let half = kenning_image::resize_bilinear(&img, 455, 568);
    let half_face = PixelBox {
        left: 180.0,
        top: 80.0,
        right: 315.0,
        bottom: 215.0,
    };
    let half_sharp = sharpness(&half, &half_face);
    eprintln!("sharpness at half size {half_sharp:.1}");
    assert!(half_sharp > 60.0);
    let b = brightness(&img, &face);
    assert!((20.0..80.0).contains(&b), "brightness {b}");
}
