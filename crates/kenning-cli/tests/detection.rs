//! Detection recall and false detections on dlib's hand-annotated photos.

use kenning_core::PixelBox;
use kenning_models::pipeline::dlib_rect;

use crate::common;

struct Truth {
    file: String,
    bbox: PixelBox,
    ignore: bool,
}

fn read_boxes(text: &str) -> Vec<Truth> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].trim().parse::<f64>().unwrap();
            Truth {
                file: f[0].to_owned(),
                bbox: PixelBox {
                    left: n(1),
                    top: n(2),
                    right: n(1) + n(3),
                    bottom: n(2) + n(4),
                },
                ignore: f.get(5).is_some_and(|v| v.trim() == "1"),
            }
        })
        .collect()
}

/// Matching rule (also in docs/accuracy.md): each detection is mapped to
/// dlib's box convention (the square box dlib's landmarks expect, which is
/// how these boxes were drawn), then detections and annotated boxes are
/// paired greedily by IoU, best first, one to one, when IoU >= 0.4. A
/// detection paired with an ignored box counts neither way.
#[test]
fn centerface_finds_the_annotated_faces() {
    let Some(data) = common::data("centerface_finds_the_annotated_faces") else {
        return;
    };
    let dir = data.join("detection/dlib");
    let truth = read_boxes(&std::fs::read_to_string(dir.join("boxes.csv")).unwrap());
    let mut files: Vec<&str> = truth.iter().map(|t| t.file.as_str()).collect();
    files.dedup();
    let (mut found, mut counted, mut false_detections) = (0, 0, 0);
    for file in files {
        let image = common::load(&dir.join(file));
        let detections = common::pipeline().detector().detect(&image).unwrap();
        let boxes: Vec<PixelBox> = detections
            .iter()
            .map(|d| {
                let r = dlib_rect(d);
                PixelBox {
                    left: r.left as f64,
                    top: r.top as f64,
                    right: r.right as f64 + 1.0,
                    bottom: r.bottom as f64 + 1.0,
                }
            })
            .collect();
        let gts: Vec<&Truth> = truth.iter().filter(|t| t.file == file).collect();
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (i, b) in boxes.iter().enumerate() {
            for (j, t) in gts.iter().enumerate() {
                let iou = b.iou(&t.bbox);
                if iou >= 0.4 {
                    pairs.push((iou, i, j));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut det_used, mut gt_used) = (vec![false; boxes.len()], vec![false; gts.len()]);
        for (_, i, j) in pairs {
            if !det_used[i] && !gt_used[j] {
                det_used[i] = true;
                gt_used[j] = true;
            }
        }
        counted += gts.iter().filter(|t| !t.ignore).count();
        found += gts
            .iter()
            .zip(&gt_used)
            .filter(|(t, &u)| u && !t.ignore)
            .count();
        let fp = det_used.iter().filter(|u| !**u).count();
        if fp > 0 {
            eprintln!("{file}: {fp} unmatched detection(s)");
        }
        false_detections += fp;
    }
    let recall = found as f64 / counted as f64;
    eprintln!("detection: {found}/{counted} annotated faces found (recall {recall:.3}), {false_detections} false detections");
    assert!(recall >= 0.95, "recall {recall:.3} below 0.95");
    assert!(false_detections <= 2, "{false_detections} false detections");
}
