//! `kenning serve --tls-cert --tls-key`: boto3 and the aws CLI trusting a
//! development certificate, SigV4 over HTTP/2 (curl), reload on SIGHUP, and
//! the warning for plain HTTP on a non-loopback address.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;
use crate::server::{Server, KEY_ID, SECRET};
use crate::wire::python_script;

/// `kenning tls dev-cert --out DIR`: (cert.pem, key.pem).
fn dev_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(common::kenning_bin())
        .args(["tls", "dev-cert", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    }
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The certificate the server presents, as PEM (Python's ssl module).
fn presented(addr: &str, python: &Path) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new(python)
        .args([
            "-c",
            "import ssl,sys; print(ssl.get_server_certificate((sys.argv[1], int(sys.argv[2]))))",
            host,
            port,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn curl_sigv4_http2(addr: &str, ca: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(ca)
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:rekognition",
            "--user",
            &format!("{KEY_ID}:{SECRET}"),
            "-H",
            "x-amz-target: RekognitionService.ListCollections",
            "-H",
            "content-type: application/x-amz-json-1.1",
            "-d",
            "{}",
            "-w",
            "\n%{http_code} %{http_version}",
            &format!("https://{addr}/"),
        ])
        .output()
        .expect("curl (Debian package curl) is needed for the HTTP/2 check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), status.to_owned())
}

#[test]
fn tls_serves_boto3_aws_cli_and_http2_and_reloads_on_sighup() {
    let python = common::test_python();
    let certs = common::temp_path("tls");
    let (cert, key) = dev_cert(&certs);
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = server.addr.clone();

    let endpoint = format!("https://{addr}");
    python_script(
        "tls_clients.py",
        &[
            ("KENNING_ENDPOINT", &endpoint),
            ("KENNING_TEST_KEY_ID", KEY_ID),
            ("KENNING_TEST_SECRET", SECRET),
            ("KENNING_TEST_CA", cert.to_str().unwrap()),
        ],
    );

    // SigV4 over HTTP/2, where the host is the :authority pseudo-header.
    let (body, status) = curl_sigv4_http2(&addr, &cert);
    assert_eq!(status, "200 2", "{body}");
    assert!(body.contains("CollectionIds"), "{body}");

    // A renewed certificate is served after SIGHUP; a broken one is not.
    let first = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(presented(&addr, &python), first.trim());
    let renewed = certs.join("renewed");
    let (cert2, key2) = dev_cert(&renewed);
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    hup(server.pid());
    let second = std::fs::read_to_string(&cert2).unwrap();
    assert_ne!(first, second);
    assert_eq!(presented(&addr, &python), second.trim());
    std::fs::write(&key, "not a key").unwrap();
    hup(server.pid());
    assert_eq!(
        presented(&addr, &python),
        second.trim(),
        "a broken key file must leave the certificate in use"
    );
    let (_, status) = curl_sigv4_http2(&addr, &cert2);
    assert_eq!(status, "200 2");
    assert!(server.terminate().success());

    // A key that does not match the certificate is refused at start.
    let out = Command::new(common::kenning_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data")
        .arg(certs.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_http_on_a_non_loopback_address_warns() {
    let data = common::temp_path("plain");
    let child = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .env("KENNING_ACCESS_KEY_ID", KEY_ID)
        .env("KENNING_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    drop(child);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARNING: serving plain HTTP") && l.contains("in clear")),
        "{lines:?}"
    );
}
