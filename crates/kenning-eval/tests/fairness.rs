mod common;

use common::{axis, cluster};
use kenning_eval::calibrate::{
    check_calibration_fn, impostor_fmr_points, kmeans, ClusterPairs, FairCalibration,
    FairCalibrationConfig, FairCalibrationFit, RegionDomains,
};
use kenning_eval::fairness::{
    evaluate_fairness, FairnessConfig, LabelledSet, Scoring, ThresholdRule,
};
use kenning_eval::rng::SplitMix64;
use kenning_eval::{Distance, Embeddings, ToMarkdown};

fn one_d(v: &[f32]) -> Embeddings {
    Embeddings::new(&v.iter().map(|&x| vec![x]).collect::<Vec<_>>()).unwrap()
}

#[test]
fn fairness_ratios_on_constructed_groups() {
    // g1 photos at 0,1,2,3: distances 1,1,1,2,2,3. g2 at 100,101,200,300:
    // one pair at distance 1. Cross-group pairs are >= 97. 28 pairs in all.
    let emb = one_d(&[0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 200.0, 300.0]);
    let groups: Vec<Option<&str>> = [["g1"; 4], ["g2"; 4]]
        .concat()
        .into_iter()
        .map(Some)
        .collect();
    let imp = LabelledSet::one_photo_per_subject(&emb, &groups).unwrap();
    assert_eq!(imp.impostor_pairs(), 28);
    // Genuine: g1 subjects with pairs at 0.5 (kept) and 5 (missed); g2 both kept.
    let gemb = one_d(&[0.0, 0.5, 10.0, 15.0, 20.0, 20.5, 30.0, 30.5]);
    let subjects = ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"];
    let gen = LabelledSet::new(&gemb, &subjects, &groups).unwrap();
    let config = FairnessConfig {
        thresholds: vec![
            ThresholdRule::OverallFmr(4.0 / 28.0),
            ThresholdRule::OverallFmr(0.01),
        ],
        bootstrap_replicates: 200,
        ..Default::default()
    };
    let r = evaluate_fairness(
        &imp,
        Some(&gen),
        Scoring::Distance(Distance::Euclidean),
        &config,
    )
    .unwrap();
    assert_eq!(r.impostor_pairs, 28);
    let t = &r.thresholds[0];
    assert_eq!(t.threshold, Some(1.0));
    assert_eq!(t.overall_false_matches, 4);
    let fmr: Vec<(String, u64, u64)> = t
        .fmr_by_group
        .iter()
        .map(|g| (g.group.clone(), g.errors, g.pairs))
        .collect();
    assert_eq!(fmr, vec![("g1".into(), 3, 6), ("g2".into(), 1, 6)]);
    let ratio = t.fmr_ratio.as_ref().unwrap();
    assert_eq!(
        (ratio.max_group.as_str(), ratio.min_group.as_str()),
        ("g1", "g2")
    );
    assert!((ratio.ratio.unwrap() - 3.0).abs() < 1e-12);
    assert_eq!(t.fnmr_by_group[0].rate, 0.5);
    assert_eq!(t.fnmr_by_group[1].rate, 0.0);
    let fr = t.fnmr_ratio.as_ref().unwrap();
    assert_eq!(fr.ratio, None);
    // Rule of three: 0.5 / (3 / 2 pairs).
    assert!((fr.lower_bound.unwrap() - 0.5 / 1.5).abs() < 1e-12);
    assert_eq!(t.overall_fnmr, Some(0.25));
    let cross: Vec<_> = t
        .cross_group_fmr
        .iter()
        .map(|c| (c.a.as_str(), c.b.as_str(), c.pairs, c.false_matches))
        .collect();
    assert_eq!(
        cross,
        vec![("g1", "g1", 6, 3), ("g1", "g2", 16, 0), ("g2", "g2", 6, 1)]
    );
    // 0.01 x 28 < 1: not measurable.
    assert_eq!(r.thresholds[1].threshold, None);
    let md = r.to_markdown();
    assert!(md.contains("g1 / g2") && md.contains("at least"), "{md}");
}

/// Two groups in different directions of the space, one much tighter, so
/// its same-group impostors are closer.
fn two_groups(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Option<&'static str>>) {
    let mut rng = SplitMix64::new(seed);
    let mut rows = cluster(&mut rng, &axis(16, 0, 4.0), 0.25, n);
    rows.extend(cluster(&mut rng, &axis(16, 1, 4.0), 0.5, n));
    let groups = (0..2 * n)
        .map(|i| Some(if i < n { "tight" } else { "loose" }))
        .collect();
    (rows, groups)
}

#[test]
fn bootstrap_is_deterministic_and_contains_estimate() {
    let (rows, groups) = two_groups(150, 11);
    let emb = Embeddings::new(&rows).unwrap();
    let set = LabelledSet::one_photo_per_subject(&emb, &groups).unwrap();
    // A fixed threshold inside both groups' impostor ranges.
    let config = FairnessConfig {
        thresholds: vec![ThresholdRule::Fixed {
            label: "d=1.9".into(),
            score: 1.9,
        }],
        bootstrap_replicates: 300,
        seed: 5,
        ..Default::default()
    };
    let a = evaluate_fairness(&set, None, Scoring::Distance(Distance::Euclidean), &config).unwrap();
    let b = evaluate_fairness(&set, None, Scoring::Distance(Distance::Euclidean), &config).unwrap();
    assert_eq!(a, b);
    let t = &a.thresholds[0];
    for g in &t.fmr_by_group {
        assert!(g.errors > 0, "{g:?}");
        assert!(
            g.ci_low.unwrap() <= g.rate && g.rate <= g.ci_high.unwrap(),
            "{g:?}"
        );
    }
    let q = t.fmr_ratio.as_ref().unwrap();
    assert!(
        q.ci_low.unwrap() <= q.ratio.unwrap() && q.ratio.unwrap() <= q.ci_high.unwrap(),
        "{q:?}"
    );
    let c = evaluate_fairness(
        &set,
        None,
        Scoring::Distance(Distance::Euclidean),
        &FairnessConfig { seed: 6, ..config },
    )
    .unwrap();
    assert_ne!(
        a.thresholds[0].fmr_by_group[0].ci_low,
        c.thresholds[0].fmr_by_group[0].ci_low
    );
}

#[test]
fn kmeans_recovers_separated_clusters() {
    let mut rng = SplitMix64::new(3);
    let mut rows = Vec::new();
    for k in 0..3 {
        rows.extend(cluster(&mut rng, &axis(8, k, 10.0), 0.3, 50));
    }
    let emb = Embeddings::new(&rows).unwrap();
    let km = kmeans(&emb, 3, 42, 50).unwrap();
    for k in 0..3 {
        let first = km.assignments[k * 50];
        assert!(km.assignments[k * 50..(k + 1) * 50]
            .iter()
            .all(|&a| a == first));
    }
    let mut labels = vec![km.assignments[0], km.assignments[50], km.assignments[100]];
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), 3);
    assert_eq!(km, kmeans(&emb, 3, 42, 50).unwrap());
    assert!(kmeans(&emb, 0, 1, 10).is_err());
}

#[test]
fn fair_calibration_equalises_group_fmr() {
    let (rows, groups) = two_groups(250, 21);
    let emb = Embeddings::new(&rows).unwrap();
    let set = LabelledSet::one_photo_per_subject(&emb, &groups).unwrap();
    let config = FairnessConfig {
        thresholds: vec![ThresholdRule::OverallFmr(1e-2)],
        bootstrap_replicates: 100,
        ..Default::default()
    };
    let global =
        evaluate_fairness(&set, None, Scoring::Distance(Distance::Euclidean), &config).unwrap();
    let g = global.thresholds[0].fmr_ratio.clone().unwrap();
    assert_eq!(g.max_group, "tight");
    assert!(g.ratio.is_none_or(|r| r > 20.0), "{g:?}");

    let fair = FairCalibration::fit(&emb, 2, Distance::Euclidean, 9).unwrap();
    // Calibrated threshold: predicted FMR 1e-2 means log10 score -2.
    let fixed = FairnessConfig {
        thresholds: vec![ThresholdRule::Fixed {
            label: "calibrated FMR 1e-2".into(),
            score: -2.0,
        }],
        ..config.clone()
    };
    let r = evaluate_fairness(&set, None, Scoring::Fair(&fair), &fixed).unwrap();
    let t = &r.thresholds[0];
    let ratio = t.fmr_ratio.as_ref().unwrap().ratio.unwrap();
    assert!(ratio < 2.0, "fair ratio {ratio}: {:?}", t.fmr_by_group);
    let overall = t.overall_fmr.unwrap();
    assert!((0.5e-2..2e-2).contains(&overall), "overall FMR {overall}");

    // The model round-trips through JSON and scores pairs directly.
    let back = FairCalibration::from_json(&fair.to_json().unwrap()).unwrap();
    assert_eq!(back.centroids, fair.centroids);
    let f = fair.fmr_of(&rows[0], &rows[1]);
    assert!((back.fmr_of(&rows[0], &rows[1]) / f - 1.0).abs() < 1e-9);
    assert!(f > 0.0 && f <= 1.0);
    assert!(fair.fmr(&rows[0], &rows[300], 0.0) < fair.fmr(&rows[0], &rows[300], 10.0));

    // The "involving" variant fits too.
    let cfg = FairCalibrationConfig {
        k: 2,
        pairs: ClusterPairs::Involving,
        ..Default::default()
    };
    assert!(FairCalibration::fit_with::<&str>(&emb, None, Distance::Cosine, cfg).is_ok());
}

#[test]
fn fair_calibration_leaves_out_copies() {
    // Five photos present twice: their five zero-distance pairs are copies,
    // not comparisons of different people.
    let (mut rows, _) = two_groups(100, 5);
    rows.extend(rows[..5].to_vec());
    let n = rows.len() as u64;
    let emb = Embeddings::new(&rows).unwrap();
    let fit = |exclude_below| {
        let cfg = FairCalibrationConfig {
            k: 2,
            exclude_below,
            ..Default::default()
        };
        FairCalibration::fit_with::<&str>(&emb, None, Distance::Euclidean, cfg).unwrap()
    };
    assert_eq!(fit(0.0).impostor_pairs, n * (n - 1) / 2);
    let fair = fit(1e-6);
    assert_eq!(fair.impostor_pairs, n * (n - 1) / 2 - 5);
    assert_eq!(fair.global.pairs, fair.impostor_pairs);
    let back = FairCalibration::from_json(&fair.to_json().unwrap()).unwrap();
    assert_eq!(back.config.exclude_below, 1e-6);
}

#[test]
fn calibration_check_and_points() {
    // Impostor distances uniform on (0, 1]: FMR(d) = d exactly.
    let imp: Vec<f32> = (1..=10_000).map(|k| k as f32 / 10_000.0).collect();
    let pts = impostor_fmr_points(&imp, 1, 10);
    let got: Vec<(f64, f32)> = pts.iter().map(|p| (p.log10_fmr, p.distance)).collect();
    assert_eq!(
        got,
        vec![(0.0, 1.0), (-1.0, 0.1), (-2.0, 0.01), (-3.0, 0.001)]
    );
    let check = check_calibration_fn(&imp, f64::from, &[1e-1, 1e-3, 1e-5], 3.0, "identity");
    assert!(check.rows[0].within_factor && check.rows[1].within_factor);
    assert!((check.rows[0].observed_fmr - 0.1).abs() < 2e-4);
    assert!(!check.rows[2].measurable);
    // A table that is optimistic by 10x fails.
    let bad = check_calibration_fn(&imp, |d| f64::from(d) / 10.0, &[1e-2], 3.0, "optimistic");
    assert!(!bad.rows[0].within_factor);
    assert!(bad.to_markdown().contains("| no |"));
}

/// Scale check at UTKFace size (6,000 photos, 18M impostor pairs); run with
/// `cargo test --release -p kenning-eval -- --ignored`.
#[test]
#[ignore]
fn utkface_scale() {
    let mut rng = SplitMix64::new(1);
    let mut rows = Vec::new();
    for k in 0..12 {
        rows.extend(cluster(&mut rng, &axis(128, k, 1.0), 0.08, 500));
    }
    let names: Vec<String> = (0..12).map(|k| format!("g{k}")).collect();
    let groups: Vec<Option<&str>> = (0..6000).map(|i| Some(names[i / 500].as_str())).collect();
    let emb = Embeddings::new(&rows).unwrap();
    let set = LabelledSet::one_photo_per_subject(&emb, &groups).unwrap();
    let t = std::time::Instant::now();
    let r = evaluate_fairness(
        &set,
        None,
        Scoring::Distance(Distance::Euclidean),
        &FairnessConfig::default(),
    )
    .unwrap();
    eprintln!("global fairness: {:?}", t.elapsed());
    assert_eq!(r.impostor_pairs, 6000 * 5999 / 2);
    let t = std::time::Instant::now();
    let fair = FairCalibration::fit(&emb, 12, Distance::Euclidean, 1).unwrap();
    eprintln!("fair fit: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    evaluate_fairness(&set, None, Scoring::Fair(&fair), &FairnessConfig::default()).unwrap();
    eprintln!("fair fairness: {:?}", t.elapsed());
}

#[test]
fn mean_curve_points_inverts_the_mean_of_log_fmr_curves() {
    // log10 FMR x - 10 and x - 8: their mean is x - 9, so level L is reached
    // at x = L + 9; level -10 (x = -1) lies below the range and is left out.
    let a = |x: f64| x - 10.0;
    let b = |x: f64| x - 8.0;
    let curves: [&(dyn Fn(f64) -> f64 + Sync); 2] = [&a, &b];
    let pts = kenning_eval::mean_curve_points(&curves, 0.0, 10.0, &[0.0, -1.0, -3.0, -10.0]);
    let want = [(9.0, 0.0), (8.0, -1.0), (6.0, -3.0)];
    assert_eq!(pts.len(), want.len(), "{pts:?}");
    for ((x, l), (wx, wl)) in pts.iter().zip(want) {
        assert!((x - wx).abs() < 1e-9 && *l == wl, "{pts:?}");
    }
}

#[test]
fn pooled_fit_counts_pairs_within_domains_and_weighs_domains_alike() {
    // Unit vectors on a circle (cosine distance 1 - cos of the angle between
    // them). Domain "a": 60 photos 0.05 rad apart; domain "b": 20 photos
    // 0.03 rad apart, so its pairs are closer. Only pairs within a domain
    // count (1,770 + 190), and the pooled tables sit at the mean of the two
    // domains' log10 FMR, although "a" has nine times the pairs.
    let circle = |angles: &[f64]| -> Vec<Vec<f32>> {
        angles
            .iter()
            .map(|t| vec![t.cos() as f32, t.sin() as f32])
            .collect()
    };
    let a = circle(&(0..60).map(|i| 0.05 * f64::from(i)).collect::<Vec<_>>());
    let b = circle(
        &(0..20)
            .map(|i| 3.3 + 0.03 * f64::from(i))
            .collect::<Vec<_>>(),
    );
    let all = Embeddings::new(&[a.clone(), b.clone()].concat()).unwrap();
    let domains: Vec<&str> = [vec!["a"; 60], vec!["b"; 20]].concat();
    let cfg = FairCalibrationConfig {
        k: 1,
        min_count: 1,
        ..Default::default()
    };
    let fit = |e: &[Vec<f32>]| {
        let e = Embeddings::new(e).unwrap();
        FairCalibration::fit_with::<&str>(&e, None, Distance::Cosine, cfg).unwrap()
    };
    let (fa, fb) = (fit(&a), fit(&b));
    let pooled = FairCalibration::fit_pooled(&all, None, &domains, Distance::Cosine, cfg).unwrap();
    assert_eq!(pooled.impostor_pairs, 60 * 59 / 2 + 20 * 19 / 2);
    for d in [0.01f64, 0.03, 0.06, 0.1, 0.15] {
        let want = (fa.global.log_fmr(d) + fb.global.log_fmr(d)) / 2.0;
        let got = pooled.global.log_fmr(d);
        assert!(
            (got - want).abs() < 0.05,
            "distance {d}: {got} against {want}"
        );
        // One cluster: the combined score is the global one.
        let combined = pooled.log_fmr_for_clusters(0, 0, d as f32);
        assert!(
            (combined - want).abs() < 0.05,
            "distance {d}: {combined} against {want}"
        );
    }
}

#[test]
fn pooled_fit_weighs_domains_inside_a_region_as_configured() {
    // Two domains on a circle in one region (k = 1): "a", 300 photos 0.01
    // rad apart (44,850 pairs); "b", 100 photos 0.006 rad apart (4,950
    // pairs, closer).
    // The region's table is, at distance d, the FMR of all pairs counted
    // once (summed), the mean of the two domains' log10 FMR (mean_log),
    // log10 of the mean of their FMRs (mixture), or with "b"'s pairs
    // weighing (44,850 / 4,950)^0.5 each (mixture at power 0.5), counted
    // here pair by pair.
    let circle = |step: f64, n: u32, at: f64| -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| at + step * f64::from(i))
            .map(|t| vec![t.cos() as f32, t.sin() as f32])
            .collect()
    };
    let (a, b) = (circle(0.01, 300, 0.0), circle(0.006, 100, 3.3));
    let all = Embeddings::new(&[a.clone(), b.clone()].concat()).unwrap();
    let domains: Vec<&str> = [vec!["a"; 300], vec!["b"; 100]].concat();
    // Pairs of one domain closer than d, counted from the angles.
    let fmr = |step: f64, n: u32, d: f64| {
        let pairs = f64::from(n * (n - 1) / 2);
        let close: u32 = (1..n)
            .filter(|&k| 1.0 - (step * f64::from(k)).cos() <= d)
            .map(|k| n - k)
            .sum();
        f64::from(close) / pairs
    };
    let table_at = |region_domains, mixture_power| {
        let cfg = FairCalibrationConfig {
            k: 1,
            min_count: 1,
            region_domains,
            domain_min_pairs: 100,
            mixture_power,
            ..Default::default()
        };
        let fc = FairCalibration::fit_pooled(&all, None, &domains, Distance::Cosine, cfg).unwrap();
        fc.clusters[0].table.clone().unwrap()
    };
    let table = |region_domains| table_at(region_domains, 1.0);
    let (summed, mean_log, mixture, half) = (
        table(RegionDomains::Summed),
        table(RegionDomains::MeanLog),
        table(RegionDomains::Mixture),
        table_at(RegionDomains::Mixture, 0.5),
    );
    // Power 0 counts every pair once: the summed table exactly.
    assert_eq!(table_at(RegionDomains::Mixture, 0.0), summed);
    let wb = (44850.0f64 / 4950.0).sqrt();
    let mut apart = 0.0f64;
    for d in [0.001f64, 0.002, 0.005, 0.01] {
        let (fa, fb) = (fmr(0.01, 300, d), fmr(0.006, 100, d));
        let want = [
            ((fa * 44850.0 + fb * 4950.0) / 49800.0).log10(),
            (fa.log10() + fb.log10()) / 2.0,
            ((fa + fb) / 2.0).log10(),
            ((fa * 44850.0 + fb * 4950.0 * wb) / (44850.0 + 4950.0 * wb)).log10(),
        ];
        for (t, w) in [&summed, &mean_log, &mixture, &half].iter().zip(want) {
            let got = t.log_fmr(d);
            assert!((got - w).abs() < 0.05, "distance {d}: {got} against {w}");
        }
        apart = apart.max(
            [
                want[0] - want[1],
                want[1] - want[2],
                want[3] - want[0],
                want[2] - want[3],
            ]
            .iter()
            .fold(f64::INFINITY, |m, x| m.min(x.abs())),
        );
    }
    // The four weightings differ by more than twice the tolerance here.
    assert!(apart > 0.1, "{apart}");
    // Below the minimum pairs a domain gets no curve of its own, and with
    // one domain left the pairs are summed.
    let cfg = FairCalibrationConfig {
        k: 1,
        min_count: 1,
        region_domains: RegionDomains::MeanLog,
        domain_min_pairs: 5000,
        ..Default::default()
    };
    let fc = FairCalibration::fit_pooled(&all, None, &domains, Distance::Cosine, cfg).unwrap();
    assert_eq!(fc.clusters[0].table.as_ref(), Some(&summed));
}

/// The small-face rule on top of a fair calibration: with a hand-made rule
/// that raises every pair of two small faces' log10 FMR by exactly one
/// decade, a small pair is a false match at threshold -2 exactly when the
/// calibration alone puts it at or below -3; other pairs are untouched.
#[test]
fn the_small_face_rule_moves_only_small_pairs_by_its_map() {
    use kenning_core::quality::{BandCell, QualityBands};
    let (rows, _) = two_groups(250, 21);
    let emb = Embeddings::new(&rows).unwrap();
    let fair = FairCalibration::fit(&emb, 2, Distance::Euclidean, 9).unwrap();
    let small = |i: usize| i.is_multiple_of(2);
    let groups: Vec<Option<&str>> = (0..rows.len())
        .map(|i| Some(if small(i) { "small" } else { "large" }))
        .collect();
    let pixels = (0..rows.len())
        .map(|i| Some(if small(i) { 20.0 } else { 100.0 }))
        .collect();
    let plain = LabelledSet::one_photo_per_subject(&emb, &groups).unwrap();
    let sized = plain.clone().with_pixels(pixels).unwrap();
    let rule = QualityBands {
        recogniser: "t".into(),
        source: "hand".into(),
        measure: "".into(),
        edges: vec![30.0],
        cells: vec![BandCell {
            bands: [0, 0],
            pairs: 1,
            map: vec![(-10.0, -9.0), (-1.0, 0.0)],
        }],
    };
    let at = |scores: &[f32]| FairnessConfig {
        thresholds: scores
            .iter()
            .map(|&score| ThresholdRule::Fixed {
                label: format!("{score}"),
                score,
            })
            .collect(),
        bootstrap_replicates: 0,
        ..Default::default()
    };
    let before = evaluate_fairness(&plain, None, Scoring::Fair(&fair), &at(&[-2.0, -3.0])).unwrap();
    let after = evaluate_fairness(
        &sized,
        None,
        Scoring::FairWithRule(&fair, &rule),
        &at(&[-2.0]),
    )
    .unwrap();
    let fm = |t: &kenning_eval::fairness::ThresholdResult, a: &str, b: &str| {
        t.cross_group_fmr
            .iter()
            .find(|c| c.a == a && c.b == b)
            .unwrap()
            .false_matches
    };
    let (b2, b3, a2) = (
        &before.thresholds[0],
        &before.thresholds[1],
        &after.thresholds[0],
    );
    assert!(fm(b2, "small", "small") > fm(b3, "small", "small"));
    assert_eq!(fm(a2, "small", "small"), fm(b3, "small", "small"));
    assert_eq!(fm(a2, "large", "large"), fm(b2, "large", "large"));
    assert_eq!(fm(a2, "large", "small"), fm(b2, "large", "small"));
    // Every small pair scoring below FMR 1 was changed; no other pair was.
    let effect = after.small_face_rule.unwrap();
    assert_eq!(effect.rule, rule.label());
    assert_eq!(effect.genuine_pairs_changed, 0);
    let small_pairs = 250 * 249 / 2;
    assert!(
        effect.impostor_pairs_changed > 0 && effect.impostor_pairs_changed <= small_pairs,
        "{effect:?}"
    );
    assert!(after.scoring.contains("small-face rule"));
    // A set without sizes has nothing for the rule to go on.
    let unsized_ = evaluate_fairness(
        &plain,
        None,
        Scoring::FairWithRule(&fair, &rule),
        &at(&[-2.0]),
    )
    .unwrap();
    assert_eq!(unsized_.small_face_rule.unwrap().impostor_pairs_changed, 0);
    assert!(plain.clone().with_pixels(vec![None]).is_err());
}
