//! A collection's own calibration (CalibrateCollection, `kenning calibrate
//! --collection`): fitted on the gallery's impostor pairs, refused below the
//! minimum size, audited, described, used by every search, and keeping its
//! promise on held-out probes of real photos.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kenning_collections::{CalibrationAction, Collections, MIN_CALIBRATION_FACES};
use kenning_core::{ErrorCode, WireError};
use kenning_models::Calibration;
use serde_json::Value;

use crate::common;

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `n` synthetic faces of `n` different people in 50 loose families (face
/// `i` in family `i % 50`), so gallery distances run from about 0.2 (within
/// a family) to 1.3: a spread of impostor distances the shipped calibration
/// reads as rarer false matches than this gallery has.
fn synthetic(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..50)
        .map(|f| common::unit_vector(dim, seed * 1000 + f))
        .collect();
    (0..n)
        .map(|i| {
            let noise = common::unit_vector(dim, seed * 1_000_000 + 7919 * i as u64 + 1);
            normalised(
                centres[i % 50]
                    .iter()
                    .zip(&noise)
                    .map(|(c, e)| c + 0.8 * e)
                    .collect(),
            )
        })
        .collect()
}

/// Adds faces straight through the store with the given ExternalImageIds
/// (`None`: unlabelled); returns their FaceIds.
fn import(
    c: &Collections,
    id: &str,
    vectors: &[Vec<f32>],
    labels: &[Option<String>],
) -> Vec<String> {
    common::import_labelled(c.store(), id, vectors, labels, None)
}

/// One distinct label per face (`person-0`, `person-1`, ...).
fn distinct(n: usize) -> Vec<Option<String>> {
    (0..n).map(|i| Some(format!("person-{i}"))).collect()
}

/// SearchFaces from face `probe`: FaceId -> Similarity.
fn search(c: &Collections, probe: &str, threshold: f64) -> HashMap<String, f64> {
    c.search_faces("g", probe, Some(threshold), Some(4096))
        .unwrap()
        .face_matches
        .into_iter()
        .map(|m| (m.face.face_id, f64::from(m.similarity)))
        .collect()
}

#[test]
fn a_fitted_collection_calibration_scores_every_search_as_its_gallery_measured() {
    let p = common::sface();
    let shipped = p
        .recognizer()
        .loaded()
        .fair_calibration
        .clone()
        .expect("SFace ships a fair calibration");
    let dir = common::temp_dir("selfcal-fit");
    let c = Collections::open(&dir, p.clone()).unwrap();
    c.create_collection("g", "{}").unwrap();
    let n = 1200;
    let vectors = synthetic(n, 128, 3);
    let ids = import(&c, "g", &vectors, &distinct(n));
    let by_id: HashMap<&str, &Vec<f32>> = ids.iter().map(String::as_str).zip(&vectors).collect();
    let distance = |a: &[f32], b: &[f32]| kenning_core::fair::Distance::Cosine.precise(a, b);

    // Before: the shipped calibration scores.
    let shipped_similarity =
        |a: &[f32], b: &[f32]| Calibration::Fair(&shipped).similarity(a, b, distance(a, b));
    let before = search(&c, &ids[0], 50.0);
    assert!(before.len() >= 5, "{}", before.len());
    for (face, s) in &before {
        let want = shipped_similarity(&vectors[0], by_id[face.as_str()]);
        assert!((s - want).abs() < 1e-3, "{s} vs {want}");
    }
    let described = c.describe_collection("g").unwrap();
    let in_force = described.calibration.unwrap();
    assert_eq!(
        (in_force.source.as_str(), in_force.fitted),
        ("SHIPPED", None)
    );

    // The gallery's impostor pairs, by hand: every pair of the 1200 people,
    // pairs closer than the copy distance left out; each pair's combined
    // score under the shipped regions and tables.
    let copies_below = kenning_collections::copy_distance(&shipped);
    let clusters: Vec<usize> = vectors.iter().map(|v| shipped.assign(v)).collect();
    let mut scores = Vec::new();
    let mut copies = 0u64;
    for i in 0..n {
        for j in i + 1..n {
            let d = distance(&vectors[i], &vectors[j]);
            if d < copies_below {
                copies += 1;
            } else {
                scores.push(shipped.raw_score(clusters[i], clusters[j], d as f32));
            }
        }
    }
    scores.sort_by(f64::total_cmp);
    let pairs = scores.len() as f64;
    // The FMR the gallery measured at a pair's score: the fraction of its
    // impostor pairs scoring at most as much.
    let measured = |a: &[f32], b: &[f32]| {
        let r = shipped.raw_score(shipped.assign(a), shipped.assign(b), distance(a, b) as f32);
        scores.partition_point(|&x| x <= r) as f64 / pairs
    };

    let fitted = c
        .calibrate_collection("g", CalibrationAction::Fit, 80.0)
        .unwrap();
    assert_eq!(fitted.action, "FIT");
    assert_eq!(fitted.calibration.source, "COLLECTION");
    let summary = fitted.calibration.fitted.clone().unwrap();
    assert_eq!((summary.photos, summary.people), (n as u64, n as u64));
    assert_eq!(summary.people_by, "ExternalImageId");
    assert_eq!(summary.copies_left_out, copies);
    assert_eq!(summary.impostor_pairs, scores.len() as u64);
    // The shipped calibration promised fewer false matches than this
    // gallery has; the fitted one keeps its promise on the gallery.
    let before_check = fitted.before.as_ref().unwrap();
    assert!(before_check.rows[0].ratio > 3.0, "{before_check:?}");
    let check = fitted.check.as_ref().unwrap();
    let sims: Vec<f64> = check.rows.iter().map(|r| r.similarity).collect();
    assert_eq!(sims, [80.0, 70.0, 80.0, 90.0]);
    for r in check
        .rows
        .iter()
        .filter(|r| r.promised_false_match_rate >= 1e-4)
    {
        assert!(r.within_factor, "{r:?}");
    }

    // After: every Similarity is 40 + 10 log10(1 / FMR the gallery measured).
    let after = search(&c, &ids[0], 40.0);
    let mut tested = 0;
    for (j, v) in vectors.iter().enumerate().skip(1) {
        let fmr = measured(&vectors[0], v);
        if distance(&vectors[0], v) < copies_below || fmr < 1e-4 {
            continue;
        }
        let want = (40.0 - 10.0 * fmr.log10()).clamp(0.0, 100.0);
        match after.get(&ids[j]) {
            Some(s) => {
                assert!(
                    (s - want).abs() < 0.5,
                    "face {j}: {s} vs {want} (FMR {fmr})"
                );
                tested += 1;
            }
            None => assert!(want < 40.5, "face {j} (Similarity {want}) was not returned"),
        }
    }
    assert!(tested >= 20, "{tested}");
    // Searches of other faces change too; FalseMatchEstimate names the calibration.
    let r = c.search_faces("g", &ids[7], Some(60.0), Some(10)).unwrap();
    for m in &r.face_matches {
        let fmr = measured(&vectors[7], by_id[m.face.face_id.as_str()]);
        assert!((f64::from(m.similarity) - (40.0 - 10.0 * fmr.log10())).abs() < 0.5);
    }
    let label = r.false_match_estimate.calibration.unwrap();
    assert!(label.contains("collection"), "{label}");

    // DescribeCollection says what is in force, from what, with its interval.
    let d = c.describe_collection("g").unwrap();
    let in_force = d.calibration.unwrap();
    assert_eq!(in_force.source, "COLLECTION");
    let s = in_force.fitted.unwrap();
    assert_eq!(s, summary);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - s.fitted_at).abs() < 600.0);
    let [lo, hi] = s.false_match_rate_interval;
    assert!(lo <= s.measured_false_match_rate && s.measured_false_match_rate <= hi);
    let ratio = s.measured_false_match_rate / s.promised_false_match_rate;
    assert!((1.0 / 3.0..=3.0).contains(&ratio), "{s:?}");
    assert!(d
        .false_match_estimate
        .calibration
        .unwrap()
        .contains("collection"));

    // CHECK changes nothing.
    let checked = c
        .calibrate_collection("g", CalibrationAction::Check, 90.0)
        .unwrap();
    assert_eq!(checked.calibration.fitted.unwrap().fitted_at, s.fitted_at);
    assert_eq!(checked.check.unwrap().rows[0].similarity, 90.0);

    // It survives a restart.
    drop(c);
    let c = Collections::open(&dir, p.clone()).unwrap();
    assert_eq!(search(&c, &ids[0], 40.0), after);

    // RESET: the shipped calibration scores again, exactly as before.
    let reset = c
        .calibrate_collection("g", CalibrationAction::Reset, 80.0)
        .unwrap();
    assert_eq!(reset.calibration.source, "SHIPPED");
    assert_eq!(search(&c, &ids[0], 50.0), before);
}

#[test]
fn too_small_a_gallery_is_refused_and_the_shipped_calibration_stays() {
    let dir = common::temp_dir("selfcal-small");
    let c = Collections::open(&dir, common::sface().clone()).unwrap();
    c.create_collection("g", "{}").unwrap();
    // One face short once the unlabelled face is left out.
    let n = MIN_CALIBRATION_FACES;
    let mut labels = distinct(n);
    labels[17] = None;
    import(&c, "g", &synthetic(n, 128, 5), &labels);
    let err = c
        .calibrate_collection("g", CalibrationAction::Fit, 80.0)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    let m = err.to_string();
    assert!(
        m.contains(&format!("has {} faces", n - 1)) && m.contains("at least 1000"),
        "{m}"
    );
    assert!(m.contains("shipped calibration stays"), "{m}");
    let d = c.describe_collection("g").unwrap();
    assert_eq!(d.calibration.unwrap().source, "SHIPPED");
    // With users, only faces of users count (here two faces of one person).
    let faces: Vec<String> = c
        .list_faces("g", None, None, Some(2))
        .unwrap()
        .faces
        .into_iter()
        .map(|f| f.face_id)
        .collect();
    c.create_user("g", "someone").unwrap();
    c.associate_faces("g", "someone", &faces).unwrap();
    let m = c
        .calibrate_collection("g", CalibrationAction::Fit, 80.0)
        .unwrap_err()
        .to_string();
    assert!(m.contains("has 2 faces") && m.contains("(1 people)"), "{m}");
    assert_eq!(
        c.calibrate_collection("nobody", CalibrationAction::Check, 80.0)
            .unwrap_err()
            .code(),
        ErrorCode::ResourceNotFoundException
    );
}

#[test]
fn the_command_fits_checks_and_resets_and_each_is_audited() {
    let dir = common::temp_dir("selfcal-cli");
    common::stdout_json(&common::kenning_data(
        &dir,
        &["collection", "create", "g"],
        &[],
    ));
    {
        let c = Collections::open(&dir, common::sface().clone()).unwrap();
        import(&c, "g", &synthetic(1100, 128, 9), &distinct(1100));
    }
    let fit = common::stdout_json(&common::kenning_data(
        &dir,
        &["calibrate", "--collection", "g"],
        &[],
    ));
    assert_eq!(fit["Action"], "FIT");
    assert_eq!(fit["Calibration"]["Source"], "COLLECTION");
    assert_eq!(fit["Calibration"]["Fitted"]["Photos"], 1100);
    let out = common::kenning_data(&dir, &["calibrate", "--collection", "g", "--check"], &[]);
    let check = common::stdout_json(&out);
    assert_eq!(check["Action"], "CHECK");
    assert_eq!(check["Check"]["Rows"].as_array().unwrap().len(), 4);
    let table = String::from_utf8_lossy(&out.stderr);
    assert!(table.contains("Similarity    90"), "{table}");
    let described = common::stdout_json(&common::kenning_data(
        &dir,
        &["collection", "describe", "g"],
        &[],
    ));
    assert_eq!(described["Calibration"]["Source"], "COLLECTION");
    let reset = common::stdout_json(&common::kenning_data(
        &dir,
        &["calibrate", "--collection", "g", "--reset"],
        &[],
    ));
    assert_eq!(reset["Calibration"]["Source"], "SHIPPED");
    // --check takes no file with --collection.
    let out = common::kenning_data(
        &dir,
        &["calibrate", "--collection", "g", "--check", "x.json"],
        &[],
    );
    assert!(!out.status.success());

    let out = common::kenning_data(&dir, &["audit", "export"], &[]);
    assert!(out.status.success());
    let records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operation"] == "CalibrateCollection")
        .collect();
    assert_eq!(records.len(), 3, "{records:?}");
    let details: Vec<&Value> = records.iter().map(|r| &r["details"]).collect();
    assert_eq!(details[0]["Change"], "CalibrationSet");
    assert_eq!(details[0]["Calibration"]["Photos"], 1100);
    assert_eq!(details[0]["Calibration"]["People"], 1100);
    assert!(details[0]["Calibration"]["FalseMatchRateInterval"].is_array());
    assert_eq!(details[1]["Check"]["Photos"], 1100);
    assert_eq!(details[2]["Change"], "CalibrationSet");
    assert_eq!(details[2]["Calibration"], "shipped");
    assert!(records.iter().all(|r| r["collection"] == "g"));
    assert!(common::kenning_data(&dir, &["audit", "verify"], &[])
        .status
        .success());
}

/// One embedded photo: (embedding, person, domain).
type Photo = (Vec<f32>, String, &'static str);

/// Real photos: SFace embeddings of the held-out parts of UTKFace and
/// CelebA (recognisers/sface-2021dec/*-held-out.txt), embedded once.
struct Photos {
    /// (embedding, person, domain) of each photo with a face.
    faces: Vec<Photo>,
}

/// Listed paths of a split file (comments and blank lines skipped), at most `max`.
fn listed(file: &str, max: usize) -> Vec<String> {
    std::fs::read_to_string(common::root().join("recognisers/sface-2021dec").join(file))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(max)
        .map(str::to_owned)
        .collect()
}

fn photos(data: &Path) -> &'static Photos {
    static PHOTOS: OnceLock<Photos> = OnceLock::new();
    PHOTOS.get_or_init(|| {
        let p = common::sface();
        let identities: HashMap<String, String> =
            std::fs::read_to_string(data.join("identity/celeba/identities.csv"))
                .unwrap()
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(','))
                .map(|(f, id)| (format!("identity/celeba/{f}"), id.to_owned()))
                .collect();
        let mut jobs: Vec<(PathBuf, String, &'static str)> = listed("utkface-held-out.txt", 2400)
            .into_iter()
            .map(|f| (data.join("demographics").join(&f), f, "utkface"))
            .collect();
        for f in listed("celeba-held-out.txt", usize::MAX) {
            let person = identities[&f].clone();
            jobs.push((data.join(&f), person, "celeba"));
        }
        use rayon::prelude::*;
        let faces = jobs
            .par_iter()
            .filter_map(|(path, person, domain)| {
                let img = common::load(path);
                let mut faces = p.detect(&img).ok()?;
                faces.truncate(1);
                p.embed_faces(&img, &mut faces).ok()?;
                let e = faces.pop()?.embedding?;
                Some((e, person.clone(), *domain))
            })
            .collect();
        Photos { faces }
    })
}

#[test]
fn a_collection_calibration_on_real_photos_keeps_its_promise_on_held_out_probes() {
    let Some(data) = common::data(
        "a_collection_calibration_on_real_photos_keeps_its_promise_on_held_out_probes",
    ) else {
        return;
    };
    let photos = photos(&data);
    // Gallery and probes: alternate UTKFace photos, and alternate CelebA
    // people (so no person is on both sides).
    let mut celeba_people: Vec<&str> = photos
        .faces
        .iter()
        .filter(|f| f.2 == "celeba")
        .map(|f| f.1.as_str())
        .collect();
    celeba_people.sort_unstable();
    celeba_people.dedup();
    let in_gallery = |i: usize, f: &Photo| match f.2 {
        "celeba" => celeba_people
            .binary_search(&f.1.as_str())
            .unwrap()
            .is_multiple_of(2),
        _ => i.is_multiple_of(2),
    };
    let (gallery, probes): (Vec<_>, Vec<_>) = photos
        .faces
        .iter()
        .enumerate()
        .partition(|(i, f)| in_gallery(*i, f));
    assert!(
        gallery.len() >= 1500 && probes.len() >= 1500,
        "{} {}",
        gallery.len(),
        probes.len()
    );

    let dir = common::temp_dir("selfcal-real");
    let c = Collections::open(&dir, common::sface().clone()).unwrap();
    c.create_collection("g", "{}").unwrap();
    let vectors: Vec<Vec<f32>> = gallery.iter().map(|(_, f)| f.0.clone()).collect();
    // UTKFace holds one person per photo; CelebA people keep their identity.
    let labels: Vec<Option<String>> = gallery
        .iter()
        .map(|(_, f)| Some(f.1.replace('/', "_")))
        .collect();
    let ids = import(&c, "g", &vectors, &labels);
    let person: HashMap<&str, &str> = ids
        .iter()
        .map(String::as_str)
        .zip(gallery.iter().map(|(_, f)| f.1.as_str()))
        .collect();
    let fitted = c
        .calibrate_collection("g", CalibrationAction::Fit, 80.0)
        .unwrap();
    let summary = fitted.calibration.fitted.unwrap();
    eprintln!("fitted on {summary:?}");

    // Held-out probes: every probe against every gallery face is a pair of
    // different people; count those the collection's calibration accepts.
    let searcher = c.searcher("g").unwrap();
    let levels = [70.0, 80.0, 90.0];
    let mut accepted = [0u64; 3];
    for (_, probe) in &probes {
        for m in searcher.search(&probe.0, None, 70.0, 4096).unwrap() {
            assert_ne!(person[m.face.face_id.as_str()], probe.1);
            for (a, &s) in accepted.iter_mut().zip(&levels) {
                *a += u64::from(f64::from(m.similarity) >= s);
            }
        }
    }
    let pairs = (probes.len() * gallery.len()) as f64;
    for (&s, &k) in levels.iter().zip(&accepted) {
        let promised = 10f64.powf((40.0 - s) / 10.0);
        let observed = k as f64 / pairs;
        let ratio = observed / promised;
        eprintln!(
            "Similarity {s}: {k} false matches of {pairs} held-out pairs, observed FMR {observed:.2e}, promised {promised:.0e}, ratio {ratio:.2}"
        );
        assert!(
            (1.0 / 3.0..=3.0).contains(&ratio),
            "Similarity {s}: ratio {ratio}"
        );
    }
    minimum_size_measurement(&gallery, &probes);
}

/// How small a gallery may be: fits on every k-th gallery photo (two
/// offsets) and prints observed/promised on the held-out probes against
/// the whole gallery (docs/accuracy.md, "Self-calibration on your gallery").
/// Printed, not asserted: the assertion is on the real collection above.
fn minimum_size_measurement(gallery: &[(usize, &Photo)], probes: &[(usize, &Photo)]) {
    use kenning_eval::{check_calibration, fit_gallery, Embeddings};
    let shipped = common::sface()
        .recognizer()
        .loaded()
        .fair_calibration
        .clone()
        .unwrap();
    let copies = kenning_collections::copy_distance(&shipped);
    let rows =
        |v: &[(usize, &Photo)]| -> Vec<Vec<f32>> { v.iter().map(|(_, f)| f.0.clone()).collect() };
    let g = rows(gallery);
    let p = rows(probes);
    let gc: Vec<usize> = g.iter().map(|e| shipped.assign(e)).collect();
    let pc: Vec<usize> = p.iter().map(|e| shipped.assign(e)).collect();
    let distance = kenning_core::fair::Distance::Cosine;
    let mut d = Vec::with_capacity(g.len() * p.len());
    for (i, a) in p.iter().enumerate() {
        for (j, b) in g.iter().enumerate() {
            d.push((pc[i], gc[j], distance.between(a, b)));
        }
    }
    let levels = [1e-3, 1e-4, 1e-5];
    let report = |name: &str, fc: &kenning_core::fair::FairCalibration| {
        let predicted: Vec<f64> = d
            .iter()
            .map(|&(a, b, x)| 10f64.powf(fc.log_fmr_for_clusters(a, b, x)))
            .collect();
        let c = check_calibration(&predicted, &levels, 3.0, name);
        let r: Vec<String> = c
            .rows
            .iter()
            .map(|r| format!("{:.2} ({})", r.ratio, r.false_matches))
            .collect();
        eprintln!("| {name} | {} |", r.join(" | "));
    };
    eprintln!(
        "| fitted on | Similarity 70 | 80 | 90 | ({} held-out pairs)",
        d.len()
    );
    report("shipped", &shipped);
    for size in [250, 500, 750, 1000, 1500] {
        for offset in 0..2 {
            let step = g.len() as f64 / size as f64;
            let pick: Vec<usize> = (0..size)
                .map(|k| ((k as f64 + 0.5 * offset as f64) * step) as usize)
                .filter(|&i| i < g.len())
                .collect();
            let e =
                Embeddings::new(&pick.iter().map(|&i| g[i].clone()).collect::<Vec<_>>()).unwrap();
            let labels: Vec<&str> = pick.iter().map(|&i| gallery[i].1 .1.as_str()).collect();
            match fit_gallery(&shipped, &e, &labels, copies) {
                Ok(fit) => report(
                    &format!(
                        "{size} faces (offset {offset}, {} pairs)",
                        fit.impostor_pairs
                    ),
                    &fit.calibration,
                ),
                Err(err) => eprintln!("| {size} faces: {err} |"),
            }
        }
    }
}
