mod common;

use std::collections::BTreeMap;

use kenning_core::PixelBox;
use kenning_eval::detect::{evaluate_detection, match_detections};
use kenning_eval::identify::{
    evaluate_identification, split_gallery, GallerySplit, IdentifyConfig,
};
use kenning_eval::verify::{
    evaluate_verification, generate_pairs, kfold_accuracy, threshold_for_rate, PairConfig,
    ScoredPair, VerificationScores, VerifyConfig,
};
use kenning_eval::{Distance, Embeddings, GroundTruthBox, ToMarkdown};

fn scores() -> VerificationScores {
    let genuine: Vec<f32> = (1..=10).map(|k| k as f32 / 10.0).collect();
    let mut impostor = vec![0.55f32];
    impostor.extend((1..=9).map(|k| 1.0 + k as f32 / 10.0));
    VerificationScores::new(genuine, impostor).unwrap()
}

#[test]
fn fnmr_at_fmr_is_exact() {
    let s = scores();
    // FMR 0.1 of 10 impostors allows one false match: threshold 0.55, so
    // genuine 0.6..1.0 (5 of 10) are missed.
    let r = s.fnmr_at_fmr(0.1);
    assert_eq!(r.threshold, Some(0.55));
    assert_eq!(r.fmr, Some(0.1));
    assert_eq!(r.fnmr, Some(0.5));
    // Two allowed: threshold 1.1 accepts every genuine pair.
    assert_eq!(s.fnmr_at_fmr(0.2).fnmr, Some(0.0));
    // 0.01 x 10 < 1: not measurable.
    let r = s.fnmr_at_fmr(0.01);
    assert_eq!((r.threshold, r.fnmr), (None, None));
}

#[test]
fn ties_are_never_split() {
    let imp = [0.5f32, 0.5, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6];
    let t = threshold_for_rate(&imp, 0.1).unwrap();
    assert_eq!(t.accepted, 0);
    assert!(t.threshold < 0.5);
    assert_eq!(threshold_for_rate(&imp, 0.2).unwrap().threshold, 0.5);
}

#[test]
fn equal_error_rate_of_known_case() {
    let s = VerificationScores::new(vec![0.1, 0.2, 0.3, 0.4], vec![0.35, 0.5, 0.6, 0.7]).unwrap();
    let e = s.eer().unwrap();
    assert_eq!(e.eer, 0.25);
    assert_eq!(e.threshold, 0.35);
    let sep = VerificationScores::new(vec![0.1, 0.2], vec![0.8, 0.9]).unwrap();
    assert_eq!(sep.eer().unwrap().eer, 0.0);
}

#[test]
fn det_curve_is_monotone() {
    let det = scores().det_curve(10);
    assert!(!det.is_empty());
    for w in det.windows(2) {
        assert!(w[0].fmr < w[1].fmr && w[0].fnmr >= w[1].fnmr);
    }
}

#[test]
fn kfold_accuracy_on_separable_data_is_one() {
    let pairs: Vec<ScoredPair> = (0..200)
        .map(|k| ScoredPair {
            score: if k % 2 == 0 {
                0.3 + (k as f32) * 1e-3
            } else {
                0.9
            },
            same: k % 2 == 0,
            fold: Some(k % 10),
        })
        .collect();
    let acc = kfold_accuracy(&pairs).unwrap();
    assert_eq!(acc.folds.len(), 10);
    assert_eq!(acc.mean, 1.0);
    assert_eq!(acc.std, 0.0);
    let report = evaluate_verification(&pairs, &VerifyConfig::default()).unwrap();
    assert_eq!(report.kfold.as_ref().unwrap().mean, 1.0);
    let md = report.to_markdown();
    assert!(
        md.contains("100.00%") && md.contains("not measurable"),
        "{md}"
    );
    assert!(serde_json::to_string(&report)
        .unwrap()
        .contains("fnmr_at_fmr"));
}

#[test]
fn kfold_threshold_comes_from_other_folds() {
    // Fold 0 has its genuine pair at 0.7; the others learn a threshold near
    // 0.5 and so miss it.
    let mut pairs = vec![
        ScoredPair {
            score: 0.7,
            same: true,
            fold: Some(0),
        },
        ScoredPair {
            score: 0.9,
            same: false,
            fold: Some(0),
        },
    ];
    pairs.push(ScoredPair {
        score: 0.4,
        same: true,
        fold: Some(1),
    });
    pairs.push(ScoredPair {
        score: 0.6,
        same: false,
        fold: Some(1),
    });
    let acc = kfold_accuracy(&pairs).unwrap();
    assert_eq!(acc.folds[0].accuracy, 0.5);
    assert!(kfold_accuracy(&pairs[..2]).is_err());
}

#[test]
fn pair_generation_counts_and_sampling() {
    let ids = ["a", "a", "b", "b", "c", "a"];
    let all = generate_pairs(&ids, PairConfig::default()).unwrap();
    assert_eq!(all.genuine, 4); // 3 pairs of a + 1 of b
    assert_eq!(all.impostor, 15 - 4);
    assert_eq!(all.impostor_population, 11);
    for p in &all.pairs {
        assert!(p.a < p.b);
        assert_eq!(p.same, ids[p.a as usize] == ids[p.b as usize]);
    }
    let cfg = PairConfig {
        max_impostors: 3,
        folds: 2,
        seed: 7,
    };
    let s1 = generate_pairs(&ids, cfg).unwrap();
    assert_eq!(s1.impostor, 3);
    assert_eq!(s1, generate_pairs(&ids, cfg).unwrap());
    assert!(s1.describe().contains("sample of 3 of the 11"));
    // Rejection-sampling branch on a larger set.
    let many: Vec<String> = (0..400).map(|i| format!("id{}", i / 2)).collect();
    let s = generate_pairs(
        &many,
        PairConfig {
            max_impostors: 1000,
            folds: 10,
            seed: 1,
        },
    )
    .unwrap();
    let mut seen: Vec<(u32, u32)> = s
        .pairs
        .iter()
        .filter(|p| !p.same)
        .map(|p| (p.a, p.b))
        .collect();
    assert_eq!(seen.len(), 1000);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1000);
    let fold0 = s.pairs.iter().filter(|p| !p.same && p.fold == 0).count();
    assert_eq!(fold0, 100);
}

#[test]
fn identification_on_tiny_gallery() {
    // Gallery A(0,0) B(10,0) C(0,10); mated probes A2 (1,0), B2 (4,0) whose
    // closest identity is A, C2 (0,9); unmated D photos whose nearest
    // gallery distances are 3, 10, 5 and 7.
    let pts = [
        (0.0, 0.0),
        (10.0, 0.0),
        (0.0, 10.0),
        (1.0, 0.0),
        (4.0, 0.0),
        (0.0, 9.0),
        (0.0, -3.0),
        (20.0, 0.0),
        (15.0, 0.0),
        (0.0, 17.0),
    ];
    let emb = Embeddings::new(&pts.iter().map(|&(x, y)| vec![x, y]).collect::<Vec<_>>()).unwrap();
    let ids = ["A", "B", "C", "A", "B", "C", "D", "D", "D", "D"];
    let split = GallerySplit {
        gallery: vec![0, 1, 2],
        mated_probes: vec![3, 4, 5],
        unmated_probes: vec![6, 7, 8, 9],
        description: "hand-made".into(),
    };
    let cfg = IdentifyConfig {
        fpir_targets: vec![0.25, 0.5, 0.1],
        ..Default::default()
    };
    let r = evaluate_identification(&emb, &ids, &split, Distance::Euclidean, &cfg).unwrap();
    assert_eq!(r.gallery_identities, 3);
    assert!((r.rank1 - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(r.rank10, 1.0);
    let f = &r.fnir_at_fpir;
    assert_eq!(f[0].threshold, Some(3.0));
    assert_eq!(f[0].fpir, Some(0.25));
    assert!((f[0].fnir.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(f[1].threshold, Some(5.0));
    assert!((f[1].fnir.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(f[2].fnir, None);
    // A longer candidate list lets B2 count at a threshold above 6.
    let cfg = IdentifyConfig {
        fpir_targets: vec![0.75],
        candidate_list_length: 2,
        ..Default::default()
    };
    let r2 = evaluate_identification(&emb, &ids, &split, Distance::Euclidean, &cfg).unwrap();
    assert_eq!(r2.fnir_at_fpir[0].threshold, Some(7.0));
    assert_eq!(r2.fnir_at_fpir[0].fnir, Some(0.0));
    assert!(r.to_markdown().contains("rank-1"));
}

#[test]
fn gallery_split_is_deterministic() {
    let files: Vec<String> = (0..30)
        .map(|i| format!("p{:02}/{}.jpg", i / 3, 9 - i % 3))
        .collect();
    let ids: Vec<String> = (0..30).map(|i| format!("p{:02}", i / 3)).collect();
    let s = split_gallery(&files, &ids, 0.2, 3).unwrap();
    assert_eq!(s.gallery.len(), 8);
    assert_eq!(s.unmated_probes.len(), 6);
    assert_eq!(s.mated_probes.len(), 16);
    // The enrolled photo is the first by file name: "7.jpg".
    assert!(s.gallery.iter().all(|&g| files[g].ends_with("/7.jpg")));
    assert_eq!(s, split_gallery(&files, &ids, 0.2, 3).unwrap());
}

fn bx(l: f64, t: f64, w: f64, h: f64) -> PixelBox {
    PixelBox {
        left: l,
        top: t,
        right: l + w,
        bottom: t + h,
    }
}

#[test]
fn detection_matching_with_ignore_box() {
    let gt = vec![
        GroundTruthBox {
            bbox: bx(0.0, 0.0, 10.0, 10.0),
            ignore: false,
        },
        GroundTruthBox {
            bbox: bx(50.0, 0.0, 10.0, 10.0),
            ignore: false,
        },
        GroundTruthBox {
            bbox: bx(100.0, 0.0, 10.0, 10.0),
            ignore: true,
        },
    ];
    let dets = vec![
        bx(1.0, 0.0, 10.0, 10.0),   // face 1, IoU 0.82
        bx(0.0, 2.0, 10.0, 10.0),   // duplicate on face 1, IoU 0.67: false positive
        bx(100.0, 1.0, 10.0, 10.0), // on the ignored face: not counted
        bx(200.0, 0.0, 10.0, 10.0), // nothing
    ];
    let m = match_detections(&gt, &dets, 0.4);
    assert_eq!(m.matches, vec![(0, 0)]);
    assert_eq!(
        (m.faces, m.false_positives, m.ignored_detections),
        (2, 2, 1)
    );
    let truth = BTreeMap::from([
        ("a.jpg".to_string(), gt),
        (
            "b.jpg".to_string(),
            vec![GroundTruthBox {
                bbox: bx(0.0, 0.0, 4.0, 4.0),
                ignore: false,
            }],
        ),
    ]);
    let found = BTreeMap::from([
        ("a.jpg".to_string(), dets),
        ("b.jpg".to_string(), vec![bx(0.0, 0.0, 4.0, 4.0)]),
        ("x.jpg".to_string(), vec![]),
    ]);
    let groups = BTreeMap::from([
        ("a.jpg".to_string(), "g1".to_string()),
        ("b.jpg".to_string(), "g2".to_string()),
    ]);
    let r = evaluate_detection(&truth, &found, Some(&groups), 0.4);
    assert_eq!((r.overall.faces, r.overall.found), (3, 2));
    assert!((r.recall.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(r.precision, Some(0.5));
    assert_eq!(r.per_group[0].recall, Some(0.5));
    assert_eq!(r.per_group[1].recall, Some(1.0));
    assert_eq!(r.unlabelled_images_skipped, 1);
    assert!(r.to_markdown().contains("IoU >= 0.4"));
}

#[test]
fn greedy_matching_prefers_highest_iou() {
    let gt = vec![
        GroundTruthBox {
            bbox: bx(0.0, 0.0, 10.0, 10.0),
            ignore: false,
        },
        GroundTruthBox {
            bbox: bx(4.0, 0.0, 10.0, 10.0),
            ignore: false,
        },
    ];
    // Detection 1 fits face 0 best (IoU .82) and is paired first; detection
    // 0 overlaps both faces equally (IoU .67) and so gets face 1.
    let dets = vec![bx(2.0, 0.0, 10.0, 10.0), bx(-1.0, 0.0, 10.0, 10.0)];
    let m = match_detections(&gt, &dets, 0.4);
    let mut pairs = m.matches.clone();
    pairs.sort();
    assert_eq!(pairs, vec![(0, 1), (1, 0)]);
}
