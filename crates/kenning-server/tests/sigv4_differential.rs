//! Kenning's SigV4 verifier against the AWS SDK for Rust's signer
//! (`aws-sigv4`): hundreds of generated requests with the edge cases that
//! trip verifiers (reserved characters in queries and paths, repeated
//! headers, runs of spaces, empty bodies, a claimed payload hash, unsigned
//! payloads, clock skew either side of 15 minutes) are accepted exactly when
//! AWS's signer produces the signature they carry; and every single-byte
//! change of a signed part of a request is refused unless AWS's signer gives
//! the changed request the same signature (a run of spaces in a header
//! value, the case of a `%`-escape in a query).
//!
//! botocore's signer is checked the same way against a running server in
//! tests/python/test_sigv4_differential.py.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use kenning_server::sigv4::{verify, AuthError, SignedRequest, MAX_SKEW_SECS};

const KEY_ID: &str = "AKKNDIFFERENTIAL0001";
const SECRET: &str = "differential/secret+key=0123456789abcdef";
const HOST: &str = "kenning.test:8470";

/// A small deterministic generator (splitmix64), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Text mixing plain, reserved and non-ASCII characters.
    fn text(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", "-", "_", ".", "~", " ", "+", "%", "&", "=", "/", "?", "#", "!", "*",
            "'", "(", ")", ";", ":", "@", "$", ",", "[", "]", "é", "€", "𝄞", "\"", "<", "|",
        ];
        (0..self.below(max + 1))
            .map(|_| *self.pick(PIECES))
            .collect()
    }
}

/// Percent-encodes every byte but `A-Za-z0-9-_.~` (upper-case hex, as the
/// SDKs write it; `lower` writes lower-case hex, which is the same query).
fn encode(s: &str, keep: &[u8], lower: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request as it arrives: method, path, query, headers in order, body.
#[derive(Clone, Debug)]
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Wire {
    fn uri(&self) -> String {
        if self.query.is_empty() {
            format!("http://{HOST}{}", self.path)
        } else {
            format!("http://{HOST}{}?{}", self.path, self.query)
        }
    }

    fn header_map(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_bytes(v).ok()?,
            );
        }
        Some(map)
    }

    /// Whether an HTTP server could receive this at all (hyper parses the
    /// request line and headers with these same types).
    fn arrivable(&self) -> bool {
        self.uri()
            .parse::<Uri>()
            .is_ok_and(|u| u.path() == self.path && u.query().unwrap_or("") == self.query)
            && self.header_map().is_some()
            && !self.method.is_empty()
            && self.method.bytes().all(|b| b.is_ascii_uppercase())
    }
}

/// How the request is signed.
#[derive(Clone, Copy, Debug)]
enum Payload {
    /// The SHA-256 of the body, not sent as a header.
    Hashed,
    /// The SHA-256 of the body, also sent as `x-amz-content-sha256`.
    HashHeader,
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// A hash of some other body, sent as `x-amz-content-sha256`.
    OtherBody,
}

/// The signature AWS's signer gives `w` at `t` (None: it cannot sign it),
/// with the headers it adds (x-amz-date, authorization, maybe the hash).
fn aws_sign(w: &Wire, t: SystemTime, payload: Payload) -> Option<(String, Vec<(String, String)>)> {
    let identity: Identity = Credentials::new(KEY_ID, SECRET, None, None, "test").into();
    let mut settings = SigningSettings::default();
    if !matches!(payload, Payload::Hashed) {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-north-1")
        .name("rekognition")
        .time(t)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?)))
        .collect::<Option<_>>()?;
    let other = sha256_hex(b"{\"CollectionId\":\"evil\"}");
    let body = match payload {
        Payload::Hashed | Payload::HashHeader => SignableBody::Bytes(&w.body),
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::OtherBody => SignableBody::Precomputed(other),
    };
    let signable = SignableRequest::new(&w.method, w.uri(), headers.into_iter(), body).ok()?;
    let (instructions, signature) = sign(signable, &params).ok()?.into_parts();
    let added = instructions
        .headers()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Some((signature, added))
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Kenning's verdict on `w` at `now`.
fn kenning(w: &Wire, now: i64) -> Result<String, AuthError> {
    let headers = w.header_map().expect("arrivable");
    verify(
        &SignedRequest {
            method: &w.method,
            path: &w.path,
            query: &w.query,
            authority: None,
            headers: &headers,
            body: &w.body,
        },
        now,
        |k| (k == KEY_ID).then(|| SECRET.into()),
    )
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A generated request, unsigned.
fn generate(rng: &mut Rng) -> Wire {
    let rest = rng.below(3) > 0;
    let (method, path) = if rest {
        let segments: Vec<String> = (0..rng.below(4) + 1)
            .map(|_| {
                let t = rng.text(6);
                // Some clients leave sub-delimiters and ':' '@' raw in paths.
                let keep: &[u8] = if rng.below(2) == 0 {
                    b""
                } else {
                    b"!$'()*,;:@=&+"
                };
                encode(&t, keep, false)
            })
            .collect();
        (
            (*rng.pick(&["GET", "POST", "DELETE", "PUT"])).to_owned(),
            format!("/v1/{}", segments.join("/")),
        )
    } else {
        ("POST".to_owned(), "/".to_owned())
    };
    let query = if rest && rng.below(2) == 0 {
        (0..rng.below(5) + 1)
            .map(|_| {
                let (k, v) = (rng.text(5), rng.text(8));
                let lower = rng.below(4) == 0;
                if rng.below(5) == 0 {
                    encode(&k, b"", lower)
                } else {
                    format!("{}={}", encode(&k, b"", lower), encode(&v, b"", lower))
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    } else {
        String::new()
    };
    let mut headers = vec![("host".to_owned(), HOST.as_bytes().to_vec())];
    if rest {
        headers.push(("content-type".into(), b"application/json".to_vec()));
    } else {
        headers.push((
            "content-type".into(),
            b"application/x-amz-json-1.1".to_vec(),
        ));
        headers.push((
            "x-amz-target".into(),
            b"RekognitionService.ListCollections".to_vec(),
        ));
    }
    for _ in 0..rng.below(3) {
        // Runs of spaces, leading and trailing spaces, and repeats.
        let name = (*rng.pick(&["x-kenning-case", "x-custom", "accept"])).to_owned();
        let pad = " ".repeat(rng.below(3));
        let value = format!("{pad}{}{pad}", rng.text(10).trim()).replace('€', "  ");
        let value: String = value.chars().filter(|c| c.is_ascii()).collect();
        headers.push((name, value.into_bytes()));
    }
    let body = match rng.below(3) {
        0 => Vec::new(),
        1 => b"{}".to_vec(),
        _ => format!(
            "{{\"CollectionId\":\"{}\"}}",
            encode(&rng.text(12), b"", false)
        )
        .into_bytes(),
    };
    Wire {
        method,
        path,
        query,
        headers,
        body,
    }
}

/// Signs `w` at `t` with AWS's signer and adds its headers.
fn signed(w: &Wire, t: SystemTime, payload: Payload) -> Wire {
    let (_, added) = aws_sign(w, t, payload).expect("AWS's signer signs generated requests");
    let mut out = w.clone();
    for (k, v) in added {
        out.headers.push((k, v.into_bytes()));
    }
    out
}

/// The signature in an Authorization header.
fn signature_of(w: &Wire) -> Option<String> {
    let auth = w.headers.iter().find(|(k, _)| k == "authorization")?;
    let s = std::str::from_utf8(&auth.1).ok()?;
    Some(s.rsplit("Signature=").next()?.to_owned())
}

fn base_time() -> SystemTime {
    // Fixed, so runs are reproducible; `now` is passed to the verifier.
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

#[test]
fn generated_requests_are_accepted_exactly_when_aws_signs_them() {
    let mut rng = Rng(17);
    let t = base_time();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..600 {
        let w = generate(&mut rng);
        let payload = *rng.pick(&[
            Payload::Hashed,
            Payload::Hashed,
            Payload::HashHeader,
            Payload::Unsigned,
            Payload::OtherBody,
        ]);
        let s = signed(&w, t, payload);
        assert!(s.arrivable(), "case {i}: {s:?}");
        let skew = *rng.pick(&[
            0,
            59,
            -59,
            14 * 60,
            -14 * 60,
            MAX_SKEW_SECS,
            -MAX_SKEW_SECS,
            MAX_SKEW_SECS + 1,
            -MAX_SKEW_SECS - 1,
            16 * 60,
            -16 * 60,
        ]);
        let verdict = kenning(&s, secs(t) + skew);
        match (payload, skew.abs() > MAX_SKEW_SECS) {
            (Payload::Hashed | Payload::HashHeader, false) => {
                assert_eq!(verdict.as_deref(), Ok(KEY_ID), "case {i}: {s:?}");
                accepted += 1;
            }
            (Payload::Hashed | Payload::HashHeader, true) => {
                assert!(
                    matches!(verdict, Err(AuthError::Expired(_))),
                    "case {i} skew {skew}: {verdict:?}"
                );
                refused += 1;
            }
            (Payload::Unsigned | Payload::OtherBody, _) => {
                assert!(
                    matches!(verdict, Err(AuthError::PayloadMismatch { .. })),
                    "case {i} {payload:?}: {verdict:?}"
                );
                refused += 1;
            }
        }
    }
    eprintln!("{accepted} accepted, {refused} refused as AWS would");
    assert!(accepted > 200 && refused > 200, "{accepted} {refused}");
}

/// Every byte of every signed part of `s` replaced by every other byte:
/// Kenning accepts the result exactly when AWS's signer gives it the same
/// signature. Returns (changes tried, changes that could arrive, accepted).
fn mutate_every_byte(s: &Wire, t: SystemTime) -> (usize, usize, usize) {
    let sig = signature_of(s).unwrap();
    let now = secs(t);
    let (mut tried, mut arrivable, mut accepted) = (0, 0, 0);
    let check = |m: &Wire, arrivable: &mut usize, accepted: &mut usize| {
        if !m.arrivable() {
            return;
        }
        *arrivable += 1;
        let ok = kenning(m, now).is_ok();
        // AWS's verdict: the same signature over the changed request, with
        // the changed request's own Authorization and date left as they are.
        let mut unsigned = m.clone();
        unsigned
            .headers
            .retain(|(k, _)| k != "authorization" && k != "x-amz-date");
        let same_date = m.headers.iter().find(|(k, _)| k == "x-amz-date")
            == s.headers.iter().find(|(k, _)| k == "x-amz-date");
        let same_auth = m.headers.iter().find(|(k, _)| k == "authorization")
            == s.headers.iter().find(|(k, _)| k == "authorization");
        let aws = same_date
            && same_auth
            && aws_sign(&unsigned, t, Payload::Hashed).is_some_and(|(s2, _)| s2 == sig);
        assert_eq!(ok, aws, "changed request {m:?}");
        if ok {
            *accepted += 1;
        }
    };
    let bytes_of = |w: &Wire| -> Vec<(usize, usize)> {
        // (part, byte) positions: 0 method, 1 path, 2 query, 3+h header h, 99 body.
        let mut v: Vec<(usize, usize)> = (0..w.method.len()).map(|i| (0, i)).collect();
        v.extend((0..w.path.len()).map(|i| (1, i)));
        v.extend((0..w.query.len()).map(|i| (2, i)));
        for (h, (_, val)) in w.headers.iter().enumerate() {
            v.extend((0..val.len()).map(|i| (3 + h, i)));
        }
        v.extend((0..w.body.len()).map(|i| (99, i)));
        v
    };
    for (part, i) in bytes_of(s) {
        for b in 0..=255u8 {
            tried += 1;
            let Some(m) = s.with_byte(part, i, b) else {
                continue;
            };
            check(&m, &mut arrivable, &mut accepted);
        }
    }
    (tried, arrivable, accepted)
}

impl Wire {
    /// `self` with byte `i` of `part` set to `b` (None: no change, or a
    /// request line that is no longer text and so cannot be sent).
    fn with_byte(&self, part: usize, i: usize, b: u8) -> Option<Wire> {
        let mut m = self.clone();
        let text = |s: &str| -> Option<String> {
            let mut v = s.as_bytes().to_vec();
            (v[i] != b).then_some(())?;
            v[i] = b;
            String::from_utf8(v).ok()
        };
        match part {
            0 => m.method = text(&self.method)?,
            1 => m.path = text(&self.path)?,
            2 => m.query = text(&self.query)?,
            99 => {
                (m.body[i] != b).then_some(())?;
                m.body[i] = b;
            }
            h => {
                let v = &mut m.headers[h - 3].1;
                (v[i] != b).then_some(())?;
                v[i] = b;
            }
        }
        Some(m)
    }
}

#[test]
fn every_single_byte_change_of_a_signed_part_is_refused_unless_aws_signs_it_alike() {
    let mut rng = Rng(1717);
    let t = base_time();
    let mut totals = (0, 0, 0);
    let mut cases = 0;
    // A JSON 1.1 call and REST calls with a query and odd paths.
    while cases < 6 {
        let w = generate(&mut rng);
        if cases > 0 && (w.query.is_empty() || w.path == "/") {
            continue;
        }
        let s = signed(&w, t, Payload::Hashed);
        let (tried, arrivable, accepted) = mutate_every_byte(&s, t);
        totals = (totals.0 + tried, totals.1 + arrivable, totals.2 + accepted);
        cases += 1;
    }
    eprintln!(
        "{} single-byte changes of {cases} signed requests: {} could be sent, {} accepted (each one AWS signs alike)",
        totals.0, totals.1, totals.2
    );
    assert!(totals.1 > 10_000, "{totals:?}");
}
