//! The service facing a network: secrets kept out of logs, API tokens
//! separate from SigV4 secrets.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common;
use crate::server::{create_token, http, json, now, signed, Server, KEY_ID, SECRET};

/// Runs `tests/python/<script>` from the test venv with `env`; its stdout.
pub(crate) fn python_script(script: &str, env: &[(&str, &str)]) -> String {
    let root = common::root();
    let out = Command::new(root.join(".cache/venv-test/bin/python"))
        .arg(root.join("tests/python").join(script))
        .envs(env.iter().copied())
        .output()
        .expect("the test venv: run scripts/setup-test-python.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{stdout}");
    stdout
}

#[test]
fn a_generated_root_secret_never_reaches_a_log() {
    let data = common::temp_path("root");
    let child = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env_remove("KENNING_ACCESS_KEY_ID")
        .env_remove("KENNING_SECRET_ACCESS_KEY")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l);
    }
    let addr = lines[0].trim().rsplit("://").next().unwrap().to_owned();
    let stdout = lines.concat();
    let file = data.join("root-credentials.json");
    let creds = json(&std::fs::read_to_string(&file).unwrap());
    let (id, secret) = (
        creds["AccessKeyId"].as_str().unwrap().to_owned(),
        creds["SecretAccessKey"].as_str().unwrap().to_owned(),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        stdout.contains(&id) && stdout.contains("root-credentials.json"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&secret),
        "the secret was printed to a pipe"
    );
    // A token for the root key works on the REST API; the secret does not.
    let token = create_token(&data, &id);
    let get = |auth: String| {
        http(
            &addr,
            "GET",
            "/v1/collections",
            &[("authorization", auth)],
            b"",
        )
    };
    assert_eq!(get(format!("Bearer {token}")).0, 200);
    assert_eq!(get(format!("Bearer {secret}")).0, 403);
    let listed = Command::new(common::kenning_bin())
        .args(["keys", "token", "list", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let token_id = token.split('_').nth(1).unwrap();
    assert!(
        listed.contains(token_id) && !listed.contains(&token),
        "{listed}"
    );
    let revoked = Command::new(common::kenning_bin())
        .args(["keys", "token", "revoke", token_id, "--data"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(revoked.success());
    assert_eq!(get(format!("Bearer {token}")).0, 403);
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains(&secret), "the secret reached the log");
    assert!(!stderr.contains(&token), "a token reached the log");
}

#[test]
fn per_key_throttling_is_retried_by_botocore_and_slow_headers_are_cut_off() {
    use std::io::{Read, Write};
    // A slow rate, so ten calls in a row are throttled even when the
    // machine is so loaded that each call takes a second.
    let server = Server::start(&[
        "--key-rate",
        "0.5",
        "--key-burst",
        "2",
        "--header-timeout",
        "1",
    ]);
    let endpoint = format!("http://{}", server.addr);
    python_script(
        "throttle_retry.py",
        &[
            ("KENNING_ENDPOINT", &endpoint),
            ("KENNING_TEST_KEY_ID", KEY_ID),
            ("KENNING_TEST_SECRET", SECRET),
        ],
    );
    // A client that never finishes its headers is disconnected.
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "the connection stayed open {:?}",
        start.elapsed()
    );
    assert!(server.terminate().success());
}

#[test]
fn metrics_stay_parseable_and_bounded_under_hostile_traffic() {
    let server = Server::start(&["--key-rate", "0"]);
    let token = create_token(&server.data, KEY_ID);
    let endpoint = format!("http://{}", server.addr);
    python_script(
        "metrics_check.py",
        &[
            ("KENNING_ENDPOINT", &endpoint),
            ("KENNING_TEST_TOKEN", &token),
        ],
    );
    assert!(server.terminate().success());
}

#[test]
fn collection_arns_start_with_arn_as_aws_writes_them() {
    let server = Server::start(&[]);
    let key = (KEY_ID, SECRET);
    let body = r#"{"CollectionId":"arn-check"}"#;
    let (status, _, text) = signed(&server.addr, "CreateCollection", body, key, now());
    assert_eq!(status, 200, "{text}");
    let want = "arn:aws:rekognition:local:000000000000:collection/arn-check";
    assert_eq!(json(&text)["CollectionArn"], want);
    // DescribeCollection spells the field CollectionARN, as botocore's model does.
    let (_, _, text) = signed(&server.addr, "DescribeCollection", body, key, now());
    assert_eq!(json(&text)["CollectionARN"], want, "{text}");
    assert!(server.terminate().success());
}
