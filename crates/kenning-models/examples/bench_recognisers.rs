//! Recogniser time per face, side by side: for every face of the given
//! photos (detected once), aligning and embedding it with each built-in
//! recogniser in turn, one ONNX Runtime thread, repeated R times; prints the
//! median wall and thread-CPU milliseconds per face and the ratios to dlib,
//! and the time each recogniser takes to load (read, convert, one session).
//! A second table splits each pipeline's CPU per photo into its stages
//! (decoding, detection with the landmarks the alignment needs, alignment and
//! embedding of all the photo's faces in one call), to show where a photo's
//! time goes.
//! Run by bench/face-pipeline/run.sh:
//!
//! cargo run --release -p kenning-models --example bench_recognisers -- MODELS_DIR R PHOTO...

use std::time::Instant;

use kenning_image::DecodeLimits;
use kenning_models::manifest::BUILTIN;
use kenning_models::recognizer::onnx_model;
use kenning_models::{LoadedManifest, Pipeline, PipelineConfig};

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`.
    unsafe { clock_gettime(3, &mut t) }; // CLOCK_THREAD_CPUTIME_ID
    t.sec as f64 + t.nsec as f64 * 1e-9
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, t: *mut Timespec) -> i32;
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [models, repeats, photos @ ..] = args.as_slice() else {
        eprintln!("usage: bench_recognisers MODELS_DIR REPEATS PHOTO...");
        std::process::exit(2);
    };
    let repeats: usize = repeats.parse().expect("REPEATS");
    let mut config = PipelineConfig::new(models);
    config.sessions = 1;
    config.recogniser = Some(LoadedManifest::builtin(BUILTIN[0].name).unwrap());
    let first = Pipeline::load(config).expect("loading models");
    // Loading each recogniser again (model file read and converted, one
    // session created), timed: what every short job pays at start-up.
    let (mut load, mut convert) = (Vec::new(), Vec::new());
    let pipelines: Vec<Pipeline> = BUILTIN
        .iter()
        .map(|b| {
            let manifest = LoadedManifest::builtin(b.name).unwrap();
            let c = thread_cpu();
            onnx_model(models.as_ref(), &manifest.manifest.model).unwrap();
            convert.push((thread_cpu() - c) * 1e3);
            let (t, c) = (Instant::now(), thread_cpu());
            let p = first.with_recogniser(manifest).unwrap();
            load.push((t.elapsed().as_secs_f64() * 1e3, (thread_cpu() - c) * 1e3));
            p
        })
        .collect();
    let decode = || -> Vec<_> {
        photos
            .iter()
            .map(|p| kenning_image::decode_file(p.as_ref(), &DecodeLimits::default()).unwrap())
            .collect()
    };
    let mut decode_cpu = Vec::new();
    for _ in 0..repeats {
        let c = thread_cpu();
        std::hint::black_box(decode());
        decode_cpu.push((thread_cpu() - c) * 1e3 / photos.len() as f64);
    }
    let images = decode();
    // Faces found by each pipeline (same detector; dlib's also carry its
    // landmarks), so only alignment and embedding are timed.
    let faces: Vec<Vec<_>> = pipelines
        .iter()
        .map(|p| images.iter().map(|img| p.detect(img).unwrap()).collect())
        .collect();
    let n: usize = faces[0].iter().map(Vec::len).sum();
    let mut wall = vec![Vec::new(); pipelines.len()];
    let mut cpu = vec![Vec::new(); pipelines.len()];
    for _ in 0..repeats {
        for (i, p) in pipelines.iter().enumerate() {
            let (t, c) = (Instant::now(), thread_cpu());
            for (img, found) in images.iter().zip(&faces[i]) {
                for face in found {
                    let crop = p.align_face(img, face);
                    std::hint::black_box(p.recognizer().embed(&[crop]).unwrap());
                }
            }
            wall[i].push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
            cpu[i].push((thread_cpu() - c) * 1e3 / n as f64);
        }
    }
    // Stages per photo, as `kenning embed` runs them: detect, then align and
    // embed the photo's faces together.
    let mut detect_cpu = vec![Vec::new(); pipelines.len()];
    let mut embed_cpu = vec![Vec::new(); pipelines.len()];
    for _ in 0..repeats {
        for (i, p) in pipelines.iter().enumerate() {
            let c = thread_cpu();
            let mut found: Vec<_> = images.iter().map(|img| p.detect(img).unwrap()).collect();
            let d = thread_cpu();
            for (img, faces) in images.iter().zip(&mut found) {
                p.embed_faces(img, faces).unwrap();
            }
            let e = thread_cpu();
            detect_cpu[i].push((d - c) * 1e3 / images.len() as f64);
            embed_cpu[i].push((e - d) * 1e3 / images.len() as f64);
        }
    }
    let dlib = BUILTIN
        .iter()
        .position(|b| b.name == "dlib-resnet-v1")
        .unwrap();
    let (dw, dc) = (median(wall[dlib].clone()), median(cpu[dlib].clone()));
    println!("| recogniser | faces | wall ms/face | CPU ms/face | CPU ratio to dlib | load wall ms | load CPU ms | reading (and converting) the model alone, CPU ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, b) in BUILTIN.iter().enumerate() {
        let (w, c) = (median(wall[i].clone()), median(cpu[i].clone()));
        println!(
            "| {} | {n} | {w:.2} | {c:.2} | {:.2}x (wall {:.2}x) | {:.0} | {:.0} | {:.0} |",
            b.name,
            c / dc,
            w / dw,
            load[i].0,
            load[i].1,
            convert[i]
        );
    }
    let decode_ms = median(decode_cpu);
    println!();
    println!("| recogniser's pipeline | photos | decode CPU ms/photo | detect (+ landmarks) CPU ms/photo | align + embed CPU ms/photo | total CPU ms/photo |");
    println!("|---|---|---|---|---|---|");
    for (i, b) in BUILTIN.iter().enumerate() {
        let (d, e) = (median(detect_cpu[i].clone()), median(embed_cpu[i].clone()));
        println!(
            "| {} | {} | {decode_ms:.1} | {d:.1} | {e:.1} | {:.1} |",
            b.name,
            images.len(),
            decode_ms + d + e
        );
    }
}
