//! libjpeg on untrusted input: corrupt-data warnings are errors, and a
//! progressive file may not have more scans than `max_jpeg_scans`.
//! (examples/jpeg_hardening.rs measures the same on ../shared/data.)

mod common;

use common::*;
use kenning_core::{ErrorCode, WireError};
use kenning_image::{decode, DecodeLimits};

fn lenient() -> DecodeLimits {
    DecodeLimits {
        strict_jpeg: false,
        max_jpeg_scans: u32::MAX,
        ..DecodeLimits::default()
    }
}

/// A 64x48 grey progressive JPEG with `scans` scans.
fn progressive(scans: u8) -> Vec<u8> {
    let img = pattern(64, 48);
    let grey: Vec<u8> = img.pixels().map(|p| p[0] / 2 + p[1] / 2).collect();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_progressive(true);
    enc.set_progressive_scans(scans);
    enc.encode(&grey, 64, 48, jpeg_encoder::ColorType::Luma)
        .unwrap();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn the_scan_limit_counts_progressive_scans() {
    let file = progressive(8);
    assert_eq!(find(&file, &[0xFF, 0xDA]).len(), 8, "scans written");
    let reference = decode(&file, &lenient()).unwrap();
    assert_eq!(decode(&file, &DecodeLimits::default()).unwrap(), reference);
    let at = |max_jpeg_scans| DecodeLimits {
        max_jpeg_scans,
        ..DecodeLimits::default()
    };
    assert_eq!(decode(&file, &at(8)).unwrap(), reference);
    let err = decode(&file, &at(7)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidImageFormatException);
    assert!(
        err.to_string()
            .contains("progressive JPEG has more than 7 scans"),
        "{err}"
    );
}

#[test]
fn thousands_of_repeated_scans_are_refused() {
    // The progressive-JPEG DoS: the last scan repeated 5,000 times makes a
    // file of a few hundred kilobytes that libjpeg would otherwise decode
    // scan after scan, each a pass over the whole coefficient buffer.
    let file = progressive(4);
    let last = *find(&file, &[0xFF, 0xDA]).last().unwrap();
    let eoi = file.len() - 2;
    assert_eq!(&file[eoi..], &[0xFF, 0xD9]);
    let mut bomb = file[..eoi].to_vec();
    for _ in 0..5000 {
        bomb.extend_from_slice(&file[last..eoi]);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    // Repeating a first (Ah = 0) scan is consistent progression to libjpeg:
    // no warning, so strict decoding alone would not stop it. The limit does.
    let err = decode(&bomb, &DecodeLimits::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidImageFormatException);
    assert!(
        err.to_string()
            .contains("progressive JPEG has more than 100 scans"),
        "{err}"
    );
    assert!(decode(&bomb, &lenient()).is_ok(), "what the limit prevents");
}

#[test]
fn a_corrupt_data_warning_is_an_error() {
    let clean = jpeg_bytes(&pattern(40, 30));
    let reference = decode(&clean, &DecodeLimits::default()).unwrap();
    // Junk before the frame header: libjpeg warns "Corrupt JPEG data: 4
    // extraneous bytes before marker 0xc0" and would skip it.
    let sof = find(&clean, &[0xFF, 0xC0])[0];
    let mut junk = clean[..sof].to_vec();
    junk.extend_from_slice(b"junk");
    junk.extend_from_slice(&clean[sof..]);
    let err = decode(&junk, &DecodeLimits::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidImageFormatException);
    assert!(
        err.to_string()
            .contains("Corrupt JPEG data: 4 extraneous bytes before marker 0xc0"),
        "{err}"
    );
    // Leniently it decodes to the clean file's pixels: the warning alone
    // makes the difference.
    assert_eq!(decode(&junk, &lenient()).unwrap(), reference);
}
