//! Parity probe against dlib, driven by a Python reference script.
//!
//! ```text
//! cargo run --release -p kenning-dlib --example parity_probe -- MODELS CASES OUT
//! ```
//! CASES is a text file with one face per line:
//! `id rgb_path width height left top right bottom [x0 y0 ... x4 y4]`
//! where rgb_path holds width*height*3 raw RGB bytes (decoded by PIL, so
//! both sides see identical pixels) and the optional 10 numbers are dlib's
//! landmarks, used for the chip so that a chip mismatch is not confused
//! with a landmark mismatch. For each line it prints
//! `id x0 y0 ... x4 y4` (our landmarks) and writes OUT/id.chip.rgb
//! (150x150x3). It also writes OUT/dlib_resnet.onnx and
//! OUT/centerface_dynamic.onnx, and reports the predictor's speed.

use std::path::PathBuf;
use std::time::Instant;

use kenning_core::Point;
use kenning_dlib::{chip, resnet, DlibRect, ShapePredictor};
use kenning_image::RgbImage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: parity_probe MODELS CASES OUT".into());
    }
    let (models, cases, out) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
    );
    std::fs::create_dir_all(&out)?;
    let sp = ShapePredictor::load(&models.join("shape_predictor_5_face_landmarks.dat"))?;
    let t = Instant::now();
    let onnx = resnet::to_onnx(&std::fs::read(
        models.join("dlib_face_recognition_resnet_model_v1.dat"),
    )?)?;
    eprintln!(
        "resnet conversion: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    std::fs::write(out.join("dlib_resnet.onnx"), &onnx.model)?;
    let cf = kenning_onnx::make_dynamic_input(&std::fs::read(models.join("centerface.onnx"))?)?;
    std::fs::write(out.join("centerface_dynamic.onnx"), cf)?;

    let mut cache: Option<(String, RgbImage)> = None;
    let (mut predict_time, mut predicts, mut chip_time, mut chips) = (0f64, 0usize, 0f64, 0usize);
    for line in std::fs::read_to_string(&cases)?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (w, h): (u32, u32) = (f[2].parse()?, f[3].parse()?);
        if cache.as_ref().is_none_or(|(p, _)| p != f[1]) {
            let raw = std::fs::read(f[1])?;
            let img = RgbImage::from_raw(w, h, raw).ok_or("raw size does not match")?;
            cache = Some((f[1].to_owned(), img));
        }
        let img = &cache.as_ref().expect("loaded").1;
        let rect = DlibRect {
            left: f[4].parse()?,
            top: f[5].parse()?,
            right: f[6].parse()?,
            bottom: f[7].parse()?,
        };
        let t = Instant::now();
        let reps: usize = std::env::var("PROBE_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let mut pts = sp.predict(img, rect);
        for _ in 1..reps {
            pts = std::hint::black_box(sp.predict(img, rect));
        }
        predict_time += t.elapsed().as_secs_f64();
        predicts += reps;
        let coords: Vec<String> = pts
            .iter()
            .flat_map(|p| [p.x.to_string(), p.y.to_string()])
            .collect();
        println!("{} {}", f[0], coords.join(" "));
        let chip_pts: [Point; 5] = if f.len() >= 18 {
            let v: Vec<f64> = f[8..18]
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?;
            std::array::from_fn(|k| Point::new(v[2 * k], v[2 * k + 1]))
        } else {
            pts
        };
        let t = Instant::now();
        let c = chip::extract(img, &chip_pts, 150, 0.25);
        chip_time += t.elapsed().as_secs_f64();
        chips += 1;
        std::fs::write(out.join(format!("{}.chip.rgb", f[0])), c.as_raw())?;
    }
    eprintln!(
        "predictor: {:.1} us/face over {predicts} runs; chip: {:.1} us/chip over {chips}",
        predict_time / predicts.max(1) as f64 * 1e6,
        chip_time / chips.max(1) as f64 * 1e6
    );
    Ok(())
}
