//! JPEG through libjpeg-turbo's C code (vendored by mozjpeg-sys), driven by
//! `csrc/jpeg_shim.c`.  The shim does libjpeg's setjmp/longjmp error
//! handling in C, so nothing unwinds across the FFI boundary and no message
//! reaches stderr.

use std::ffi::{c_char, c_int, c_uint};

// Links the static libjpeg the shim calls into.
use mozjpeg_sys as _;

use crate::{ImageError, ImageFormat};

/// Room for libjpeg's longest formatted message (JMSG_LENGTH_MAX).
const MESSAGE_LEN: usize = 200;

extern "C" {
    fn kn_jpeg_header(
        data: *const u8,
        len: usize,
        strict: c_int,
        width: *mut c_uint,
        height: *mut c_uint,
        channels: *mut c_uint,
        message: *mut c_char,
    ) -> c_int;
    fn kn_jpeg_decode(
        data: *const u8,
        len: usize,
        strict: c_int,
        max_scans: c_int,
        out: *mut u8,
        out_len: usize,
        message: *mut c_char,
    ) -> c_int;
}

/// Header facts: size and whether libjpeg will output RGB (3) or CMYK (4).
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub channels: u32,
}

fn failure(message: &[c_char; MESSAGE_LEN]) -> ImageError {
    // The shim always NUL-terminates within the buffer.
    let bytes: Vec<u8> = message
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    let text = if text.is_empty() {
        "undecodable JPEG data".into()
    } else {
        text
    };
    ImageError::corrupt(ImageFormat::Jpeg, text)
}

/// How libjpeg treats untrusted input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hardening {
    /// Corrupt-data warnings are errors.
    pub strict: bool,
    /// Most scans a progressive file may have.
    pub max_scans: u32,
}

pub(crate) fn header(data: &[u8], hardening: Hardening) -> Result<Header, ImageError> {
    let mut message = [0 as c_char; MESSAGE_LEN];
    let (mut width, mut height, mut channels) = (0, 0, 0);
    // SAFETY: the pointers are valid for the call; the shim only reads `len`
    // bytes of `data` and writes at most MESSAGE_LEN bytes of `message`.
    let status = unsafe {
        kn_jpeg_header(
            data.as_ptr(),
            data.len(),
            c_int::from(hardening.strict),
            &mut width,
            &mut height,
            &mut channels,
            message.as_mut_ptr(),
        )
    };
    if status != 0 {
        return Err(failure(&message));
    }
    Ok(Header {
        width,
        height,
        channels,
    })
}

/// Decodes to `header.channels` interleaved bytes per pixel.
pub(crate) fn decode(
    data: &[u8],
    header: &Header,
    hardening: Hardening,
) -> Result<Vec<u8>, ImageError> {
    let len = header.width as usize * header.height as usize * header.channels as usize;
    let mut out = vec![0u8; len];
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: as in `header`; the shim writes only when the decoded size
    // equals `out.len()`.
    let status = unsafe {
        kn_jpeg_decode(
            data.as_ptr(),
            data.len(),
            c_int::from(hardening.strict),
            c_int::try_from(hardening.max_scans).unwrap_or(c_int::MAX),
            out.as_mut_ptr(),
            out.len(),
            message.as_mut_ptr(),
        )
    };
    if status != 0 {
        return Err(failure(&message));
    }
    Ok(out)
}

/// The body (after `prefix`) of the first `marker` segment whose body starts
/// with `prefix`, found by walking the marker segments up to the first scan.
pub(crate) fn app_segment<'a>(data: &'a [u8], marker: u8, prefix: &[u8]) -> Option<&'a [u8]> {
    let mut pos = 2;
    loop {
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let code = *data.get(pos + 1)?;
        pos += 2;
        match code {
            0xFF => pos -= 1, // fill byte
            0x01 | 0xD0..=0xD7 => {}
            0xD9 | 0xDA => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([*data.get(pos)?, *data.get(pos + 1)?]));
                let body = data.get(pos + 2..pos.checked_add(len)?)?;
                if code == marker {
                    if let Some(rest) = body.strip_prefix(prefix) {
                        return Some(rest);
                    }
                }
                pos += len;
            }
        }
    }
}
