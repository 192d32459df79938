//! Rekognition's collection, face and user operations on real photos,
//! through the library the CLI and the service share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kenning_collections::{Collections, QualityFilter, Reason};
use kenning_core::{ErrorCode, WireError};
use kenning_models::{LoadedManifest, Pipeline, PipelineConfig};

use crate::common;

fn code<T: std::fmt::Debug>(r: kenning_collections::Result<T>) -> ErrorCode {
    r.expect_err("expected an error").code()
}

/// deepface's photos grouped by identity, in file order.
fn people(data: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let dir = data.join("identity/deepface");
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("identities.csv"))
        .unwrap()
        .lines()
        .skip(1)
    {
        let (file, id) = line.split_once(',').unwrap();
        out.entry(id.trim().to_owned())
            .or_default()
            .push(dir.join(file.trim()));
    }
    out
}

#[test]
fn collections_faces_and_users_behave_as_rekognition() {
    let Some(data) = common::data("collections_faces_and_users_behave_as_rekognition") else {
        return;
    };
    let dir = common::temp_path("coll-ops");
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();

    // Collections.
    let created = c.create_collection("people", "{}").unwrap();
    assert_eq!(created.status_code, 200);
    assert_eq!(created.face_model_version, "dlib-resnet-v1");
    assert_eq!(
        code(c.create_collection("people", "{}")),
        ErrorCode::ResourceAlreadyExistsException
    );
    assert_eq!(
        code(c.create_collection("bad id!", "{}")),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(c.describe_collection("nobody")),
        ErrorCode::ResourceNotFoundException
    );
    c.create_collection("other", "{}").unwrap();
    let listed = c.list_collections(None, Some(1)).unwrap();
    assert_eq!(listed.collection_ids, ["other"]);
    let rest = c
        .list_collections(listed.next_token.as_deref(), Some(1))
        .unwrap();
    assert_eq!(rest.collection_ids, ["people"]);

    // IndexFaces: one photo per person as the gallery.
    let people = people(&data);
    let mut gallery: BTreeMap<String, String> = BTreeMap::new(); // identity -> FaceId
    for (id, photos) in &people {
        let r = c
            .index_faces(
                "people",
                &std::fs::read(&photos[0]).unwrap(),
                Some(id),
                Some(1),
                QualityFilter::Auto,
            )
            .unwrap();
        assert_eq!(r.face_records.len(), 1, "{id}: {:?}", r.unindexed_faces);
        let face = &r.face_records[0].face;
        assert_eq!(face.external_image_id.as_deref(), Some(id.as_str()));
        assert_eq!(face.face_id.len(), 36);
        gallery.insert(id.clone(), face.face_id.clone());
    }
    let group = data.join("misc/deepface/selfie-many-people.jpg");
    let r = c
        .index_faces(
            "other",
            &std::fs::read(&group).unwrap(),
            None,
            Some(2),
            QualityFilter::None,
        )
        .unwrap();
    assert_eq!(r.face_records.len(), 2);
    assert!(!r.unindexed_faces.is_empty());
    assert!(r
        .unindexed_faces
        .iter()
        .all(|u| u.reasons == [Reason::ExceedsMaxFaces]));
    let area = |b: &kenning_core::BoundingBox| b.width * b.height;
    let smallest_kept = r
        .face_records
        .iter()
        .map(|f| area(&f.face.bounding_box))
        .fold(f32::MAX, f32::min);
    assert!(
        r.unindexed_faces
            .iter()
            .all(|u| area(&u.face_detail.bounding_box) <= smallest_kept),
        "the largest are kept"
    );
    assert_eq!(
        code(c.index_faces("people", b"not an image", None, None, QualityFilter::Auto)),
        ErrorCode::InvalidImageFormatException
    );
    assert_eq!(
        code(c.index_faces("people", &[], None, Some(0), QualityFilter::Auto)),
        ErrorCode::InvalidParameterException
    );

    // DescribeCollection reports what the default threshold means at this size.
    let d = c.describe_collection("people").unwrap();
    assert_eq!(d.face_count, people.len() as u64);
    let e = &d.false_match_estimate;
    assert_eq!(e.threshold, 80.0);
    assert!((e.false_match_rate - 1e-4).abs() < 1e-12);
    assert!((e.expected_false_matches - people.len() as f64 * 1e-4).abs() < 1e-9);

    // SearchFacesByImage: other photos of each person find that person first.
    let (mut probes, mut top1) = (0, 0);
    for (id, photos) in &people {
        for photo in photos.iter().skip(1).take(2) {
            let r = c
                .search_faces_by_image(
                    "people",
                    &std::fs::read(photo).unwrap(),
                    Some(0.0),
                    Some(3),
                    QualityFilter::None,
                )
                .unwrap();
            assert!(
                r.face_matches
                    .windows(2)
                    .all(|w| w[0].similarity >= w[1].similarity),
                "sorted by Similarity"
            );
            probes += 1;
            top1 += usize::from(
                r.face_matches.first().map(|m| m.face.face_id.as_str())
                    == gallery.get(id).map(String::as_str),
            );
        }
    }
    eprintln!("collections: {top1}/{probes} probes find their person first");
    assert!(top1 as f64 >= 0.8 * probes as f64, "{top1}/{probes}");
    let strict = c
        .search_faces_by_image(
            "people",
            &std::fs::read(&people.values().next().unwrap()[1]).unwrap(),
            Some(99.0),
            None,
            QualityFilter::None,
        )
        .unwrap();
    assert!(strict.face_matches.iter().all(|m| m.similarity >= 99.0));
    assert_eq!(
        code(c.search_faces_by_image(
            "people",
            &std::fs::read(&group).unwrap(),
            Some(101.0),
            None,
            QualityFilter::None
        )),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(c.search_faces_by_image(
            "people",
            &std::fs::read(&group).unwrap(),
            None,
            Some(4097),
            QualityFilter::None
        )),
        ErrorCode::InvalidParameterException
    );

    // SearchFaces by FaceId never returns the face itself.
    let any = gallery.values().next().unwrap();
    let r = c
        .search_faces("people", any, Some(0.0), Some(4096))
        .unwrap();
    assert_eq!(r.face_matches.len(), people.len() - 1);
    assert!(r.face_matches.iter().all(|m| &m.face.face_id != any));
    assert_eq!(
        code(c.search_faces("people", "00000000-0000-4000-8000-000000000000", None, None)),
        ErrorCode::ResourceNotFoundException
    );

    // ListFaces pages through everything exactly once.
    let (mut seen, mut token) = (Vec::new(), None::<String>);
    loop {
        let page = c
            .list_faces("people", None, token.as_deref(), Some(5))
            .unwrap();
        assert!(page.faces.len() <= 5);
        seen.extend(page.faces.into_iter().map(|f| f.face_id));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    let mut expected: Vec<String> = gallery.values().cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);

    // Users.
    let mut ids = gallery.iter();
    let (first_person, first_face) = ids.next().unwrap();
    let (_, second_face) = ids.next().unwrap();
    c.create_user("people", "u1").unwrap();
    c.create_user("people", "u2").unwrap();
    assert_eq!(
        code(c.create_user("people", "u1")),
        ErrorCode::ConflictException
    );
    let a = c
        .associate_faces("people", "u1", std::slice::from_ref(first_face))
        .unwrap();
    assert_eq!(a.associated_faces.len(), 1);
    assert_eq!(a.user_status, "ACTIVE");
    let a = c
        .associate_faces("people", "u2", &[first_face.clone(), second_face.clone()])
        .unwrap();
    assert_eq!(a.associated_faces.len(), 1);
    assert_eq!(
        a.unsuccessful_face_associations[0].reasons,
        ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    );
    let users = c.list_users("people", None, None).unwrap();
    assert_eq!(users.users.len(), 2);
    let probe = std::fs::read(&people[first_person][1]).unwrap();
    let found = c
        .search_users_by_image("people", &probe, Some(0.0), Some(2), QualityFilter::None)
        .unwrap();
    assert_eq!(found.user_matches[0].user.user_id, "u1");
    let by_user = c
        .search_users("people", Some("u2"), None, Some(0.0), Some(5))
        .unwrap();
    assert!(by_user.user_matches.iter().all(|m| m.user.user_id != "u2"));
    assert_eq!(
        c.list_faces("people", Some("u1"), None, None)
            .unwrap()
            .faces
            .len(),
        1
    );

    // DeleteFaces: a face with a user is refused, an unknown one not found.
    let unknown = "00000000-0000-4000-8000-000000000000".to_string();
    let del = c
        .delete_faces("people", &[first_face.clone(), unknown.clone()])
        .unwrap();
    assert!(del.deleted_faces.is_empty());
    let reasons: Vec<&str> = del
        .unsuccessful_face_deletions
        .iter()
        .map(|u| u.reasons[0].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["ASSOCIATED_TO_AN_EXISTING_USER", "FACE_NOT_FOUND"]
    );
    let dis = c
        .disassociate_faces("people", "u1", std::slice::from_ref(first_face))
        .unwrap();
    assert_eq!(dis.user_status, "CREATED");
    let del = c
        .delete_faces("people", std::slice::from_ref(first_face))
        .unwrap();
    assert_eq!(del.deleted_faces, std::slice::from_ref(first_face));
    let after = c
        .search_faces_by_image("people", &probe, Some(0.0), Some(4096), QualityFilter::None)
        .unwrap();
    assert!(
        after
            .face_matches
            .iter()
            .all(|m| &m.face.face_id != first_face),
        "a deleted face is never returned"
    );
    c.delete_user("people", "u2").unwrap();
    assert_eq!(
        code(c.delete_user("people", "u2")),
        ErrorCode::ResourceNotFoundException
    );

    // The saved index is used after a reopen, and rebuilt when damaged.
    drop(c);
    let index_file = dir.join("index/people.kix");
    assert!(index_file.is_file());
    let hits = |c: &Collections| -> Vec<(String, f32)> {
        c.search_faces_by_image("people", &probe, Some(0.0), Some(4096), QualityFilter::None)
            .unwrap()
            .face_matches
            .into_iter()
            .map(|m| (m.face.face_id, m.similarity))
            .collect()
    };
    let saved = std::fs::read(&index_file).unwrap();
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    let again = hits(&c);
    assert_eq!(again.len(), people.len() - 1);
    assert!(
        std::fs::read(&index_file).unwrap() == saved,
        "a sound index is used as saved"
    );
    let stored = c.store().face_embedding("people", second_face).unwrap().1;
    drop(c);
    let mut bytes = saved.clone();
    common::corrupt_vector(&mut bytes, &stored);
    std::fs::write(&index_file, &bytes).unwrap();
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    assert_eq!(
        hits(&c),
        again,
        "the rebuilt index finds the same faces, as similar"
    );
    assert!(
        std::fs::read(&index_file).unwrap() != bytes,
        "the damaged file was not rewritten"
    );
    assert!(loads_as_current(&c, "people", &index_file));

    // DeleteCollection removes records and the index file.
    assert_eq!(c.delete_collection("people").unwrap(), 200);
    assert_eq!(
        code(c.describe_collection("people")),
        ErrorCode::ResourceNotFoundException
    );
    assert!(!index_file.exists());
    drop(c);
}

#[test]
fn a_collection_refuses_another_recognisers_vectors() {
    let Some(data) = common::data("a_collection_refuses_another_recognisers_vectors") else {
        return;
    };
    let dir = common::temp_path("coll-model");
    let photo = std::fs::read(data.join("misc/face_recognition/obama.jpg")).unwrap();
    // A collection made by a recogniser loaded from a manifest file...
    let manifest = common::root().join("crates/kenning-cli/tests/manifests/faceplugin-fr.json");
    let mut config = PipelineConfig::new(common::models());
    config.recogniser = Some(LoadedManifest::from_file(&manifest).unwrap());
    config.sessions = 1;
    let other = Collections::open(&dir, Arc::new(Pipeline::load(config).unwrap())).unwrap();
    other.create_collection("made-by-faceplugin", "{}").unwrap();
    other
        .index_faces(
            "made-by-faceplugin",
            &photo,
            None,
            None,
            QualityFilter::Auto,
        )
        .unwrap();
    drop(other);
    // ...is refused by a service that does not run that recogniser: its
    // vectors are comparable with no other model's.
    let dlib = Collections::open(&dir, common::pipeline().clone()).unwrap();
    let err = dlib
        .index_faces(
            "made-by-faceplugin",
            &photo,
            None,
            None,
            QualityFilter::Auto,
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    assert!(err.to_string().contains("faceplugin-fr-feature"), "{err}");
    let err = dlib
        .search_faces_by_image(
            "made-by-faceplugin",
            &photo,
            None,
            None,
            QualityFilter::None,
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    drop(dlib);
}

/// Every search's (FaceId, Similarity) list, for exact comparison.
fn results(c: &Collections, collection: &str, probes: &[String]) -> Vec<Vec<(String, f32)>> {
    probes
        .iter()
        .map(|p| {
            c.search_faces(collection, p, Some(0.0), Some(4096))
                .unwrap()
                .face_matches
                .into_iter()
                .map(|m| (m.face.face_id, m.similarity))
                .collect()
        })
        .collect()
}

/// The index file loads as the current one: it matches the store's
/// generation and face count, so the next open uses it as it is.
fn loads_as_current(c: &Collections, collection: &str, path: &Path) -> bool {
    let d = c.store().describe_collection(collection).unwrap();
    let expect = kenning_index::Expect {
        dim: Some(d.dim as usize),
        metric: None,
        count: Some(d.face_count as usize),
        generation: Some(d.generation),
    };
    kenning_index::Index::load(path, &expect).is_ok()
}

/// The saved index is a cache: truncated, corrupted, removed or left from
/// an older generation, it is rebuilt from the store and saved again, and
/// every search gives exactly what it gave before (no photos needed).
#[test]
fn a_damaged_missing_or_stale_index_is_rebuilt_to_the_same_results() {
    let dir = common::temp_path("coll-rebuild");
    let path = dir.join("index/synthetic.kix");
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    c.create_collection("synthetic", "{}").unwrap();
    let dim = c.store().describe_collection("synthetic").unwrap().dim as usize;
    // 300 people, each a second time slightly moved, so searches find
    // someone near and the rest far.
    let vectors: Vec<Vec<f32>> = (0..300u64)
        .flat_map(|i| {
            let v = common::unit_vector(dim, i);
            let mut w = v.clone();
            w[(i as usize) % dim] += 0.05;
            [v, w]
        })
        .collect();
    let ids = common::import_faces(c.store(), "synthetic", &vectors, None);
    drop(c);
    let probes: Vec<String> = ids.iter().step_by(37).cloned().collect();
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    results(&c, "synthetic", &probes);
    drop(c);
    // The index as saved before the store moved on by one more face.
    let stale = std::fs::read(&path).expect("the first search saves the index");
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    common::import_faces(
        c.store(),
        "synthetic",
        &[common::unit_vector(dim, 999)],
        None,
    );
    drop(c);
    let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
    let before = results(&c, "synthetic", &probes);
    assert!(
        before.iter().all(|r| r.len() == ids.len()),
        "every other face"
    );
    // The nearly-same copy comes first, far above everyone else.
    for (probe, r) in probes.iter().zip(&before) {
        let i = ids.iter().position(|id| id == probe).unwrap();
        assert_eq!(r[0].0, ids[i ^ 1], "{probe}");
        assert!(r[0].1 > 90.0 && r[1].1 < 50.0, "{:?}", &r[..2]);
    }
    drop(c);
    let good = std::fs::read(&path).unwrap();
    assert!(good != stale);

    for what in ["truncated", "corrupted", "removed", "stale"] {
        match what {
            "truncated" => std::fs::write(&path, &good[..good.len() / 2]).unwrap(),
            "corrupted" => {
                let mut b = good.clone();
                common::corrupt_vector(&mut b, &vectors[42]);
                std::fs::write(&path, b).unwrap();
            }
            "removed" => std::fs::remove_file(&path).unwrap(),
            _ => std::fs::write(&path, &stale).unwrap(),
        }
        let damaged = std::fs::read(&path).ok();
        let c = Collections::open(&dir, common::pipeline().clone()).unwrap();
        assert_eq!(
            results(&c, "synthetic", &probes),
            before,
            "{what}: results changed"
        );
        assert!(
            std::fs::read(&path).ok() != damaged,
            "{what}: index file not rewritten"
        );
        assert!(
            loads_as_current(&c, "synthetic", &path),
            "{what}: the rebuilt file does not load"
        );
        drop(c);
    }
}

/// At most 100 faces come out of an image, the largest ones: a mosaic of 48
/// large and 84 small copies of one face gives 100 detections, every large
/// one among them, and IndexFaces indexes 100 and refuses MaxFaces 101.
#[test]
fn at_most_the_100_largest_faces_of_an_image() {
    let Some(data) = common::data("collections::at_most_the_100_largest_faces_of_an_image") else {
        return;
    };
    let portrait = common::load(&data.join("misc/face_recognition/obama.jpg"));
    // The face with some margin (measured on this 910x1137 portrait).
    let face = image::imageops::crop_imm(&portrait, 300, 100, 390, 390).to_image();
    let (big, small) = (
        kenning_image::resize_bilinear(&face, 110, 110),
        kenning_image::resize_bilinear(&face, 80, 80),
    );
    let mut mosaic = kenning_image::RgbImage::from_pixel(1320, 1000, image::Rgb([128, 128, 128]));
    for i in 0..48u32 {
        image::imageops::replace(
            &mut mosaic,
            &big,
            i64::from(i % 12 * 110),
            i64::from(i / 12 * 110),
        );
    }
    for i in 0..84u32 {
        image::imageops::replace(
            &mut mosaic,
            &small,
            i64::from(i % 12 * 80),
            i64::from(440 + i / 12 * 80),
        );
    }
    let mut config = kenning_models::PipelineConfig::new(common::models());
    config.detector.max_side = 1344; // the mosaic at its own size
    let pipeline = Arc::new(Pipeline::load(config).unwrap());

    // All 132 are findable: the small ones alone give 84.
    let lower = image::imageops::crop_imm(&mosaic, 0, 440, 1320, 560).to_image();
    assert_eq!(pipeline.detect(&lower).unwrap().len(), 84);
    let faces = pipeline.detect(&mosaic).unwrap();
    assert_eq!(faces.len(), 100);
    let mut widths: Vec<f32> = faces
        .iter()
        .map(|f| f.detail.bounding_box.width * 1320.0)
        .collect();
    widths.sort_by(f32::total_cmp);
    // Faces of the large tiles are ~66 px wide, of the small ones ~49.
    let large = widths.iter().filter(|w| **w > 58.0).count();
    assert_eq!(large, 48, "the largest faces are kept: {widths:?}");

    let dir = common::temp_path("coll-cap");
    let c = Collections::open(&dir, pipeline).unwrap();
    c.create_collection("crowd", "{}").unwrap();
    let mut png = Vec::new();
    mosaic
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    assert_eq!(
        code(c.index_faces("crowd", &png, None, Some(101), QualityFilter::None)),
        ErrorCode::InvalidParameterException
    );
    let r = c
        .index_faces("crowd", &png, None, None, QualityFilter::None)
        .unwrap();
    assert_eq!(r.face_records.len(), 100);
    assert_eq!(c.describe_collection("crowd").unwrap().face_count, 100);
    drop(c);
}
