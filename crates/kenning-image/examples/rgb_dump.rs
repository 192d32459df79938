//! Parity helper: reads image paths from stdin, one a line, and for each
//! writes to stdout a little-endian `u32` width, `u32` height and the raw
//! RGB bytes (width = height = 0 when decoding failed, the error on stderr).
//! With arguments `WIDTH HEIGHT` each image is first resized with
//! `resize_bilinear`. `scripts/pil_parity.py` drives it to compare against
//! PIL (and OpenCV for the resize).

use std::io::{BufRead, Write};
use std::path::Path;

use kenning_image::{decode_file, resize_bilinear, DecodeLimits};

fn main() -> std::io::Result<()> {
    let limits = DecodeLimits::default();
    let size: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match decode_file(Path::new(&line), &limits) {
            Ok(mut img) => {
                if let [width, height] = size[..] {
                    img = resize_bilinear(&img, width, height);
                }
                out.write_all(&img.width().to_le_bytes())?;
                out.write_all(&img.height().to_le_bytes())?;
                out.write_all(img.as_raw())?;
            }
            Err(e) => {
                eprintln!("{line}: {e}");
                out.write_all(&[0; 8])?;
            }
        }
        out.flush()?;
    }
    Ok(())
}
