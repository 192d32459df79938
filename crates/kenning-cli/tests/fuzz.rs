//! The wire fuzzed, bounded for CI: Schemathesis generates requests from
//! /openapi.json against the REST API, and tests/fuzz/json11_fuzz.py sends
//! randomly mutated botocore-valid bodies to every AWS JSON 1.1 operation.
//! No 5xx, no hang, the server still answering, its memory bounded.
//! `KENNING_FUZZ_SECONDS` (default 30 per fuzzer) and `KENNING_FUZZ_SEED`
//! (default 1) set the run; docs/security.md has a long run's numbers.

use std::process::Command;

use crate::common;
use crate::server::{create_token, http, Server, KEY_ID, SECRET};

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: {e} (the test venv: run scripts/setup-test-python.sh)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what}:\n{stdout}{stderr}");
    assert!(out.status.success(), "{what} failed:\n{stdout}{stderr}");
    stdout
}

#[test]
fn fuzzed_requests_get_no_server_error_hang_or_unbounded_memory() {
    let seconds = std::env::var("KENNING_FUZZ_SECONDS").unwrap_or_else(|_| "30".into());
    let seed = std::env::var("KENNING_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let work = common::temp_dir("fuzz");
    let bucket = work.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    // A bucket, so the video operations run instead of being unknown.
    let server = Server::start(&["--bucket", &format!("fuzz={}", bucket.display())]);
    let token = create_token(&server.data, KEY_ID);
    let venv = common::root().join(".cache/venv-test/bin");

    let json11 = run(
        "json11_fuzz.py",
        Command::new(venv.join("python"))
            .arg(common::root().join("tests/fuzz/json11_fuzz.py"))
            .args(["--seconds", &seconds, "--seed", &seed])
            .env("KENNING_ENDPOINT", server.endpoint())
            .env("KENNING_TEST_KEY_ID", KEY_ID)
            .env("KENNING_TEST_SECRET", SECRET),
    );
    let summary: serde_json::Value =
        serde_json::from_str(json11.lines().last().unwrap_or("")).unwrap();
    assert!(
        summary["requests"].as_u64().unwrap() >= 100,
        "too few requests to mean anything: {summary}"
    );

    // Every generated request (valid and invalid, by the schema) answered
    // without a 5xx; Schemathesis exits non-zero on any failed check.
    run(
        "schemathesis",
        Command::new(venv.join("schemathesis"))
            .current_dir(&work)
            .args(["run", &format!("{}/openapi.json", server.endpoint())])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error", "--max-time", &seconds])
            .args(["--seed", &seed, "--workers", "1", "--request-timeout", "60"])
            .args(["--generation-database", "none", "--no-color"]),
    );

    let (status, _, body) = http(&server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "the server stopped answering: {body}");
    // The models take about 0.5 GiB; a leak or an unbounded buffer would
    // show here.
    let peak = peak_rss_mib(server.pid());
    eprintln!("server peak RSS after fuzzing: {peak} MiB");
    assert!(peak < 1536, "server peak RSS {peak} MiB");
    assert!(server.terminate().success());
}
