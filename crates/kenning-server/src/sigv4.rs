//! AWS Signature Version 4 verification (the `Authorization` header form).
//!
//! Nothing the client says about its own request is taken on trust: the
//! payload hash signed over is the SHA-256 of the body as received (an
//! `x-amz-content-sha256` header must agree with it), a header named in
//! `SignedHeaders` must be present, and the headers the service acts on
//! (`host`, the date, every `x-amz-*` and `x-kenning-*` header and
//! `content-type`) must be among the signed ones, so none of them can be
//! changed in a captured request.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// How far the request time may be from the server's clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// The service name a signature's scope must name.
pub const SERVICE: &str = "rekognition";

/// Bytes SigV4 leaves as they are: `A-Z a-z 0-9 - _ . ~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// As [`UNRESERVED`], keeping the `/` between path segments.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The SigV4 form of a timestamp (`X-Amz-Date`).
const AMZ_DATE: &str = "%Y%m%dT%H%M%SZ";

/// Why a request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No Authorization header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The Authorization header, the date or the set of signed headers is
    /// malformed or incomplete.
    #[error("{0}")]
    Malformed(String),
    /// The access key id is unknown or revoked.
    #[error("The security token included in the request is invalid.")]
    UnknownKey(String),
    /// The signature does not match.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    BadSignature,
    /// The request time is more than 15 minutes from now.
    #[error("Signature expired: {0} is more than 15 minutes from the server's time")]
    Expired(String),
    /// `x-amz-content-sha256` is not the hash of the body received.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed (XAmzContentSHA256Mismatch): the body received hashes to {computed}")]
    PayloadMismatch {
        /// The SHA-256 of the body as received, hex.
        computed: String,
    },
}

impl AuthError {
    /// The Rekognition-shaped exception name.
    pub fn exception(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Malformed(_) => "IncompleteSignatureException",
            Self::UnknownKey(_) => "UnrecognizedClientException",
            Self::BadSignature | Self::Expired(_) | Self::PayloadMismatch { .. } => {
                "InvalidSignatureException"
            }
        }
    }

    /// The HTTP status: 400 for a body that is not the one signed (as AWS
    /// answers a content hash mismatch), 403 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            Self::PayloadMismatch { .. } => 400,
            _ => 403,
        }
    }
}

/// The parts of a request a signature covers.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as received (still percent-encoded).
    pub path: &'a str,
    /// Query string as received, without `?`.
    pub query: &'a str,
    /// The URI's authority, which stands for `host` when the request has no
    /// Host header (HTTP/2 carries it as `:authority`).
    pub authority: Option<&'a str>,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The body as received.
    pub body: &'a [u8],
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

fn malformed(why: impl Into<String>) -> AuthError {
    AuthError::Malformed(why.into())
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed("Authorization header must use AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim_matches(' ')
            .split_once('=')
            .ok_or_else(|| malformed(format!("malformed Authorization part {part:?}")))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed(format!("unknown Authorization part {k:?}"))),
        };
        if slot.replace(v).is_some() {
            return Err(malformed(format!("Authorization names {k} twice")));
        }
    }
    let missing = |what: &str| malformed(format!("Authorization header lacks {what}"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = parts[..] else {
        return Err(malformed(format!(
            "Credential {credential:?} must be KEY/DATE/REGION/SERVICE/aws4_request"
        )));
    };
    if access_key_id.is_empty() || region.is_empty() {
        return Err(malformed(format!(
            "Credential {credential:?} has an empty key id or region"
        )));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    let well_formed = signed_headers.iter().all(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    });
    if !well_formed || !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return Err(malformed(format!(
            "SignedHeaders {signed:?} must be lower-case header names, sorted, each once"
        )));
    }
    // Lower-case hex only, so that no other spelling of a signature passes.
    let mut sig = [0u8; 32];
    if signature.len() != 64
        || signature.bytes().any(|b| b.is_ascii_uppercase())
        || hex::decode_to_slice(signature, &mut sig).is_err()
    {
        return Err(malformed("Signature must be 64 lower-case hex digits"));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature: sig,
    })
}

/// Seconds since the epoch of a `YYYYMMDDTHHMMSSZ` timestamp.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let t = jiff::civil::DateTime::strptime(AMZ_DATE, s).ok()?;
    let secs = t
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_second();
    // Only the one spelling: no signs, no short fields.
    (format_amz_date(secs).as_deref() == Some(s)).then_some(secs)
}

/// `secs` since the epoch as a `YYYYMMDDTHHMMSSZ` timestamp.
pub fn format_amz_date(secs: i64) -> Option<String> {
    Some(
        jiff::Timestamp::from_second(secs)
            .ok()?
            .strftime(AMZ_DATE)
            .to_string(),
    )
}

/// The request's time: `X-Amz-Date`, else the `Date` header (RFC 7231,
/// as botocore writes it when a request already has one). Returns seconds
/// since the epoch, the SigV4 form signed over, and the header's name.
fn request_time(headers: &HeaderMap) -> Result<(i64, String, &'static str), AuthError> {
    if let Some(v) = headers.get("x-amz-date") {
        let s = v
            .to_str()
            .map_err(|_| malformed("X-Amz-Date is not ASCII"))?;
        let t = parse_amz_date(s)
            .ok_or_else(|| malformed(format!("X-Amz-Date {s:?} is not YYYYMMDDTHHMMSSZ")))?;
        return Ok((t, s.to_owned(), "x-amz-date"));
    }
    let v = headers
        .get("date")
        .ok_or_else(|| malformed("the request has neither an X-Amz-Date nor a Date header"))?;
    let s = v.to_str().map_err(|_| malformed("Date is not ASCII"))?;
    let t = jiff::fmt::rfc2822::parse(s)
        .map_err(|e| malformed(format!("Date {s:?} is not an HTTP date: {e}")))?
        .timestamp()
        .as_second();
    let amz = format_amz_date(t).ok_or_else(|| malformed(format!("Date {s:?} is out of range")))?;
    Ok((t, amz, "date"))
}

/// The path with `.` and `..` segments and repeated slashes removed
/// (RFC 3986 section 5.2.4), as AWS normalises it before signing for every
/// service but S3.
pub fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    let trailing = ["/", "/.", "/.."].iter().any(|e| path.ends_with(e));
    if trailing && !out.is_empty() {
        s.push('/');
    }
    s
}

/// Decodes `%XX` escapes (and `+` as a space, as the query parser does);
/// `None` for a `%` not followed by two hex digits.
fn decode_query_part(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let mut v = [0u8];
                hex::decode_to_slice(hex, &mut v).ok()?;
                out.push(v[0]);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Each name and value decoded and re-encoded the SigV4 way, sorted.
fn canonical_query(query: &str) -> Result<String, AuthError> {
    let mut pairs = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let enc = |s: &str| {
            decode_query_part(s)
                .map(|d| percent_encode(&d, UNRESERVED).to_string())
                .ok_or_else(|| malformed(format!("the query string has a bad %-escape in {p:?}")))
        };
        pairs.push((enc(k)?, enc(v)?));
    }
    pairs.sort();
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Appends a header value with leading, trailing and repeated spaces
/// reduced as SigV4's Trimall does. Spaces only, as AWS's own signers trim
/// (a tab is a byte of the value), and on bytes, so no two values collide.
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let mut words = value.split(|b| *b == b' ').filter(|w| !w.is_empty());
    if let Some(w) = words.next() {
        out.extend_from_slice(w);
        for w in words {
            out.push(b' ');
            out.extend_from_slice(w);
        }
    }
}

/// The canonical request over `signed_headers` with the body's real hash.
fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    let path = normalize_path(req.path);
    out.extend(percent_encode(path.as_bytes(), UNRESERVED_AND_SLASH).flat_map(str::bytes));
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.query)?.as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = req.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            match (*name, req.authority) {
                ("host", Some(authority)) => push_trimmed(&mut out, authority.as_bytes()),
                _ => {
                    return Err(malformed(format!(
                        "the signed header {name} is not in the request"
                    )))
                }
            }
        }
        let mut first = true;
        for v in values {
            if !first {
                out.push(b',');
            }
            first = false;
            push_trimmed(&mut out, v.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// Checks that the headers the service acts on are signed.
fn check_signed_set(
    req: &SignedRequest<'_>,
    signed: &[&str],
    date_header: &str,
) -> Result<(), AuthError> {
    let need = |name: &str| -> Result<(), AuthError> {
        if signed.contains(&name) {
            Ok(())
        } else {
            Err(malformed(format!(
                "the {name} header must be signed (listed in SignedHeaders)"
            )))
        }
    };
    need("host")?;
    need(date_header)?;
    for name in req.headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-amz-") || n.starts_with("x-kenning-") || n == "content-type" {
            need(n)?;
        }
    }
    if signed.contains(&"authorization") {
        return Err(malformed("the Authorization header cannot sign itself"));
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac
}

/// The SigV4 signing key for one day, region and service.
fn signing_key(
    secret: &SecretString,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<Vec<u8>> {
    let first = Zeroizing::new(format!("AWS4{}", secret.expose_secret()));
    let mut k = Zeroizing::new(
        hmac(first.as_bytes(), date.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec(),
    );
    for part in [region, service, "aws4_request"] {
        k = Zeroizing::new(hmac(&k, part.as_bytes()).finalize().into_bytes().to_vec());
    }
    k
}

fn string_to_sign(amz_date: &str, auth: &Authorization<'_>, canonical: &[u8]) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        auth.service,
        hex::encode(Sha256::digest(canonical))
    )
}

/// Verifies `req`'s SigV4 signature at time `now` (seconds since the epoch),
/// looking secrets up with `secret_of`; returns the access key id.
pub fn verify(
    req: &SignedRequest<'_>,
    now: i64,
    secret_of: impl Fn(&str) -> Option<SecretString>,
) -> Result<String, AuthError> {
    let payload_hash = hex::encode(Sha256::digest(req.body));
    if let Some(claimed) = req.headers.get("x-amz-content-sha256") {
        if claimed.as_bytes() != payload_hash.as_bytes() {
            return Err(AuthError::PayloadMismatch {
                computed: payload_hash,
            });
        }
    }
    verify_over(req, &payload_hash, now, secret_of)
}

/// Verifies the signature of a request whose body is streamed and not yet
/// read (a video upload), over `declared`, the SHA-256 (hex) the client sent
/// in `x-amz-content-sha256`. The caller hashes the body as it reads it and
/// must refuse it when the hashes differ.
pub fn verify_declared(
    req: &SignedRequest<'_>,
    declared: &str,
    now: i64,
    secret_of: impl Fn(&str) -> Option<SecretString>,
) -> Result<String, AuthError> {
    verify_over(req, declared, now, secret_of)
}

fn verify_over(
    req: &SignedRequest<'_>,
    payload_hash: &str,
    now: i64,
    secret_of: impl Fn(&str) -> Option<SecretString>,
) -> Result<String, AuthError> {
    let header = req
        .headers
        .get("authorization")
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| malformed("Authorization header is not ASCII"))?;
    let auth = parse_authorization(header)?;
    if auth.service != SERVICE {
        return Err(malformed(format!(
            "Credential should be scoped to correct service: '{SERVICE}', not '{}'",
            auth.service
        )));
    }
    let (when, amz_date, date_header) = request_time(req.headers)?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(malformed(format!(
            "Credential date {} does not match the request date {amz_date}",
            auth.date
        )));
    }
    check_signed_set(req, &auth.signed_headers, date_header)?;
    let canonical = canonical_request(req, &auth.signed_headers, payload_hash)?;
    let secret = secret_of(auth.access_key_id)
        .ok_or_else(|| AuthError::UnknownKey(auth.access_key_id.into()))?;
    if (now - when).abs() > MAX_SKEW_SECS {
        return Err(AuthError::Expired(amz_date));
    }
    let key = signing_key(&secret, auth.date, auth.region, auth.service);
    hmac(
        &key,
        string_to_sign(&amz_date, &auth, &canonical).as_bytes(),
    )
    .verify_slice(&auth.signature)
    .map_err(|_| AuthError::BadSignature)?;
    Ok(auth.access_key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// AWS's published get-vanilla example (service "service"), to check the
    /// algorithm itself.
    #[test]
    fn matches_the_aws_test_suite_vanilla_get() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            authority: None,
            headers: &headers,
            body: b"",
        };
        let auth = Authorization {
            access_key_id: "AKIDEXAMPLE",
            date: "20150830",
            region: "us-east-1",
            service: "service",
            signed_headers: vec!["host", "x-amz-date"],
            signature: [0; 32],
        };
        let canonical = canonical_request(
            &req,
            &auth.signed_headers,
            &hex::encode(Sha256::digest(b"")),
        )
        .unwrap();
        let key = signing_key(&SECRET.into(), "20150830", "us-east-1", "service");
        let sig = hmac(
            &key,
            string_to_sign("20150830T123600Z", &auth, &canonical).as_bytes(),
        )
        .finalize()
        .into_bytes();
        assert_eq!(
            hex::encode(sig),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn parses_and_formats_amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
        assert_eq!(parse_amz_date("2015-08-30"), None);
        assert_eq!(
            format_amz_date(1_440_938_160).as_deref(),
            Some("20150830T123600Z")
        );
    }

    #[test]
    fn query_is_decoded_sorted_and_reencoded() {
        assert_eq!(canonical_query("b=2&a=x%20y").unwrap(), "a=x%20y&b=2");
        assert_eq!(canonical_query("a=x+y&c=%7e&b").unwrap(), "a=x%20y&b=&c=~");
        assert!(canonical_query("a=%zz").is_err());
        assert!(canonical_query("a=%4").is_err());
    }

    #[test]
    fn paths_are_normalised_as_aws_does() {
        for (raw, normal) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/a//b/", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/.b/..c", "/a/.b/..c"),
        ] {
            assert_eq!(normalize_path(raw), normal, "{raw:?}");
        }
    }

    #[test]
    fn header_values_are_trimmed_without_merging_bytes() {
        let mut out = Vec::new();
        push_trimmed(&mut out, b"  a \t b  \xff ");
        assert_eq!(out, b"a \t b \xff");
    }
}
