//! Detection recall and precision against ground-truth boxes.

use std::collections::BTreeMap;

use kenning_core::PixelBox;
use serde::{Deserialize, Serialize};

use crate::formats::{BoxesByFile, GroundTruthBox};

/// Default IoU needed for a detection to count as finding a face. Lower than
/// the 0.5 of PASCAL VOC because hand-drawn "brow to chin" boxes and a
/// detector's boxes frame faces differently.
pub const DEFAULT_IOU: f64 = 0.4;

/// Outcome of matching one image's detections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileMatch {
    /// (detection index, ground-truth index) of each true positive.
    pub matches: Vec<(usize, usize)>,
    /// Non-ignored ground-truth faces.
    pub faces: usize,
    /// Detections that matched only an ignored face: neither right nor wrong.
    pub ignored_detections: usize,
    /// Detections that matched nothing.
    pub false_positives: usize,
}

/// Greedy one-to-one matching: all (detection, face) pairs with IoU >=
/// `iou_threshold` are taken in order of decreasing IoU, each detection and
/// each face used at most once. Ignored faces are matched only after that,
/// and any number of leftover detections may fall on one ignored face.
pub fn match_detections(
    truth: &[GroundTruthBox],
    detections: &[PixelBox],
    iou_threshold: f64,
) -> FileMatch {
    let mut cand: Vec<(f64, usize, usize)> = Vec::new();
    for (d, db) in detections.iter().enumerate() {
        for (g, gt) in truth.iter().enumerate().filter(|(_, g)| !g.ignore) {
            let iou = db.iou(&gt.bbox);
            if iou >= iou_threshold {
                cand.push((iou, d, g));
            }
        }
    }
    cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let (mut det_used, mut gt_used) = (vec![false; detections.len()], vec![false; truth.len()]);
    let mut out = FileMatch {
        faces: truth.iter().filter(|g| !g.ignore).count(),
        ..Default::default()
    };
    for (_, d, g) in cand {
        if !det_used[d] && !gt_used[g] {
            det_used[d] = true;
            gt_used[g] = true;
            out.matches.push((d, g));
        }
    }
    for (_, db) in detections.iter().enumerate().filter(|&(d, _)| !det_used[d]) {
        if truth
            .iter()
            .any(|g| g.ignore && db.iou(&g.bbox) >= iou_threshold)
        {
            out.ignored_detections += 1;
        } else {
            out.false_positives += 1;
        }
    }
    out
}

/// Totals over a set of images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectionCounts {
    /// Images.
    pub images: usize,
    /// Non-ignored ground-truth faces.
    pub faces: usize,
    /// Faces found (true positives).
    pub found: usize,
    /// Detections matching nothing.
    pub false_positives: usize,
    /// Detections matching only ignored faces.
    pub ignored_detections: usize,
    /// Ground-truth faces marked ignore.
    pub ignored_faces: usize,
}

impl DetectionCounts {
    /// found / faces (`None` with no faces).
    pub fn recall(&self) -> Option<f64> {
        (self.faces > 0).then(|| self.found as f64 / self.faces as f64)
    }
    /// found / (found + false positives) (`None` with no counted detections).
    pub fn precision(&self) -> Option<f64> {
        let d = self.found + self.false_positives;
        (d > 0).then(|| self.found as f64 / d as f64)
    }
    fn add(&mut self, m: &FileMatch, ignored_faces: usize) {
        self.images += 1;
        self.faces += m.faces;
        self.found += m.matches.len();
        self.false_positives += m.false_positives;
        self.ignored_detections += m.ignored_detections;
        self.ignored_faces += ignored_faces;
    }
}

/// Detection figures for one group of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDetection {
    /// Group name (label values joined by `|`).
    pub group: String,
    /// Totals for the group.
    pub counts: DetectionCounts,
    /// Detection rate (recall) in the group.
    pub recall: Option<f64>,
}

/// Everything `kenning eval detect` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionReport {
    /// The matching rule, in words.
    pub rule: String,
    /// IoU threshold used.
    pub iou_threshold: f64,
    /// Totals over all images with ground truth.
    pub overall: DetectionCounts,
    /// Overall recall.
    pub recall: Option<f64>,
    /// Overall precision.
    pub precision: Option<f64>,
    /// Per-group detection rates, when groups were given.
    pub per_group: Vec<GroupDetection>,
    /// Images with detections but no ground-truth entry (not scored).
    pub unlabelled_images_skipped: usize,
}

/// Scores detections against ground truth. Only images present in `truth`
/// are scored (an image with no faces can be listed with an empty box list);
/// an image in `truth` with no entry in `detections` found nothing.
/// `groups` maps a file to its group for per-group detection rates.
pub fn evaluate_detection(
    truth: &BoxesByFile,
    detections: &BTreeMap<String, Vec<PixelBox>>,
    groups: Option<&BTreeMap<String, String>>,
    iou_threshold: f64,
) -> DetectionReport {
    let mut overall = DetectionCounts::default();
    let mut per: BTreeMap<String, DetectionCounts> = BTreeMap::new();
    for (file, gt) in truth {
        let dets = detections.get(file).map_or(&[][..], Vec::as_slice);
        let m = match_detections(gt, dets, iou_threshold);
        let ignored = gt.iter().filter(|g| g.ignore).count();
        overall.add(&m, ignored);
        if let Some(g) = groups.and_then(|g| g.get(file)) {
            per.entry(g.clone()).or_default().add(&m, ignored);
        }
    }
    DetectionReport {
        rule: format!(
            "greedy one-to-one matching in order of decreasing IoU; a detection finds a face when IoU >= {iou_threshold}; \
             faces marked ignore count neither as found nor as missed, and detections on them are not false positives; \
             only images listed in the ground truth are scored"
        ),
        iou_threshold,
        recall: overall.recall(),
        precision: overall.precision(),
        overall,
        per_group: per.into_iter().map(|(group, counts)| GroupDetection { group, recall: counts.recall(), counts }).collect(),
        unlabelled_images_skipped: detections.keys().filter(|f| !truth.contains_key(*f)).count(),
    }
}
