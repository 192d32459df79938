//! Does batching recogniser calls across requests pay on CPU? Embeds the same
//! aligned faces one at a time and in batches of 2, 4, 8 and 16 on one
//! session with one thread, in one run, and prints faces per second for each.
//!
//! ```text
//! cargo run --release -p kenning-models --example batch_bench -- PHOTO [ROUNDS]
//! ```

use std::time::Instant;

use kenning_image::DecodeLimits;
use kenning_models::{Pipeline, PipelineConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let photo = args.get(1).ok_or("usage: batch_bench PHOTO [ROUNDS]")?;
    let rounds: usize = args.get(2).map_or(Ok(20), |r| r.parse())?;
    let mut config = PipelineConfig::new(kenning_models::runtime::default_models_dir());
    config.sessions = 1;
    let pipeline = Pipeline::load(config)?;
    let image = kenning_image::decode_file(photo.as_ref(), &DecodeLimits::default())?;
    let face = pipeline
        .detect(&image)?
        .into_iter()
        .next()
        .ok_or("no face in the photo")?;
    let crop = pipeline.align_face(&image, &face);
    let faces = vec![crop; 16];
    pipeline.recognizer().embed(&faces[..1])?; // warm-up
    println!("| batch | faces/s | relative to batch 1 |");
    println!("|---|---|---|");
    let mut base = 0.0;
    for batch in [1usize, 2, 4, 8, 16] {
        let start = Instant::now();
        for _ in 0..rounds {
            for chunk in faces.chunks(batch) {
                pipeline.recognizer().embed(chunk)?;
            }
        }
        let rate = (rounds * faces.len()) as f64 / start.elapsed().as_secs_f64();
        if batch == 1 {
            base = rate;
        }
        println!("| {batch} | {rate:.1} | {:.2}x |", rate / base);
    }
    Ok(())
}
