//! `kenning eval ...` and `kenning calibrate --check` on small real sets
//! from ../shared/data: the reports are complete and their numbers sane.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common;

/// `kenning --manifest <dlib> ARGS`: the numbers below were measured with
/// the dlib ResNet, so it is named rather than left to the default.
fn kenning(args: &[&str]) -> Command {
    let mut cmd = Command::new(common::kenning_bin());
    cmd.arg("--manifest")
        .arg(common::dlib_manifest())
        .args(args)
        .env("KENNING_MODELS", common::models())
        .env_remove("KENNING_CALIBRATION");
    cmd
}

/// Runs kenning, expects success, returns the JSON written to stdout.
fn kenning_json(args: &[&str]) -> Value {
    let out = kenning(args).output().expect("running kenning");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kenning {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kenning {args:?}: stdout is not JSON ({e})"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rate(v: &Value) -> f64 {
    let r = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((0.0..=1.0).contains(&r), "rate {r} outside [0, 1]");
    r
}

/// Verification, identification and the calibration check on the 400 ORL
/// photos, sharing one embedding cache (which is checked to be used).
#[test]
fn att_orl_verify_identify_and_calibration_check() {
    let Some(data) = common::data("att_orl_verify_identify_and_calibration_check") else {
        return;
    };
    let dir = data.join("identity/att_orl");
    let tmp = common::temp_dir("eval-orl");
    let cache = tmp.join("cache.jsonl");
    let (md, plots) = (tmp.join("verify.md"), tmp.join("plots"));
    let v = kenning_json(&[
        "eval",
        "verify",
        s(&dir),
        "--cache",
        s(&cache),
        "--markdown",
        s(&md),
        "--plots",
        s(&plots),
    ]);
    // Measured (dlib ResNet): every photo enrolled, 1,800 genuine and
    // 78,000 impostor pairs, 10-fold accuracy 99.25%, EER 0.83%, FNMR 0.61%,
    // 2.33% and 4.22% at FMR 1e-2, 1e-3 and 1e-4; the bounds allow a little
    // drift, not a different result.
    assert_eq!(v["enrolment"]["photos"], 400);
    assert_eq!(v["enrolment"]["enrolled"], 400);
    let r = &v["verification"];
    assert_eq!(
        (&r["genuine_pairs"], &r["impostor_pairs"]),
        (&1800.into(), &78_000.into())
    );
    let acc = r["kfold"]["mean"].as_f64().unwrap();
    assert!(acc >= 0.985, "10-fold accuracy {acc}");
    assert_eq!(r["kfold"]["folds"].as_array().unwrap().len(), 10);
    let rows = r["fnmr_at_fmr"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (row, most) in rows[..3].iter().zip([0.01, 0.03, 0.05]) {
        assert!(row["threshold"].is_number(), "{row}");
        assert!(rate(&row["fnmr"]) <= most, "{row}");
        assert!(rate(&row["fmr"]) <= row["target_fmr"].as_f64().unwrap());
    }
    // About 78,000 impostor pairs cannot show an FMR of 1e-5 or 1e-6.
    for row in &rows[3..] {
        assert!(row["threshold"].is_null() && row["fnmr"].is_null(), "{row}");
    }
    assert!(rate(&r["eer"]["eer"]) <= 0.012, "{}", r["eer"]);
    // At Similarity 80, 90 and 99, scored with the default calibration
    // (dlib's shipped fair calibration, as CompareFaces scores): at 80,
    // FNMR 4.2% and 171 false matches among the 78,000 impostor pairs
    // (observed FMR 2.2e-3, 22x the promise: ORL's 40 people are unlike the
    // UTKFace faces the calibration was fitted on; docs/accuracy.md). Stricter
    // Similarities miss more and match fewer.
    let sim = v["similarity"].as_array().unwrap();
    assert_eq!(sim.len(), 3);
    assert!(
        v["scoring"]
            .as_str()
            .unwrap()
            .contains("default calibration"),
        "{}",
        v["scoring"]
    );
    assert!((rate(&sim[0]["fnmr"]) - 0.042).abs() <= 0.02, "{}", sim[0]);
    let fm = sim[0]["false_matches"].as_u64().unwrap();
    assert!((140..=200).contains(&fm), "{}", sim[0]);
    for w in sim.windows(2) {
        eprintln!("{}", w[1]);
        assert!(rate(&w[1]["fnmr"]) >= rate(&w[0]["fnmr"]), "{w:?}");
        assert!(
            w[1]["false_matches"].as_u64() <= w[0]["false_matches"].as_u64(),
            "{w:?}"
        );
        assert!(
            w[1]["distance"].is_null(),
            "a fair calibration has no one distance"
        );
    }
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Verification") && text.contains("not measurable"),
        "{text}"
    );
    assert!(std::fs::read_to_string(plots.join("det.svg"))
        .unwrap()
        .starts_with("<svg"));

    let id = kenning_json(&[
        "eval",
        "identify",
        s(&dir),
        "--cache",
        s(&cache),
        "--leave-mate-out",
    ]);
    assert_eq!(
        id["enrolment"]["from_cache"], 400,
        "the second run reuses every cached embedding"
    );
    let r = &id["identification"];
    assert_eq!(r["gallery_identities"], 32, "40 identities, 20% left out");
    // Measured: every mate first (rank-1 100%), FNIR 1.04% at FPIR 0.01
    // and 0.003.
    assert!(rate(&r["rank1"]) >= 0.99, "rank-1 {}", r["rank1"]);
    for row in r["fnir_at_fpir"].as_array().unwrap() {
        assert!(rate(&row["fnir"]) <= 0.02, "{row}");
    }
    // Searched as SearchFacesByImage searches (the default calibration;
    // dlib has no small-face rule) at Similarity 80 and 90: the stricter
    // threshold misses at least as often and matches strangers no more.
    assert!(
        id["scoring"]
            .as_str()
            .unwrap()
            .contains("default calibration")
            && id["scoring"]
                .as_str()
                .unwrap()
                .contains("no small-face rule"),
        "{}",
        id["scoring"]
    );
    let at = id["searches_at_similarity"].as_array().unwrap();
    assert_eq!((at.len(), &at[0]["mated_searches"]), (2, &json!(288)));
    assert!(rate(&at[1]["fnir"]) >= rate(&at[0]["fnir"]), "{at:?}");
    assert!(rate(&at[1]["fpir"]) <= rate(&at[0]["fpir"]), "{at:?}");

    // Out of sample: a table built on the first 20 people predicts the FMR
    // among the other 20, whom it never saw (19,000 impostor pairs each).
    let half = |people: std::ops::RangeInclusive<u32>| {
        let dir = &dir;
        let list: String = people
            .flat_map(|i| {
                (1..=10).map(move |n| {
                    format!("{}\n", dir.join(format!("images/s{i}/{n}.pgm")).display())
                })
            })
            .collect();
        let path = tmp.join(format!("half-{}.txt", list.len()));
        std::fs::write(&path, list).unwrap();
        path
    };
    let (a, b) = (half(1..=20), half(21..=40));
    let table = tmp.join("table.json");
    let ids = dir.join("identities.csv");
    let built = kenning(&[
        "calibrate",
        s(&dir),
        "--identities",
        s(&ids),
        "--list",
        s(&a),
        "--cache",
        s(&cache),
        "--out",
        s(&table),
    ])
    .output()
    .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let c = kenning_json(&[
        "calibrate",
        s(&dir),
        "--identities",
        s(&ids),
        "--list",
        s(&b),
        "--cache",
        s(&cache),
        "--check",
        s(&table),
    ]);
    assert_eq!(c["check"]["impostor_pairs"], 19_000);
    let rows = c["check"]["rows"].as_array().unwrap();
    let measurable: Vec<bool> = rows.iter().map(|r| r["measurable"] == true).collect();
    assert_eq!(measurable, [true, true, true, false, false], "{rows:?}");
    // Measured: 74 false matches where the table predicts 190 at FMR 1e-2
    // (ratio 0.39), none where it predicts 19 and 1.9: conservative on
    // people it has not seen, and never worse than promised.
    let ratio = rows[0]["ratio"].as_f64().unwrap();
    assert!((0.3..=0.5).contains(&ratio), "{}", rows[0]);
    for r in &rows[1..3] {
        assert!(
            r["observed_fmr"].as_f64().unwrap() <= r["predicted_fmr"].as_f64().unwrap(),
            "{r}"
        );
    }
}

/// Detection on dlib's annotated photos meets the face-pipeline target.
#[test]
fn dlib_detection_recall() {
    let Some(data) = common::data("dlib_detection_recall") else {
        return;
    };
    let v = kenning_json(&["eval", "detect", s(&data.join("detection/dlib"))]);
    let r = &v["detection"];
    assert_eq!(r["overall"]["images"], 9);
    let recall = rate(&r["recall"]);
    assert!(recall >= 0.95, "recall {recall}");
    rate(&r["precision"]);
    assert!(
        r["overall"]["false_positives"].as_u64().unwrap() <= 2,
        "{r}"
    );
    assert!(r["rule"].as_str().unwrap().contains("dlib"));
}

/// Fairness on 600 UTKFace photos (60 per gender x race cell, listed by
/// absolute path from a temporary labels.csv), with deepface's photos as an
/// unlabelled genuine set.
#[test]
fn utkface_subset_fairness() {
    let Some(data) = common::data("utkface_subset_fairness") else {
        return;
    };
    let utk = data.join("demographics/utkface");
    let text = std::fs::read_to_string(utk.join("labels.csv")).unwrap();
    let mut per_cell = std::collections::HashMap::new();
    let mut labels = String::from("file,gender,race\n");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let n = per_cell
            .entry((f[2].to_string(), f[3].to_string()))
            .or_insert(0);
        if *n < 60 {
            *n += 1;
            labels.push_str(&format!("{},{},{}\n", utk.join(f[0]).display(), f[2], f[3]));
        }
    }
    let tmp = common::temp_dir("eval-fairness");
    std::fs::write(tmp.join("labels.csv"), labels).unwrap();
    let plots = tmp.join("plots");
    let genuine = data.join("identity/deepface");
    let v = kenning_json(&[
        "eval",
        "fairness",
        s(&tmp),
        "--groups",
        "gender,race",
        "--genuine",
        s(&genuine),
        "--bootstrap",
        "200",
        "--plots",
        s(&plots),
    ]);
    assert_eq!(v["enrolment"]["photos"], 600);
    let f = &v["fairness"];
    assert_eq!(
        (&f["impostor_pairs"], &f["genuine_pairs"]),
        (&179_101.into(), &140.into())
    );
    let t = f["thresholds"].as_array().unwrap();
    assert_eq!(t.len(), 2, "FMR 1e-4 and 1e-5 by default");
    for at in t {
        let target = if at["label"].as_str().unwrap().contains("1e-4") {
            1e-4
        } else {
            1e-5
        };
        assert!(rate(&at["overall_fmr"]) <= target, "{}", at["label"]);
        rate(&at["overall_fnmr"]);
    }
    let groups = t[0]["fmr_by_group"].as_array().unwrap();
    assert_eq!(groups.len(), 10, "2 genders x 5 races");
    for g in groups {
        // A photo or two per cell may fail to enrol.
        let n = g["subjects"].as_u64().unwrap();
        assert!(n >= 57, "{g}");
        assert_eq!(g["pairs"].as_u64(), Some(n * (n - 1) / 2));
        rate(&g["rate"]);
    }
    // Measured at FMR 1e-4 (the dlib ResNet's distance): overall FMR
    // 9.5e-5 and FNMR 94.3% on deepface's 140 genuine pairs; Asian men have
    // the most same-group false matches while some groups have none, so
    // the max/min ratio is undefined and bounded below at 2.0 (the rule of
    // three on the cleanest group).
    assert!(
        (5e-5..=1e-4).contains(&rate(&t[0]["overall_fmr"])),
        "{}",
        t[0]
    );
    assert!(
        (0.9..=0.98).contains(&rate(&t[0]["overall_fnmr"])),
        "{}",
        t[0]
    );
    let ratio = &t[0]["fmr_ratio"];
    assert_eq!(ratio["max_group"], "male|asian", "{ratio}");
    assert!(ratio["ratio"].is_null(), "{ratio}");
    let lower = ratio["lower_bound"].as_f64().unwrap();
    assert!((1.5..=2.5).contains(&lower), "{ratio}");
    let worst = groups.iter().find(|g| g["group"] == "male|asian").unwrap();
    assert!(worst["errors"].as_u64().unwrap() >= 5, "{worst}");
    assert!(
        t[0]["fnmr_by_group"].as_array().unwrap().is_empty(),
        "deepface has no labels"
    );
    assert!(std::fs::read_to_string(plots.join("fmr-1.svg"))
        .unwrap()
        .starts_with("<svg"));
}

/// Fair calibration (issue 7) on 600 UTKFace photos (60 per gender x race
/// cell): `kenning calibrate --fair 4` on alternate photos of each cell,
/// without labels, then `kenning eval fairness` on the other half, global
/// distance against the fair calibration. At the same overall FMR (1e-3) the
/// worst group's same-group FMR must fall well below the global threshold's:
/// with so few pairs per group (435) the max/min ratio is mostly undefined
/// (groups with no false match), so the worst group is what is compared.
#[test]
fn utkface_subset_fair_calibration() {
    let Some(data) = common::data("utkface_subset_fair_calibration") else {
        return;
    };
    let utk = data.join("demographics/utkface");
    let text = std::fs::read_to_string(utk.join("labels.csv")).unwrap();
    let mut per_cell = std::collections::HashMap::new();
    let (mut calibration, mut held_out) = (String::new(), String::from("file,gender,race\n"));
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let n = per_cell
            .entry((f[2].to_string(), f[3].to_string()))
            .or_insert(0);
        if *n < 60 {
            let path = utk.join(f[0]);
            if *n % 2 == 0 {
                calibration.push_str(&format!("{}\n", path.display()));
            } else {
                held_out.push_str(&format!("{},{},{}\n", path.display(), f[2], f[3]));
            }
            *n += 1;
        }
    }
    let tmp = common::temp_dir("eval-fair");
    let (list, labels) = (tmp.join("calibration.txt"), tmp.join("labels.csv"));
    std::fs::write(&list, calibration).unwrap();
    std::fs::write(&labels, held_out).unwrap();
    let (fc, cache) = (tmp.join("fair.json"), tmp.join("cache.jsonl"));
    let out = kenning(&["calibrate", s(&utk), "--list", s(&list), "--fair", "4"])
        .args(["--cache", s(&cache), "--out", s(&fc)])
        .output()
        .expect("running kenning");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let worst = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "fairness",
            s(&tmp),
            "--labels",
            s(&labels),
            "--fmr",
            "1e-3",
            "--bootstrap",
            "0",
            "--cache",
            s(&cache),
        ];
        args.extend_from_slice(extra);
        let v = kenning_json(&args);
        let t = &v["fairness"]["thresholds"][0];
        let overall = rate(&t["overall_fmr"]);
        assert!(overall <= 1e-3 && overall > 5e-4, "{overall}");
        t["fmr_by_group"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| rate(&g["rate"]))
            .fold(0.0, f64::max)
    };
    let global = worst(&[]);
    let fair = worst(&["--fair-calibration", s(&fc)]);
    // Measured: the worst group's same-group FMR is 6.9% with the global
    // distance and 2.5% with the fair calibration.
    assert!(
        (0.05..=0.09).contains(&global) && fair <= 0.03,
        "worst same-group FMR: fair {fair}, global {global}"
    );
}
