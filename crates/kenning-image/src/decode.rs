//! Decoding with limits checked against the header before any pixel work,
//! producing the 8-bit RGB that PIL's `Image.open(f).convert("RGB")` gives,
//! then turned upright by the EXIF orientation.

use std::io::{Cursor, Read};
use std::path::Path;

use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{ColorType, ImageDecoder, RgbImage};

use crate::{jpeg, ImageError, ImageFormat};

/// Limits applied before decoding, so hostile input costs bounded time and
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Most scans a progressive JPEG may have: each scan is a pass over the
    /// whole image, so a file of thousands of tiny scans would cost minutes
    /// of CPU in a few kilobytes.
    pub max_jpeg_scans: u32,
    /// Refuse a JPEG on libjpeg's first corrupt-data warning (bad Huffman
    /// code, extraneous bytes, missing restart marker, ...) instead of
    /// decoding made-up pixels from it.
    pub strict_jpeg: bool,
}

impl Default for DecodeLimits {
    /// 15 MiB, 40 megapixels and 20,000 pixels a side: room for any phone
    /// photo, while the largest decode stays near 120 MB of RGB. At most 100
    /// JPEG scans (the 21,413 JPEGs of ../shared/data have at most 11) and
    /// strict JPEG decoding.
    fn default() -> Self {
        Self {
            max_bytes: 15 << 20,
            max_pixels: 40_000_000,
            max_side: 20_000,
            max_jpeg_scans: 100,
            strict_jpeg: true,
        }
    }
}

impl DecodeLimits {
    fn check(&self, width: u32, height: u32) -> Result<(), ImageError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_side || height > self.max_side || pixels > self.max_pixels {
            return Err(ImageError::TooManyPixels { width, height });
        }
        Ok(())
    }
}

/// The format of `bytes` judged by its magic bytes, or `None` when it is not
/// one Kenning decodes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else if bytes.starts_with(b"P5") || bytes.starts_with(b"P6") {
        Some(ImageFormat::Pnm)
    } else {
        None
    }
}

/// Decodes a JPEG, PNG, WebP or binary PGM/PPM image to 8-bit RGB, upright
/// according to its EXIF orientation.
///
/// Grey is replicated, alpha dropped (not composited), palettes expanded and
/// 16-bit samples reduced to their high byte, as PIL's `convert("RGB")` does.
/// JPEG pixels are bit-identical to PIL's (both use libjpeg-turbo with the
/// ISLOW IDCT and fancy upsampling). Sizes are checked against `limits` from
/// the header before any pixel is decoded.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes {
            len: bytes.len() as u64,
            max: limits.max_bytes,
        });
    }
    let format = sniff(bytes).ok_or(ImageError::UnsupportedFormat)?;
    let (image, exif) = match format {
        ImageFormat::Jpeg => (
            decode_jpeg(bytes, limits)?,
            jpeg::app_segment(bytes, 0xE1, b"Exif\0\0").map(<[u8]>::to_vec),
        ),
        ImageFormat::Png => {
            // IHDR must come first; check its size before the decoder (whose
            // own limits would report a corrupt file) sees it.
            if let Some(ihdr) = bytes.get(12..24).filter(|h| h.starts_with(b"IHDR")) {
                let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                limits.check(be(&ihdr[4..8]), be(&ihdr[8..12]))?;
            }
            let decoder = PngDecoder::with_limits(Cursor::new(bytes), crate_limits(limits))
                .map_err(|e| ImageError::corrupt(format, e.to_string()))?;
            decode_with(decoder, format, limits)?
        }
        ImageFormat::WebP => {
            let decoder = WebPDecoder::new(Cursor::new(bytes))
                .map_err(|e| ImageError::corrupt(format, e.to_string()))?;
            decode_with(decoder, format, limits)?
        }
        ImageFormat::Pnm => (decode_pnm(bytes, limits)?, None),
    };
    let orientation = exif.as_deref().and_then(exif_orientation).unwrap_or(1);
    Ok(orient(image, orientation))
}

/// Reads and decodes the file at `path`; see [`decode`]. Files over
/// `limits.max_bytes` are refused without being read.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > limits.max_bytes as u64 {
        return Err(ImageError::TooManyBytes {
            len,
            max: limits.max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow while being read: never take more than one byte over.
    file.take(limits.max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    decode(&bytes, limits)
}

/// The image crate's own limits, as a second line of defence for PNG chunk
/// and allocation sizes.
fn crate_limits(limits: &DecodeLimits) -> image::Limits {
    let mut crate_limits = image::Limits::default();
    crate_limits.max_image_width = Some(limits.max_side);
    crate_limits.max_image_height = Some(limits.max_side);
    // Widest intermediate: 16-bit RGBA, 8 bytes a pixel.
    crate_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 << 20));
    crate_limits
}

fn decode_jpeg(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let hardening = jpeg::Hardening {
        strict: limits.strict_jpeg,
        max_scans: limits.max_jpeg_scans,
    };
    let header = jpeg::header(bytes, hardening)?;
    limits.check(header.width, header.height)?;
    let mut data = jpeg::decode(bytes, &header, hardening)?;
    if header.channels == 4 {
        data = cmyk_to_rgb(&data, jpeg::app_segment(bytes, 0xEE, b"Adobe").is_some());
    }
    RgbImage::from_raw(header.width, header.height, data)
        .ok_or_else(|| ImageError::corrupt(ImageFormat::Jpeg, "decoded size mismatch"))
}

/// PIL's CMYK to RGB, `(255 - K) - C * (255 - K) / 255` with its rounding.
/// Adobe writes CMYK inverted and libjpeg hands it back as stored; PIL undoes
/// that first.
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let ink = |v: u8| u32::from(if inverted { 255 - v } else { v });
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let white = 255 - ink(px[3]);
        for &c in &px[..3] {
            let t = ink(c) * white + 128;
            rgb.push((white - (((t >> 8) + t) >> 8)) as u8);
        }
    }
    rgb
}

fn decode_with<D: ImageDecoder>(
    mut decoder: D,
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<(RgbImage, Option<Vec<u8>>), ImageError> {
    let (width, height) = decoder.dimensions();
    limits.check(width, height)?;
    if width == 0 || height == 0 {
        return Err(ImageError::corrupt(format, "image has no pixels"));
    }
    let exif = decoder.exif_metadata().ok().flatten();
    let color = decoder.color_type();
    let mut raw =
        vec![0u8; width as usize * height as usize * usize::from(color.bytes_per_pixel())];
    decoder
        .read_image(&mut raw)
        .map_err(|e| ImageError::corrupt(format, e.to_string()))?;
    let rgb = to_rgb8(&raw, color)
        .ok_or_else(|| ImageError::corrupt(format, format!("unsupported colour type {color:?}")))?;
    let image = RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| ImageError::corrupt(format, "decoded size mismatch"))?;
    Ok((image, exif))
}

/// Interleaved decoder output to RGB8: grey replicated, alpha dropped,
/// 16-bit samples (native-endian from the image crate) cut to the high byte.
fn to_rgb8(raw: &[u8], color: ColorType) -> Option<Vec<u8>> {
    let (channels, wide) = match color {
        ColorType::L8 => (1, false),
        ColorType::La8 => (2, false),
        ColorType::Rgb8 => return Some(raw.to_vec()),
        ColorType::Rgba8 => (4, false),
        ColorType::L16 => (1, true),
        ColorType::La16 => (2, true),
        ColorType::Rgb16 => (3, true),
        ColorType::Rgba16 => (4, true),
        _ => return None,
    };
    let sample_bytes = if wide { 2 } else { 1 };
    let sample = |px: &[u8], i: usize| {
        if wide {
            (u16::from_ne_bytes([px[2 * i], px[2 * i + 1]]) >> 8) as u8
        } else {
            px[i]
        }
    };
    let mut rgb = Vec::with_capacity(raw.len() / (channels * sample_bytes) * 3);
    for px in raw.chunks_exact(channels * sample_bytes) {
        if channels < 3 {
            let v = sample(px, 0);
            rgb.extend_from_slice(&[v, v, v]);
        } else {
            rgb.extend_from_slice(&[sample(px, 0), sample(px, 1), sample(px, 2)]);
        }
    }
    Some(rgb)
}

/// Binary PGM (`P5`) or PPM (`P6`). Samples with a maxval other than 255 are
/// rescaled to 0..255; 16-bit samples are big-endian per the format.
fn decode_pnm(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let bad = |reason: &str| ImageError::corrupt(ImageFormat::Pnm, reason);
    let channels = if bytes[1] == b'5' { 1 } else { 3 };
    let mut pos = 2;
    let mut fields = [0u32; 3];
    for field in &mut fields {
        // Whitespace and `#` comments separate the header fields.
        loop {
            match bytes.get(pos) {
                Some(b) if b.is_ascii_whitespace() => pos += 1,
                Some(b'#') => {
                    while bytes.get(pos).is_some_and(|&b| b != b'\n' && b != b'\r') {
                        pos += 1;
                    }
                }
                Some(_) => break,
                None => return Err(bad("truncated header")),
            }
        }
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        *field = std::str::from_utf8(&bytes[start..pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad header number"))?;
    }
    // Exactly one whitespace byte ends the header.
    if !bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        return Err(bad("bad header"));
    }
    pos += 1;
    let [width, height, maxval] = fields;
    if width == 0 || height == 0 || maxval == 0 || maxval > 65535 {
        return Err(bad("bad size or maxval"));
    }
    limits.check(width, height)?;
    let sample_bytes = if maxval > 255 { 2 } else { 1 };
    let samples = width as usize * height as usize * channels;
    let data = bytes
        .get(pos..)
        .and_then(|rest| rest.get(..samples * sample_bytes))
        .ok_or_else(|| bad("truncated pixel data"))?;
    let scale = |v: u32| ((v.min(maxval) * 255 + maxval / 2) / maxval) as u8;
    let values: Vec<u8> = if sample_bytes == 2 {
        data.chunks_exact(2)
            .map(|b| scale(u32::from(u16::from_be_bytes([b[0], b[1]]))))
            .collect()
    } else if maxval == 255 {
        data.to_vec()
    } else {
        data.iter().map(|&v| scale(u32::from(v))).collect()
    };
    let rgb = if channels == 1 {
        values.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        values
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| bad("decoded size mismatch"))
}

/// The orientation (1-8) in an EXIF TIFF block's first IFD.
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at.checked_add(2)?)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count).find_map(|i| {
        let entry = ifd.checked_add(2 + 12 * i)?;
        // Tag 0x0112, type SHORT: the value sits in the entry itself.
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 {
            u16_at(entry + 8).filter(|v| (1..=8).contains(v))
        } else {
            None
        }
    })
}

/// Applies an EXIF orientation so the image displays upright (what PIL's
/// `ImageOps.exif_transpose` does).
pub(crate) fn orient(image: RgbImage, orientation: u16) -> RgbImage {
    use image::imageops;
    match orientation {
        2 => imageops::flip_horizontal(&image),
        3 => imageops::rotate180(&image),
        4 => imageops::flip_vertical(&image),
        5 => imageops::flip_horizontal(&imageops::rotate90(&image)),
        6 => imageops::rotate90(&image),
        7 => imageops::flip_horizontal(&imageops::rotate270(&image)),
        8 => imageops::rotate270(&image),
        _ => image,
    }
}
