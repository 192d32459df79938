use kenning_core::{Point, Pose};

/// Nose-tip depth in front of the eye plane, as a fraction of the distance
/// between the eye centres (anthropometric average, ~35 mm over ~63 mm).
const NOSE_DEPTH: f64 = 0.55;
/// Where the nose tip sits between the eye line (0) and the mouth line (1)
/// in a frontal face: the median over 670 CelebA faces
/// (scripts/dev/fit-box-mapping.py).
const FRONTAL_NOSE_HEIGHT: f64 = 0.57;

/// Estimates head pose from five points (eye centres image-left then
/// image-right, nose tip, mouth corners image-left then image-right) with a
/// rigid-face model: roll from the eye line, yaw and pitch from where the
/// nose tip sits relative to the eyes and mouth. An estimate, good to about
/// ten degrees near frontal; it saturates towards profile views.
pub fn estimate(points: &[Point; 5]) -> Pose {
    let [el, er, nose, ml, mr] = *points;
    let roll = (er.y - el.y).atan2(er.x - el.x);
    // Undo the roll about the eye midpoint so yaw and pitch are read along
    // the face's own axes.
    let eye_mid = mid(el, er);
    let (sin, cos) = (-roll).sin_cos();
    let level = |p: Point| {
        let (dx, dy) = (p.x - eye_mid.x, p.y - eye_mid.y);
        Point::new(dx * cos - dy * sin, dx * sin + dy * cos)
    };
    let (el, er, nose, mouth) = (level(el), level(er), level(nose), level(mid(ml, mr)));
    let eye_dist = (er.x - el.x).abs().max(1e-6);
    let yaw = (nose.x - mouth.x / 2.0).atan2(NOSE_DEPTH * eye_dist);
    let eye_mouth = mouth.y.abs().max(1e-6);
    let pitch = ((FRONTAL_NOSE_HEIGHT - nose.y / eye_mouth) * eye_mouth)
        .atan2(NOSE_DEPTH * eye_dist / yaw.cos().max(0.2));
    Pose {
        roll: roll.to_degrees() as f32,
        yaw: yaw.to_degrees() as f32,
        pitch: pitch.to_degrees() as f32,
    }
}

fn mid(a: Point, b: Point) -> Point {
    Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontal() -> [Point; 5] {
        [
            Point::new(40.0, 50.0),
            Point::new(80.0, 50.0),
            Point::new(60.0, 50.0 + FRONTAL_NOSE_HEIGHT * 40.0),
            Point::new(45.0, 90.0),
            Point::new(75.0, 90.0),
        ]
    }

    #[test]
    fn frontal_face_is_level() {
        let p = estimate(&frontal());
        assert!(
            p.roll.abs() < 1e-3 && p.yaw.abs() < 1e-3 && p.pitch.abs() < 1e-3,
            "{p:?}"
        );
    }

    #[test]
    fn rotation_in_plane_is_roll_only() {
        let (s, c) = 20f64.to_radians().sin_cos();
        let rotated = frontal().map(|p| Point::new(p.x * c - p.y * s, p.x * s + p.y * c));
        let p = estimate(&rotated);
        assert!((p.roll - 20.0).abs() < 1e-3, "{p:?}");
        assert!(p.yaw.abs() < 1e-3 && p.pitch.abs() < 1e-3, "{p:?}");
    }

    #[test]
    fn nose_to_the_right_is_positive_yaw_and_nose_up_is_positive_pitch() {
        let mut f = frontal();
        f[2].x += 10.0;
        assert!(estimate(&f).yaw > 15.0);
        let mut f = frontal();
        f[2].y -= 8.0;
        assert!(estimate(&f).pitch > 10.0);
    }
}
