//! Following faces from frame to frame: each face joins the track whose last
//! box overlaps it best (boxes compared at twice their size, so a face that
//! moved about its own width in a sampling interval still joins), never
//! across a cut between shots. Each track keeps its few best-quality aligned
//! crops, in memory only, for embedding when it ends.

use kenning_core::{FaceDetail, PixelBox};
use kenning_image::RgbImage;

/// How faces are followed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Least overlap (IoU of the boxes at twice their size) to continue a track.
    pub min_overlap: f64,
    /// Largest ratio between the sides of consecutive boxes of one track.
    pub max_size_ratio: f64,
    /// A track not seen for this long ends.
    pub max_gap_ms: u64,
    /// Mean absolute difference (0-255) between small grey thumbnails of
    /// consecutive frames above which the frames are a cut between shots.
    pub cut_threshold: f64,
    /// Crops kept per track for embedding: its best-quality sightings.
    pub best_crops: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            min_overlap: 0.3,
            max_size_ratio: 1.6,
            max_gap_ms: 1000,
            cut_threshold: 22.0,
            best_crops: 3,
        }
    }
}

/// One sighting of a tracked face.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// Milliseconds from the start of the video.
    pub timestamp_ms: u64,
    /// The face as detected.
    pub detail: FaceDetail,
}

/// A face followed through consecutive frames.
pub struct Track {
    /// Assigned in order of first appearance.
    pub id: u32,
    /// Every sighting, in time order.
    pub sightings: Vec<Sighting>,
    /// The best-quality aligned crops, best first, with their quality.
    pub crops: Vec<(f32, RgbImage)>,
    /// The widest the face was, in pixels.
    pub max_width: f64,
    /// The largest its box's shorter side was, in pixels: the track's size
    /// for the small-face rule (its best crops are mostly its largest).
    pub max_side: f32,
    last_box: PixelBox,
}

impl Track {
    /// When the track was first seen.
    pub fn first_ms(&self) -> u64 {
        self.sightings.first().map_or(0, |s| s.timestamp_ms)
    }

    /// When the track was last seen.
    pub fn last_ms(&self) -> u64 {
        self.sightings.last().map_or(0, |s| s.timestamp_ms)
    }
}

/// How good a sighting is for recognition: a confident, sharp, large,
/// frontal face scores highest.
pub fn quality(detail: &FaceDetail, pixel_box: &PixelBox) -> f32 {
    let size = (pixel_box.width().min(pixel_box.height()) / 80.0).min(1.0) as f32;
    let frontal =
        detail.pose.yaw.to_radians().cos().max(0.0) * detail.pose.pitch.to_radians().cos().max(0.0);
    let sharp = 0.5 + detail.quality.sharpness / 200.0;
    detail.confidence / 100.0 * size * frontal * sharp
}

/// The faces of one frame, as the tracker takes them.
pub struct Detected<'a> {
    /// The face's detail.
    pub detail: &'a FaceDetail,
    /// Its box in pixels.
    pub pixel_box: PixelBox,
}

/// Follows faces through a sequence of frames.
pub struct Tracker {
    config: TrackerConfig,
    active: Vec<Track>,
    next_id: u32,
    last_thumb: Option<Vec<u8>>,
    last_ms: u64,
    last_ids: Vec<u32>,
}

/// The side of the square thumbnail-grid frames are compared on.
const THUMB: (u32, u32) = (32, 18);

/// A grey thumbnail of `image`, for telling cuts between shots.
pub fn thumbnail(image: &RgbImage) -> Vec<u8> {
    let (w, h) = image.dimensions();
    let mut out = Vec::with_capacity((THUMB.0 * THUMB.1) as usize);
    for ty in 0..THUMB.1 {
        for tx in 0..THUMB.0 {
            // Mean of a 4x4 grid of samples inside the cell.
            let mut sum = 0u32;
            for sy in 0..4 {
                for sx in 0..4 {
                    let x = ((tx * 4 + sx) as u64 * u64::from(w) / u64::from(THUMB.0 * 4)) as u32;
                    let y = ((ty * 4 + sy) as u64 * u64::from(h) / u64::from(THUMB.1 * 4)) as u32;
                    let p = image.get_pixel(x.min(w - 1), y.min(h - 1)).0;
                    sum += (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114)
                        / 1000;
                }
            }
            out.push((sum / 16) as u8);
        }
    }
    out
}

fn scaled(b: &PixelBox, by: f64) -> PixelBox {
    let (cx, cy) = ((b.left + b.right) / 2.0, (b.top + b.bottom) / 2.0);
    let (hw, hh) = (b.width() * by / 2.0, b.height() * by / 2.0);
    PixelBox {
        left: cx - hw,
        top: cy - hh,
        right: cx + hw,
        bottom: cy + hh,
    }
}

impl Tracker {
    /// A tracker with `config`.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            active: Vec::new(),
            next_id: 0,
            last_thumb: None,
            last_ms: 0,
            last_ids: Vec::new(),
        }
    }

    /// The track each face of the last [`Tracker::update`] joined, in the
    /// order the faces were given (live streams report per face as they go).
    pub fn last_ids(&self) -> &[u32] {
        &self.last_ids
    }

    /// Adds the faces of the next frame (at `timestamp_ms`, with grey
    /// thumbnail `thumb`). `crop(i)` cuts out face `i` aligned for the
    /// recogniser; it is called only for sightings good enough to keep.
    /// Returns the tracks that ended.
    pub fn update(
        &mut self,
        timestamp_ms: u64,
        thumb: Vec<u8>,
        faces: &[Detected<'_>],
        mut crop: impl FnMut(usize) -> RgbImage,
    ) -> Vec<Track> {
        let cut = self.last_thumb.as_ref().is_some_and(|prev| {
            let diff: u64 = prev
                .iter()
                .zip(&thumb)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            diff as f64 / thumb.len().max(1) as f64 > self.config.cut_threshold
        });
        self.last_thumb = Some(thumb);
        self.last_ms = timestamp_ms;
        let mut ended = Vec::new();
        if cut {
            ended.append(&mut self.active);
        } else {
            let gap = self.config.max_gap_ms;
            let (stale, live): (Vec<Track>, Vec<Track>) = self
                .active
                .drain(..)
                .partition(|t| timestamp_ms.saturating_sub(t.last_ms()) > gap);
            ended.extend(stale);
            self.active = live;
        }
        // Greedy assignment, best overlap first.
        let mut pairs = Vec::new();
        for (ti, t) in self.active.iter().enumerate() {
            let tb = scaled(&t.last_box, 2.0);
            for (fi, f) in faces.iter().enumerate() {
                let ratio = (f.pixel_box.width() / t.last_box.width().max(1e-6)).max(1e-6);
                if ratio > self.config.max_size_ratio || ratio < 1.0 / self.config.max_size_ratio {
                    continue;
                }
                let overlap = tb.iou(&scaled(&f.pixel_box, 2.0));
                if overlap >= self.config.min_overlap {
                    pairs.push((overlap, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of = vec![None; faces.len()];
        let mut taken = vec![false; self.active.len()];
        for (_, ti, fi) in pairs {
            if !taken[ti] && track_of[fi].is_none() {
                taken[ti] = true;
                track_of[fi] = Some(ti);
            }
        }
        self.last_ids.clear();
        for (fi, f) in faces.iter().enumerate() {
            let ti = match track_of[fi] {
                Some(ti) => ti,
                None => {
                    self.active.push(Track {
                        id: self.next_id,
                        sightings: Vec::new(),
                        crops: Vec::new(),
                        max_width: 0.0,
                        max_side: 0.0,
                        last_box: f.pixel_box,
                    });
                    self.next_id += 1;
                    self.active.len() - 1
                }
            };
            let keep = self.config.best_crops;
            let t = &mut self.active[ti];
            self.last_ids.push(t.id);
            t.last_box = f.pixel_box;
            t.max_width = t.max_width.max(f.pixel_box.width());
            t.max_side = t.max_side.max(kenning_core::quality::face_pixels(
                f.pixel_box.width(),
                f.pixel_box.height(),
            ));
            t.sightings.push(Sighting {
                timestamp_ms,
                detail: f.detail.clone(),
            });
            let q = quality(f.detail, &f.pixel_box);
            if keep > 0 && (t.crops.len() < keep || t.crops.last().is_some_and(|c| c.0 < q)) {
                let image = crop(fi);
                let at = t.crops.partition_point(|c| c.0 >= q);
                t.crops.insert(at, (q, image));
                t.crops.truncate(keep);
            }
        }
        ended.sort_by_key(|t| t.id);
        ended
    }

    /// Ends every track (the video is over).
    pub fn finish(&mut self) -> Vec<Track> {
        let mut ended: Vec<Track> = self.active.drain(..).collect();
        ended.sort_by_key(|t| t.id);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kenning_core::{BoundingBox, ImageQuality, Pose};

    fn face(x: f64, w: f64) -> (FaceDetail, PixelBox) {
        let b = PixelBox {
            left: x,
            top: 100.0,
            right: x + w,
            bottom: 100.0 + w * 1.2,
        };
        let detail = FaceDetail {
            bounding_box: BoundingBox {
                width: (w / 1000.0) as f32,
                height: (w * 1.2 / 1000.0) as f32,
                left: (x / 1000.0) as f32,
                top: 0.1,
            },
            landmarks: Vec::new(),
            pose: Pose::default(),
            quality: ImageQuality::default(),
            confidence: 90.0,
        };
        (detail, b)
    }

    fn step(t: &mut Tracker, ms: u64, thumb: u8, faces: &[(FaceDetail, PixelBox)]) -> Vec<Track> {
        let detected: Vec<Detected<'_>> = faces
            .iter()
            .map(|(d, b)| Detected {
                detail: d,
                pixel_box: *b,
            })
            .collect();
        t.update(ms, vec![thumb; 576], &detected, |_| RgbImage::new(2, 2))
    }

    #[test]
    fn moving_faces_keep_their_tracks_and_a_cut_ends_them() {
        let mut t = Tracker::new(TrackerConfig::default());
        // Two faces walking right, 30 px per frame; they never swap.
        for k in 0..10u64 {
            let x = 30.0 * k as f64;
            let ended = step(
                &mut t,
                k * 200,
                100,
                &[face(100.0 + x, 80.0), face(400.0 + x, 60.0)],
            );
            assert!(ended.is_empty(), "frame {k}");
        }
        // A cut: the same places now hold other people.
        let ended = step(&mut t, 2000, 200, &[face(370.0, 80.0)]);
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|tr| tr.sightings.len() == 10));
        assert_eq!(ended[0].crops.len(), 3);
        let rest = t.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, 2);
    }

    #[test]
    fn a_face_gone_too_long_starts_a_new_track_and_sizes_must_agree() {
        let mut t = Tracker::new(TrackerConfig::default());
        step(&mut t, 0, 100, &[face(100.0, 80.0)]);
        assert_eq!(t.last_ids(), [0]);
        let ended = step(&mut t, 1500, 100, &[face(100.0, 80.0)]);
        assert_eq!(ended.len(), 1, "a 1.5 s gap ends the track");
        assert_eq!(t.last_ids(), [1]);
        // A much bigger face at the same place is someone else (or a zoom).
        let ended = step(&mut t, 1700, 100, &[face(90.0, 200.0)]);
        assert!(ended.is_empty());
        assert_eq!(t.finish().len(), 2);
    }
}
