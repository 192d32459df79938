mod common;

use common::*;
use image::{Rgb, RgbImage};
use kenning_core::{ErrorCode, WireError};
use kenning_image::{decode, decode_file, sniff, DecodeLimits, ImageError, ImageFormat};

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn code(bytes: &[u8]) -> ErrorCode {
    decode(bytes, &limits())
        .expect_err("decode should fail")
        .code()
}

#[test]
fn defaults_are_documented_values() {
    let l = DecodeLimits::default();
    assert_eq!(
        (l.max_bytes, l.max_pixels, l.max_side),
        (15 << 20, 40_000_000, 20_000)
    );
}

#[test]
fn junk_is_invalid_format() {
    assert_eq!(code(&[]), ErrorCode::InvalidImageFormatException);
    assert_eq!(
        code(b"hello, this is text\n"),
        ErrorCode::InvalidImageFormatException
    );
    assert_eq!(
        code(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        ErrorCode::InvalidImageFormatException
    );
    assert_eq!(
        code(b"P2\n1 1\n255\n0\n"),
        ErrorCode::InvalidImageFormatException
    );
    // Deterministic pseudo-random bytes, and the same behind each magic.
    let mut state = 0x1234_5678_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    assert_eq!(code(&noise), ErrorCode::InvalidImageFormatException);
    for magic in [
        &b"\xFF\xD8\xFF"[..],
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\0\0\0\0WEBP",
        b"P5",
        b"P6",
    ] {
        let bytes = [magic, &noise].concat();
        assert_eq!(
            code(&bytes),
            ErrorCode::InvalidImageFormatException,
            "{magic:?}"
        );
        assert_eq!(
            code(magic),
            ErrorCode::InvalidImageFormatException,
            "{magic:?}"
        );
    }
}

#[test]
fn truncated_jpeg_is_an_error_not_grey() {
    let full = jpeg_bytes(&pattern(64, 48));
    assert!(decode(&full, &limits()).is_ok());
    for cut in [full.len() / 2, full.len() - 10, 200, 20] {
        let err = decode(&full[..cut], &limits()).expect_err("truncated JPEG decoded");
        assert!(
            matches!(
                err,
                ImageError::Corrupt {
                    format: ImageFormat::Jpeg,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), ErrorCode::InvalidImageFormatException);
    }
}

#[test]
fn truncated_png_is_an_error() {
    let img = pattern(64, 48);
    let full = png_bytes(
        64,
        48,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        img.as_raw(),
    );
    assert_eq!(decode(&full, &limits()).unwrap(), img);
    for cut in [full.len() / 2, full.len() - 13, 40, 10] {
        assert_eq!(
            code(&full[..cut]),
            ErrorCode::InvalidImageFormatException,
            "cut at {cut}"
        );
    }
}

#[test]
fn huge_png_header_is_refused_at_once() {
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(png_chunk(b"IHDR", &ihdr));
    bytes.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bytes.extend(png_chunk(b"IEND", &[]));
    // Refused from the header: the IDAT could not fill 10^10 pixels, so an
    // error naming the size shows nothing was decoded first.
    let err = decode(&bytes, &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooManyPixels {
                width: 100_000,
                height: 100_000
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::ImageTooLargeException);
}

#[test]
fn huge_jpeg_header_is_refused_at_once() {
    let mut bytes = vec![0xFF, 0xD8];
    // SOF0: 8-bit, 60000 x 60000, one component.
    bytes.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0xEA, 0x60, 0xEA, 0x60, 1, 1, 0x11, 0]);
    // SOS for that component, then a little entropy data.
    bytes.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, 0x12, 0x34, 0xFF, 0xD9]);
    let err = decode(&bytes, &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooManyPixels {
                width: 60_000,
                height: 60_000
            }
        ),
        "{err}"
    );
}

#[test]
fn side_and_byte_limits() {
    let img = pattern(40, 10);
    let bytes = png_bytes(
        40,
        10,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        img.as_raw(),
    );
    let narrow = DecodeLimits {
        max_side: 39,
        ..limits()
    };
    assert_eq!(
        decode(&bytes, &narrow).unwrap_err().code(),
        ErrorCode::ImageTooLargeException
    );
    let few = DecodeLimits {
        max_pixels: 399,
        ..limits()
    };
    assert_eq!(
        decode(&bytes, &few).unwrap_err().code(),
        ErrorCode::ImageTooLargeException
    );
    let small = DecodeLimits {
        max_bytes: bytes.len() - 1,
        ..limits()
    };
    let err = decode(&bytes, &small).unwrap_err();
    assert!(matches!(err, ImageError::TooManyBytes { .. }));
    assert_eq!(err.code(), ErrorCode::ImageTooLargeException);

    let path = std::env::temp_dir().join(format!("kenning-image-limit-{}.png", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        decode_file(&path, &small).unwrap_err().code(),
        ErrorCode::ImageTooLargeException
    );
    assert_eq!(decode_file(&path, &limits()).unwrap(), img);
    std::fs::remove_file(&path).unwrap();
    let missing = decode_file(&path, &limits()).unwrap_err();
    assert!(matches!(missing, ImageError::Io { .. }));
}

#[test]
fn png_colour_types_match_pil_convert_rgb() {
    // 16-bit RGB: high byte.
    let rgb16: Vec<u8> = [0x12_34u16, 0xAB_CD, 0xFF_01, 0x00_FF, 0x80_00, 0x7F_FF]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let bytes = png_bytes(2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &rgb16);
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[0x12, 0xAB, 0xFF, 0x00, 0x80, 0x7F]
    );

    // 16-bit grey: high byte, replicated.
    let grey16: Vec<u8> = [0x12_34u16, 0xFE_FF]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let bytes = png_bytes(
        2,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &grey16,
    );
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[0x12, 0x12, 0x12, 0xFE, 0xFE, 0xFE]
    );

    let bytes = png_bytes(
        3,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[0, 100, 255],
    );
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[0, 0, 0, 100, 100, 100, 255, 255, 255]
    );

    // Grey + alpha and RGBA: alpha dropped, not composited.
    let bytes = png_bytes(
        2,
        1,
        png::ColorType::GrayscaleAlpha,
        png::BitDepth::Eight,
        &[50, 0, 200, 128],
    );
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[50, 50, 50, 200, 200, 200]
    );
    let bytes = png_bytes(
        2,
        1,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &[1, 2, 3, 0, 4, 5, 6, 7],
    );
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[1, 2, 3, 4, 5, 6]
    );

    // Palette, with transparency that must not leak into the colours.
    let bytes = png_with(
        3,
        1,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &[2, 0, 1],
        |enc| {
            enc.set_palette(vec![10, 20, 30, 40, 50, 60, 70, 80, 90]);
            enc.set_trns(vec![0, 255, 128]);
        },
    );
    assert_eq!(
        decode(&bytes, &limits()).unwrap().as_raw(),
        &[70, 80, 90, 10, 20, 30, 40, 50, 60]
    );

    // 1-bit grey expands to 0 / 255.
    let bytes = png_bytes(
        8,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::One,
        &[0b1010_0000],
    );
    let out = decode(&bytes, &limits()).unwrap();
    assert_eq!(out.get_pixel(0, 0), &Rgb([255, 255, 255]));
    assert_eq!(out.get_pixel(1, 0), &Rgb([0, 0, 0]));
}

#[test]
fn png_exif_orientation_is_applied() {
    let img = pattern(6, 4);
    let plain = png_bytes(
        6,
        4,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        img.as_raw(),
    );
    // Signature (8) + IHDR (25), then the eXIf chunk.
    let bytes = [
        &plain[..33],
        &png_chunk(b"eXIf", &exif_orientation_tiff(8)),
        &plain[33..],
    ]
    .concat();
    let out = decode(&bytes, &limits()).unwrap();
    assert_eq!(out, image::imageops::rotate270(&img));
}

#[test]
fn webp_lossless() {
    let img = pattern(33, 17);
    let mut bytes = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
        .encode(img.as_raw(), 33, 17, image::ExtendedColorType::Rgb8)
        .unwrap();
    assert_eq!(sniff(&bytes), Some(ImageFormat::WebP));
    assert_eq!(decode(&bytes, &limits()).unwrap(), img);
    assert_eq!(
        code(&bytes[..bytes.len() / 2]),
        ErrorCode::InvalidImageFormatException
    );
}

/// Left half red, right half blue: easy to locate after a rotation even
/// through JPEG loss.
fn halves() -> RgbImage {
    RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 200 && p[2] < 60
}

fn is_blue(p: &Rgb<u8>) -> bool {
    p[2] > 200 && p[0] < 60
}

#[test]
fn jpeg_exif_orientation_6_rotates_clockwise() {
    let bytes = with_exif(&jpeg_bytes(&halves()), 6);
    let out = decode(&bytes, &limits()).unwrap();
    assert_eq!(out.dimensions(), (16, 32));
    // The left (red) side ends up on top.
    assert!(is_red(out.get_pixel(8, 4)) && is_blue(out.get_pixel(8, 28)));
}

#[test]
fn jpeg_exif_orientation_3_rotates_half_turn() {
    let plain = decode(&jpeg_bytes(&halves()), &limits()).unwrap();
    let out = decode(&with_exif(&jpeg_bytes(&halves()), 3), &limits()).unwrap();
    assert_eq!(out.dimensions(), (32, 16));
    assert!(is_blue(out.get_pixel(4, 8)) && is_red(out.get_pixel(28, 8)));
    assert_eq!(out, image::imageops::rotate180(&plain));
}

#[test]
fn every_orientation_matches_exif_transpose() {
    let base = jpeg_bytes(&pattern(24, 16));
    let plain = decode(&base, &limits()).unwrap();
    use image::imageops::*;
    let expected = [
        plain.clone(),
        flip_horizontal(&plain),
        rotate180(&plain),
        flip_vertical(&plain),
        flip_horizontal(&rotate90(&plain)),
        rotate90(&plain),
        flip_vertical(&rotate90(&plain)),
        rotate270(&plain),
    ];
    for (o, want) in (1..=8).zip(expected) {
        assert_eq!(
            decode(&with_exif(&base, o), &limits()).unwrap(),
            want,
            "orientation {o}"
        );
    }
    // Out-of-range values are ignored.
    assert_eq!(decode(&with_exif(&base, 9), &limits()).unwrap(), plain);
}

#[test]
fn grey_jpeg_is_replicated() {
    let grey = image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * 16 + y) as u8]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut bytes)
        .encode_image(&grey)
        .unwrap();
    let out = decode(&bytes, &limits()).unwrap();
    assert!(out.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn pgm_and_ppm() {
    let mut pgm = b"P5\n# a comment\n3 2\n255\n".to_vec();
    pgm.extend_from_slice(&[0, 1, 2, 3, 4, 255]);
    assert_eq!(sniff(&pgm), Some(ImageFormat::Pnm));
    let out = decode(&pgm, &limits()).unwrap();
    assert_eq!(out.dimensions(), (3, 2));
    assert_eq!(out.get_pixel(2, 1), &Rgb([255, 255, 255]));
    assert_eq!(out.get_pixel(1, 0), &Rgb([1, 1, 1]));

    let mut ppm = b"P6 1 1 15\n".to_vec();
    ppm.extend_from_slice(&[0, 15, 5]);
    assert_eq!(decode(&ppm, &limits()).unwrap().as_raw(), &[0, 255, 85]);

    let mut wide = b"P5 2 1 65535\n".to_vec();
    wide.extend_from_slice(&[0xFF, 0xFF, 0x80, 0x00]);
    assert_eq!(
        decode(&wide, &limits()).unwrap().as_raw(),
        &[255, 255, 255, 128, 128, 128]
    );

    assert_eq!(
        code(&pgm[..pgm.len() - 1]),
        ErrorCode::InvalidImageFormatException
    );
    assert_eq!(
        code(b"P5 0 1 255\n"),
        ErrorCode::InvalidImageFormatException
    );
    assert_eq!(
        code(b"P5 999999 999999 255\n"),
        ErrorCode::ImageTooLargeException
    );
}

#[test]
fn real_images_decode() {
    let Some(data) = kenning_testdata::data("decode::real_images_decode") else {
        return;
    };
    let pgm = data.join("identity/att_orl/images/s1/1.pgm");
    assert_eq!(
        decode_file(&pgm, &limits()).unwrap().dimensions(),
        (92, 112)
    );
    let png = data.join("misc/face_recognition/32bit.png");
    assert_eq!(
        decode_file(&png, &limits()).unwrap().dimensions(),
        (626, 1200)
    );
    let jpg = data.join("misc/face_recognition/obama.jpg");
    assert_eq!(
        decode_file(&jpg, &limits()).unwrap().dimensions(),
        (910, 1137)
    );
}
