//! The CLI finds its models from any working directory: next to the
//! executable, in the per-user data directory, or where `--models` /
//! `KENNING_MODELS` say, with a clear error naming every folder it tried.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

/// A copy of the `kenning` binary in `dir` (a hard link when the file system
/// allows), so that "next to the executable" is a folder the test controls.
fn install_binary(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let bin = dir.join("kenning");
    if std::fs::hard_link(common::kenning_bin(), &bin).is_err() {
        std::fs::copy(common::kenning_bin(), &bin).unwrap();
    }
    bin
}

fn link_models(at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(common::models(), at).unwrap();
}

/// Runs `bin` from a working directory without models, with a private home
/// and data directory and no KENNING_MODELS.
struct Sandbox {
    base: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("model-lookup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for d in ["cwd", "home", "data"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        Sandbox { base }
    }

    fn user_models(&self) -> PathBuf {
        self.base.join("data/kenning/models")
    }

    fn run(&self, bin: &Path, args: &[&str], models_env: Option<&Path>) -> Output {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.base.join("cwd"))
            .env_remove("KENNING_MODELS")
            .env("HOME", self.base.join("home"))
            .env("XDG_DATA_HOME", self.base.join("data"));
        if let Some(m) = models_env {
            cmd.env("KENNING_MODELS", m);
        }
        cmd.output().expect("running kenning")
    }

    /// `kenning models path`, which must succeed.
    fn models_path(&self, bin: &Path, models_env: Option<&Path>) -> PathBuf {
        let out = self.run(bin, &["models", "path"], models_env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[test]
fn models_are_found_from_any_working_directory() {
    let sb = Sandbox::new();
    let release = sb.base.join("release");
    let bin = install_binary(&release);

    // Nothing installed: the error says where it looked and what to do.
    let out = sb.run(&bin, &["models", "path"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for place in [release.join("models"), sb.user_models()] {
        assert!(
            stderr.contains(&place.display().to_string()),
            "{} not named in: {stderr}",
            place.display()
        );
    }
    assert!(stderr.contains("KENNING_MODELS"), "{stderr}");

    // The per-user data directory.
    link_models(&sb.user_models());
    assert_eq!(sb.models_path(&bin, None), sb.user_models());
    // ... and the pipeline really loads from there: a blank image has no faces.
    let blank = sb.base.join("cwd/blank.png");
    image::RgbImage::from_pixel(96, 96, image::Rgb([128, 128, 128]))
        .save(&blank)
        .unwrap();
    let out = sb.run(&bin, &["detect", "blank.png"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["FaceDetails"], serde_json::json!([]), "{line}");

    // models/ next to the executable comes before the per-user folder.
    link_models(&release.join("models"));
    assert_eq!(sb.models_path(&bin, None), release.join("models"));

    // A /usr/local-style install: PREFIX/bin/kenning, PREFIX/share/kenning/models.
    let prefix = sb.base.join("prefix");
    let installed = install_binary(&prefix.join("bin"));
    link_models(&prefix.join("share/kenning/models"));
    assert_eq!(
        sb.models_path(&installed, None),
        prefix.join("share/kenning/models")
    );

    // An explicit folder wins over every installed one, and is used as given:
    // a wrong one fails on the missing model instead of falling back.
    let explicit = sb.base.join("explicit");
    assert_eq!(sb.models_path(&bin, Some(&explicit)), explicit);
    let out = sb.run(&bin, &["detect", "blank.png"], Some(&explicit));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&explicit.display().to_string()) && stderr.contains("not found"),
        "{stderr}"
    );
    let flag = sb.run(
        &bin,
        &["--models", explicit.to_str().unwrap(), "models", "path"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&flag.stdout).trim(),
        explicit.to_str().unwrap()
    );
}
