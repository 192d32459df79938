//! The service facing a network: secrets kept out of logs, API tokens
//! separate from SigV4 secrets.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common;
use crate::server::{create_token, http, json};

#[test]
fn a_generated_root_secret_never_reaches_a_log() {
    let data = std::env::temp_dir().join(format!("kenning-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut child = Command::new(common::kenning_bin())
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
    let _ = std::fs::remove_dir_all(&data);
}
