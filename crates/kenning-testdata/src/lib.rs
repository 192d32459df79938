//! Where the tests find their inputs (`../shared/data` beside the clone and
//! the models folder), and the one rule for when one is missing.
//!
//! A missing input fails the test under CI (`CI=true`) or with
//! `KENNING_REQUIRE_DATA=1`. Otherwise the test skips: it prints one line to
//! the terminal (past libtest's output capture) and, when `KENNING_SKIP_LOG`
//! names a file, appends a record there, so `scripts/test.sh` can end the
//! suite with a count of what was skipped and why across all test binaries.
//!
//! Used only as a dev-dependency; it depends on nothing else in Kenning.

#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Overrides where `../shared/data` is looked for (set it to a missing path
/// to see what the suite does without the data).
pub const DATA_ENV: &str = "KENNING_TEST_DATA";
/// The models folder, as the product reads it.
pub const MODELS_ENV: &str = "KENNING_MODELS";
/// Set to 1 to make a missing input a failure outside CI too.
pub const REQUIRE_ENV: &str = "KENNING_REQUIRE_DATA";
/// A file each skip appends one line to: `test<TAB>reason`.
pub const SKIP_LOG_ENV: &str = "KENNING_SKIP_LOG";
/// The URL of the PostgreSQL server for the run (scripts/test.sh starts one
/// with scripts/postgres.sh).
pub const DATABASE_ENV: &str = "KENNING_TEST_DATABASE";

/// The workspace root.
pub fn workspace() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// Where `../shared/data` is expected: `$KENNING_TEST_DATA`, else beside
/// the workspace. It may not exist; [`data`] decides what that means.
pub fn data_dir() -> PathBuf {
    std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/data"))
}

/// The models folder: `$KENNING_MODELS`, else `<workspace>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os(MODELS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
}

/// Whether a missing input fails rather than skips: under CI (`CI` set to
/// anything but empty, 0, false or no) or with `KENNING_REQUIRE_DATA=1`.
pub fn required() -> bool {
    let on = |name: &str| {
        std::env::var(name).is_ok_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            !matches!(v.as_str(), "" | "0" | "false" | "no")
        })
    };
    on("CI") || on(REQUIRE_ENV)
}

/// `../shared/data` for `test`, or `None` once the skip is recorded.
/// Panics, naming what is missing, when [`required`].
pub fn data(test: &str) -> Option<PathBuf> {
    let dir = data_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    skip(
        test,
        &format!(
            "../shared/data is not present (looked in {})",
            dir.display()
        ),
    );
    None
}

/// The model file `name` in [`models_dir`] for `test`, or `None` once the
/// skip is recorded. Panics when [`required`] (the test command installs
/// the models before it runs the tests).
pub fn model(test: &str, name: &str) -> Option<PathBuf> {
    let path = models_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    skip(
        test,
        &format!(
            "model {name} is not installed (looked in {}; run scripts/setup-models.sh)",
            models_dir().display()
        ),
    );
    None
}

/// The run's PostgreSQL server URL for `test`, or `None` once the skip is
/// recorded. Panics when [`required`].
pub fn database(test: &str) -> Option<String> {
    match std::env::var(DATABASE_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(
                test,
                &format!(
                    "{DATABASE_ENV} is not set (scripts/test.sh starts PostgreSQL with \
                     scripts/postgres.sh and sets it to the primary's URL)"
                ),
            );
            None
        }
    }
}

/// Records that `test` skips because of `reason`, or panics with the reason
/// when skipping is not allowed. For skips decided elsewhere (pytest) too.
pub fn skip(test: &str, reason: &str) {
    let log = std::env::var_os(SKIP_LOG_ENV).map(PathBuf::from);
    // Straight to the stream: libtest captures eprintln! in passing tests.
    let mut terminal = std::io::stderr().lock();
    decide(required(), log.as_deref(), &mut terminal, test, reason);
}

fn decide(required: bool, log: Option<&Path>, terminal: &mut dyn Write, test: &str, reason: &str) {
    if required {
        panic!(
            "{test}: {reason}; CI=true or {REQUIRE_ENV}=1 makes this a failure \
             (put ../shared beside the clone, or unset both to skip)"
        );
    }
    let reason = reason.replace(['\t', '\n'], " ");
    // On a line of its own even when libtest has printed "test x ... ".
    let _ = writeln!(terminal, "\nskipped {test}: {reason}");
    if let Some(log) = log {
        // One write per record under O_APPEND, so test threads and test
        // binaries appending at once never interleave within a line.
        let line = format!("{test}\t{reason}\n");
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record the skip in {}: {e}", log.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_one_record_and_a_requirement_is_a_panic() {
        let dir = std::env::temp_dir().join(format!("kenning-testdata-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        let _ = std::fs::remove_file(&log);
        let mut terminal = Vec::new();
        decide(false, Some(&log), &mut terminal, "a::one", "x is\tmissing");
        decide(false, Some(&log), &mut terminal, "b::two", "y is missing");
        decide(false, None, &mut terminal, "c::three", "not recorded");
        assert_eq!(
            String::from_utf8(terminal).unwrap(),
            "\nskipped a::one: x is missing\n\nskipped b::two: y is missing\n\nskipped c::three: not recorded\n"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a::one\tx is missing\nb::two\ty is missing\n"
        );
        let panic = std::panic::catch_unwind(|| {
            decide(true, Some(&log), &mut Vec::new(), "d::four", "z is missing")
        })
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("d::four: z is missing; CI=true"),
            "{message}"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
