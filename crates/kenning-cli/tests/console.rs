//! The web console: its HTTP contract (redirects, security headers,
//! cookies, CSRF), then the whole flow in a real browser
//! (tests/browser/test_console.py, Debian's Chromium through
//! chromium-driver, installed by scripts/setup-browser.sh), and `kenning
//! report` on the trail the browser left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common;
use crate::server::header;

const KEY_ID: &str = "AKKNCONSOLETEST00001";
const SECRET: &str = "console-test-secret-0123456789";

/// A running `kenning serve` on a fresh data directory.
struct Serve {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Serve {
    fn start(extra: &[&str]) -> Self {
        let data = std::env::temp_dir().join(format!(
            "kenning-console-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = Command::new(common::kenning_bin())
            .arg("--models")
            .arg(common::models())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(extra)
            .env("KENNING_ACCESS_KEY_ID", KEY_ID)
            .env("KENNING_SECRET_ACCESS_KEY", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kenning serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // The banner: the address first, the console's last.
        let mut lines = Vec::new();
        while lines.len() < 10
            && !lines
                .last()
                .is_some_and(|l: &String| l.starts_with("console: "))
        {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            lines.push(line);
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = lines[0].trim().rsplit("http://").next().unwrap().to_owned();
        // What run.sh shows a new user: where the console is.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("console: http://{addr}/console/"))),
            "{lines:?}"
        );
        Self { child, addr, data }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Headers for `server::http` from string pairs.
fn h<'a>(pairs: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Every Set-Cookie header.
fn set_cookies(h: &[(String, String)]) -> Vec<&str> {
    h.iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One HTTP exchange (the server tests' client): (status, headers, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    crate::server::http(addr, method, path, &h(headers), body)
}

/// A GET of a console page with session cookie `cookie`.
pub(crate) fn get(addr: &str, path: &str, cookie: &str) -> (u16, Vec<(String, String)>, String) {
    http(addr, "GET", path, &[("cookie", cookie)], b"")
}

/// The value of a hidden input in a page.
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The `name=value` of a Set-Cookie header for `name`.
pub(crate) fn cookie(h: &[(String, String)], name: &str) -> String {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Signs in with key id and secret; returns the session cookie.
pub(crate) fn sign_in(addr: &str, id: &str, secret: &str) -> (u16, Vec<(String, String)>) {
    let (_, h, page) = http(addr, "GET", "/console/signin", &[], b"");
    let bound = cookie(&h, "kenning_signin");
    let form = format!(
        "signin={}&next=%2Fconsole%2F&key_id={id}&secret={secret}",
        hidden(&page, "signin")
    );
    let (status, h, _) = http(
        addr,
        "POST",
        "/console/signin",
        &[
            ("cookie", &bound),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    );
    (status, h)
}

fn audit(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit/audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"].clone())
        .collect()
}

#[test]
fn console_http_contract() {
    let s = Serve::start(&["--console-idle-timeout", "3"]);
    let addr = s.addr.as_str();
    // A browser's GET / goes to the console; POST / is still AWS JSON.
    let (status, h, _) = http(addr, "GET", "/", &[], b"");
    assert_eq!((status, header(&h, "location")), (303, Some("/console/")));
    let (status, _, body) = http(
        addr,
        "POST",
        "/",
        &[
            ("x-amz-target", "RekognitionService.ListCollections"),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        b"{}",
    );
    assert_eq!(status, 403);
    assert!(
        body.contains("MissingAuthenticationTokenException"),
        "{body}"
    );
    // Pages need a session; every console response carries the policy.
    let (status, h, _) = http(addr, "GET", "/console/keys", &[], b"");
    assert_eq!(status, 303);
    assert_eq!(
        header(&h, "location"),
        Some("/console/signin?next=%2Fconsole%2Fkeys")
    );
    for path in [
        "/console/signin",
        "/console/assets/console.css",
        "/console/assets/console.js",
        "/console/nope",
    ] {
        let (_, h, body) = http(addr, "GET", path, &[], b"");
        let csp = header(&h, "content-security-policy");
        assert_eq!(csp, Some(kenning_console::CSP), "{path}");
        assert!(!kenning_console::CSP.contains("unsafe"), "{path}");
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
        // Everything the console loads is its own: no other host named.
        for scheme in ["http://", "https://", "//fonts", "@import"] {
            assert!(!body.contains(scheme), "{path} names {scheme}");
        }
        // And nothing inline for the policy to have to allow.
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{path}"
        );
    }
    // A wrong secret: refused, recorded without the secret.
    let (status, h) = sign_in(addr, KEY_ID, "not-the-secret-at-all");
    assert_eq!(status, 401);
    assert!(set_cookies(&h)
        .iter()
        .all(|c| !c.starts_with("kenning_session=")));
    let (status, _) = sign_in(addr, "not-the-secret-at-all", SECRET);
    assert_eq!(status, 401);
    let records = audit(&s.data);
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r["operation"] == "ConsoleSignIn")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["access_key"], KEY_ID);
    assert_eq!(failed[0]["outcome"], "UnrecognizedClientException");
    assert_eq!(failed[1]["access_key"], "unknown");
    assert!(!std::fs::read_to_string(s.data.join("audit/audit.jsonl"))
        .unwrap()
        .contains("not-the-secret"));
    // The right one: a session cookie that scripts cannot read, recorded.
    let (status, h) = sign_in(addr, KEY_ID, SECRET);
    assert_eq!((status, header(&h, "location")), (303, Some("/console/")));
    let set = set_cookies(&h)
        .into_iter()
        .find(|c| c.starts_with("kenning_session="))
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Path=/console"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "no TLS here, so no Secure flag: {set}"
    );
    let session = cookie(&h, "kenning_session");
    assert_eq!(audit(&s.data).last().unwrap()["outcome"], "ok");
    let (status, _, page) = get(addr, "/console/collections", &session);
    assert_eq!(status, 200);
    let csrf = hidden(&page, "csrf");
    // A change without the session's token is refused; with it, it runs.
    let form = ("content-type", "application/x-www-form-urlencoded");
    for body in [
        "id=c1&require_case=1&reviewers=1".to_owned(),
        "id=c1&csrf=wrong".to_owned(),
    ] {
        let (status, _, _) = http(
            addr,
            "POST",
            "/console/collections",
            &[("cookie", &session), form],
            body.as_bytes(),
        );
        assert_eq!(status, 403, "{body}");
    }
    // The form's boxes: video left unticked forbids video searches.
    let body = format!("id=c1&require_case=1&reviewers=1&allow_streams=1&csrf={csrf}");
    let (status, _, _) = http(
        addr,
        "POST",
        "/console/collections",
        &[
            ("cookie", &session),
            form,
            ("origin", "http://elsewhere.example"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "another site's form");
    let (status, h, _) = http(
        addr,
        "POST",
        "/console/collections",
        &[("cookie", &session), form, ("origin", &s.url())],
        body.as_bytes(),
    );
    assert_eq!(
        (status, header(&h, "location")),
        (303, Some("/console/collections/c1"))
    );
    let created = audit(&s.data);
    let created = created.last().unwrap();
    assert_eq!(created["operation"], "CreateCollection");
    assert_eq!(created["access_key"], KEY_ID);
    assert_eq!(
        created["details"]["Policy"],
        serde_json::json!({"RequireCase": true, "RequiredReviewers": 1, "AllowVideo": false})
    );
    // An API token signs in as its key; revoking the token ends the session.
    let kenning = |args: &[&str]| {
        let out = Command::new(common::kenning_bin())
            .args(args)
            .arg("--data")
            .arg(&s.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let operator = kenning(&["keys", "create", "--role", "operator"]);
    let operator = operator["AccessKeyId"].as_str().unwrap();
    let t = kenning(&["keys", "token", "create", operator]);
    let (_, h, page) = http(addr, "GET", "/console/signin", &[], b"");
    let bound = cookie(&h, "kenning_signin");
    let form = format!(
        "signin={}&next=%2Fconsole%2Fsearch&token={}",
        hidden(&page, "signin"),
        t["Token"].as_str().unwrap()
    );
    let (status, h, _) = http(
        addr,
        "POST",
        "/console/signin",
        &[
            ("cookie", &bound),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    );
    assert_eq!(
        (status, header(&h, "location")),
        (303, Some("/console/search"))
    );
    let by_token = cookie(&h, "kenning_session");
    let signed_in = audit(&s.data).last().unwrap().clone();
    assert_eq!(signed_in["access_key"], operator);
    assert_eq!(signed_in["details"]["With"], "ApiToken");
    let (status, _, page) = get(addr, "/console/search", &by_token);
    assert_eq!(status, 200);
    assert!(
        page.contains(operator) && page.contains("operator"),
        "{page}"
    );
    kenning(&["keys", "token", "revoke", t["TokenId"].as_str().unwrap()]);
    let (status, h, _) = get(addr, "/console/search", &by_token);
    assert_eq!(status, 303);
    assert!(
        header(&h, "location").unwrap().ends_with("&revoked=1"),
        "{h:?}"
    );
    // Idle for longer than the timeout: the session is gone.
    std::thread::sleep(Duration::from_millis(3500));
    let (status, h, _) = get(addr, "/console/collections", &session);
    assert_eq!(status, 303);
    assert!(
        header(&h, "location").unwrap().ends_with("&expired=1"),
        "{h:?}"
    );
}

#[test]
fn console_in_a_browser() {
    let Some(data) = common::data("console_in_a_browser") else {
        return;
    };
    let root = common::root();
    let python = root.join(".cache/venv-test/bin/python");
    let axe = root.join(".cache/axe-core/axe.min.js");
    for (what, p) in [
        (
            "the test venv (scripts/setup-test-python.sh)",
            python.clone(),
        ),
        ("axe-core (scripts/setup-browser.sh)", axe.clone()),
        (
            "chromium (scripts/setup-browser.sh)",
            PathBuf::from("/usr/bin/chromium"),
        ),
        (
            "chromedriver (scripts/setup-browser.sh)",
            PathBuf::from("/usr/bin/chromedriver"),
        ),
    ] {
        assert!(
            p.exists(),
            "{} is missing: install {what} (scripts/test.sh does)",
            p.display()
        );
    }
    // The shared data's video folder is the bucket the video page searches.
    let cams = format!("cams={}", data.join("video").display());
    // And an empty one the operator uploads a video into from the phone.
    let uploads_dir = common::temp_dir("console-uploads");
    let uploads = format!("uploads={}", uploads_dir.display());
    let main = Serve::start(&["--bucket", &cams, "--bucket", &uploads]);
    let short = Serve::start(&["--console-idle-timeout", "3"]);
    let shots = root.join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new(&python)
        .args(["-m", "pytest", "tests/browser", "-q", "-rs", "-x"])
        .current_dir(&root)
        .env("KENNING_CONSOLE_URL", main.url())
        .env("KENNING_SHORT_URL", short.url())
        .env("KENNING_TEST_KEY_ID", KEY_ID)
        .env("KENNING_TEST_SECRET", SECRET)
        .env("KENNING_TEST_DATA", &data)
        .env("KENNING_TEST_DATA_DIR", &main.data)
        .env("KENNING_AXE", &axe)
        .env("KENNING_SCREENSHOTS", &shots)
        .env("KENNING_UPLOADS", &*uploads_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the browser tests failed:\n{stdout}"
    );
    eprintln!("screenshots: {}", shots.display());
    // `kenning report` counts what the browser did, in every format.
    let month = |ms: u64| kenning_audit::format_time(ms)[..7].to_owned();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let report = |format: &str, extra: &[&str]| {
        let out = Command::new(common::kenning_bin())
            .args([
                "report",
                "--from",
                &format!("{}-01", month(now)),
                "--to",
                "2100-01-01",
                "--format",
                format,
                "--data",
            ])
            .arg(&main.data)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let r: serde_json::Value =
        serde_json::from_slice(&report("json", &["--case", "CASE-2026-0042"])).unwrap();
    assert_eq!(r["Totals"]["Searches"], 1, "{r}");
    assert_eq!(r["Totals"]["CandidatesConfirmed"], 1, "{r}");
    assert_eq!(r["Totals"]["CandidatesPending"], 0, "{r}");
    let collection = |r: &serde_json::Value, id: &str| {
        r["Collections"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["CollectionId"] == id).cloned())
            .unwrap_or_else(|| panic!("no collection {id} in {r}"))
    };
    let watchlist = collection(&r, "watchlist");
    assert_eq!(watchlist["Tally"]["Searches"], 1, "{r}");
    assert_eq!(
        watchlist["Calibrations"],
        serde_json::json!(["sface-2021dec (fair)"])
    );
    // The search's audit record names the small-face rule its Similarity
    // was scored with, beside the calibration.
    let out = common::kenning_data(&main.data, &["audit", "export"], &[]);
    let searches: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // The searches that ran (refused ones scored nothing).
        .filter(|r| {
            r["operation"] == "SearchFacesByImage" && r["details"]["Calibration"].is_string()
        })
        .collect();
    assert!(
        !searches.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &searches {
        assert_eq!(
            r["details"]["QualityRule"], "sface-2021dec small-face rule (bands at 30, 60 px)",
            "{r}"
        );
    }
    let all: serde_json::Value = serde_json::from_slice(&report("json", &[])).unwrap();
    assert_eq!(all["RefusalsByRule"]["RequireCase"], 1, "{all}");
    assert_eq!(all["RefusalsByRule"]["AllowVideo"], 1, "{all}");
    assert_eq!(all["Totals"]["SearchesRefusedByPolicy"], 2, "{all}");
    // The stored-video search counts as the search it is, with its candidates.
    let video: serde_json::Value =
        serde_json::from_slice(&report("json", &["--case", "CASE-2026-0043"])).unwrap();
    assert_eq!(video["Totals"]["Searches"], 1, "{video}");
    let returned = video["Totals"]["CandidatesReturned"].as_u64().unwrap();
    assert!(returned >= 1, "{video}");
    assert_eq!(
        video["Totals"]["CandidatesQueuedForReview"], returned,
        "{video}"
    );
    assert_eq!(
        collection(&video, "hamilton")["Tally"]["Searches"],
        1,
        "{video}"
    );
    // And the admin's search with the frame a reviewer was shown.
    assert_eq!(all["Totals"]["Searches"], 3, "{all}");
    let head = all["Chain"]["Head"].as_str().unwrap().to_owned();
    let html = String::from_utf8(report("html", &[])).unwrap();
    assert!(html.contains(&head) && html.contains("Accountability report"));
    let pdf = report("pdf", &[]);
    assert!(pdf.starts_with(b"%PDF-1.4"));
    assert!(String::from_utf8_lossy(&pdf).contains(&head));
}

/// A principal of `role` acting through the Governor directly.
fn as_role(key: &str, role: kenning_accountability::Role) -> kenning_accountability::Caller {
    kenning_accountability::Caller::new(kenning_accountability::Principal::new(
        key,
        kenning_accountability::Grant::role(role),
    ))
}

#[test]
fn probe_photos_live_only_while_their_review_is_open() {
    use base64::Engine as _;
    use kenning_accountability::{Governor, Role};
    use serde_json::json;
    let Some(data) = common::data("probe_photos_live_only_while_their_review_is_open") else {
        return;
    };
    let examples = data.join("misc/face_recognition/examples");
    let dir = common::temp_dir("console-probes");
    let open = || {
        let c = kenning_collections::Collections::open(&dir, common::pipeline().clone()).unwrap();
        Governor::open(&dir, std::sync::Arc::new(c)).unwrap()
    };
    let bytes = |f: &str| std::fs::read(examples.join(f)).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let admin = as_role("ADMIN", Role::Admin);
    let operator = as_role("OPERATOR", Role::Operator);
    let reviewer = as_role("REVIEWER", Role::Reviewer);
    let g = open();
    let policy = json!({ "RequiredReviewers": 1, "ImageSource": { "Directory": examples } });
    g.call(
        &admin,
        "CreateCollection",
        json!({ "CollectionId": "c", "Policy": policy }),
    )
    .unwrap();
    let (v, _) = g
        .call(
            &operator,
            "IndexFaces",
            json!({ "CollectionId": "c", "Image": { "Bytes": b64(&bytes("obama-240p.jpg")) }, "ExternalImageId": "obama-240p.jpg", "MaxFaces": 1 }),
        )
        .unwrap();
    let face = v["FaceRecords"][0]["Face"]["FaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let probe = bytes("obama-1080p.jpg");
    let (v, _) = g
        .call(
            &operator,
            "SearchFacesByImage",
            json!({ "CollectionId": "c", "Image": { "Bytes": b64(&probe) } }),
        )
        .unwrap();
    let review = v["FaceMatches"][0]["ReviewId"].as_str().unwrap().to_owned();
    let kept = |dir: &Path| std::fs::read_dir(dir.join("probes")).unwrap().count();
    assert_eq!(kept(&dir), 1);
    // Reviewers (and admins) see the probe and the enrolment photo; the
    // operator who searched sees neither through these operations.
    let (v, _) = g
        .call(&reviewer, "GetReviewProbe", json!({ "ReviewId": review }))
        .unwrap();
    assert_eq!(v["Image"]["Bytes"], b64(&probe));
    assert_eq!(v["ContentType"], "image/jpeg");
    assert!(v["BoundingBox"]["Width"].as_f64().unwrap() > 0.0);
    let (v, _) = g
        .call(
            &reviewer,
            "GetEnrolmentImage",
            json!({ "CollectionId": "c", "FaceId": face }),
        )
        .unwrap();
    assert_eq!(v["Image"]["Bytes"], b64(&bytes("obama-240p.jpg")));
    for (op, body) in [
        ("GetReviewProbe", json!({ "ReviewId": review })),
        (
            "GetEnrolmentImage",
            json!({ "CollectionId": "c", "FaceId": face }),
        ),
    ] {
        let e = g.call(&operator, op, body).unwrap_err();
        assert_eq!(e.kind, "AccessDeniedException", "{op}: {e}");
    }
    // A probe whose review closed before a crash could erase it goes at
    // the next start; one still under review stays.
    let stray = dir.join("probes/00000000-0000-4000-8000-000000000000.img");
    std::fs::write(&stray, b"left behind").unwrap();
    drop(g);
    let g = open();
    assert!(!stray.exists());
    assert_eq!(kept(&dir), 1);
    // The decision that closes the review erases the probe.
    g.call(
        &reviewer,
        "DecideReviewItem",
        json!({ "ReviewId": review, "Decision": "CONFIRM", "Comment": "same person" }),
    )
    .unwrap();
    assert_eq!(kept(&dir), 0);
    let e = g
        .call(&reviewer, "GetReviewProbe", json!({ "ReviewId": review }))
        .unwrap_err();
    assert_eq!(e.kind, "ResourceNotFoundException", "{e}");
    // Every look at a photo is in the trail.
    let looked: Vec<String> = audit(&dir)
        .into_iter()
        .filter(|r| r["operation"] == "GetReviewProbe" || r["operation"] == "GetEnrolmentImage")
        .map(|r| format!("{} {} {}", r["operation"], r["access_key"], r["outcome"]))
        .collect();
    assert_eq!(
        looked,
        [
            "\"GetReviewProbe\" \"REVIEWER\" \"ok\"",
            "\"GetEnrolmentImage\" \"REVIEWER\" \"ok\"",
            "\"GetReviewProbe\" \"OPERATOR\" \"AccessDeniedException\"",
            "\"GetEnrolmentImage\" \"OPERATOR\" \"AccessDeniedException\"",
            "\"GetReviewProbe\" \"REVIEWER\" \"ResourceNotFoundException\"",
        ]
    );
    drop(g);
}

/// Every operation the console runs has its `/v1` REST route in
/// /openapi.json, so nothing is reachable only through the console (the
/// server's `every_openapi_path_answers` checks each documented route is
/// served as the operation it names). The console runs operations through
/// `Ctx::call(op: &'static str, ..)`, so each is a string literal in its
/// source: every literal that names an operation of the role matrix counts.
#[test]
fn every_console_operation_has_a_rest_twin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("crates/kenning-server/src/openapi.json")).unwrap(),
    )
    .unwrap();
    let documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/"))
        .flat_map(|(_, item)| item.as_object().unwrap().values())
        .filter_map(|o| o["operationId"].as_str())
        .collect();
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("crates/kenning-console/src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    let used: Vec<&str> = kenning_accountability::MATRIX
        .iter()
        .map(|(op, _)| *op)
        .filter(|op| sources.iter().any(|s| s.contains(&format!("\"{op}\""))))
        .collect();
    // The console's pages between them run at least these.
    for op in [
        "SearchFacesByImage",
        "DecideReviewItem",
        "GetReviewProbe",
        "GetEnrolmentImage",
        "GetAccountabilityReport",
        "CreateAccessKey",
        "RevokeAccessKey",
        "StartFaceSearch",
        "UploadVideo",
        "ListVideoJobs",
        "ListVideos",
    ] {
        assert!(used.contains(&op), "{op} not found in the console's source");
    }
    let missing: Vec<&&str> = used.iter().filter(|op| !documented.contains(op)).collect();
    assert!(
        missing.is_empty(),
        "console operations without a /v1 route in /openapi.json: {missing:?}"
    );
}
