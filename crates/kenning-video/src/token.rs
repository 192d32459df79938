//! Pagination tokens: opaque, signed (HMAC-SHA-256 with a key the service
//! keeps), bound to one job and one sort order, and valid for 24 hours.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Result, VideoError};

/// How long a NextToken stays valid.
pub const TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

const MAC_BYTES: usize = 16;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Position of the next result.
    pub position: u64,
    /// The sort order the pages follow (0 timestamp, 1 person index).
    pub order: u8,
}

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload);
    m.finalize().into_bytes()[..MAC_BYTES].to_vec()
}

fn payload(job_id: &str, cursor: Cursor, issued: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(job_id.len() + 17);
    p.extend_from_slice(&cursor.position.to_be_bytes());
    p.push(cursor.order);
    p.extend_from_slice(&issued.to_be_bytes());
    p.extend_from_slice(job_id.as_bytes());
    p
}

/// A token for `cursor` of `job_id`, issued at `now` (seconds).
pub fn issue(key: &[u8], job_id: &str, cursor: Cursor, now: u64) -> String {
    let p = payload(job_id, cursor, now);
    let mut bytes = p[..17].to_vec();
    bytes.extend(mac(key, &p));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The cursor in `token`, checked to be one this service issued for
/// `job_id` within the last 24 hours.
pub fn open(key: &[u8], job_id: &str, token: &str, now: u64) -> Result<Cursor> {
    let bad = |why: &str| VideoError::InvalidToken(format!("NextToken {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| bad("is not a token this service issued"))?;
    if bytes.len() != 17 + MAC_BYTES {
        return Err(bad("is not a token this service issued"));
    }
    let position = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let order = bytes[8];
    let issued = u64::from_be_bytes(bytes[9..17].try_into().expect("8 bytes"));
    let cursor = Cursor { position, order };
    let expected = mac(key, &payload(job_id, cursor, issued));
    // Constant time: a forger learns nothing from how long a refusal takes.
    let same = expected
        .iter()
        .zip(&bytes[17..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    if !same {
        return Err(bad("was altered or belongs to another job"));
    }
    if now.saturating_sub(issued) > TOKEN_LIFETIME_SECS || issued > now + 300 {
        return Err(bad("has expired (tokens are valid for 24 hours)"));
    }
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering_other_jobs_and_age() {
        let key = b"k".repeat(32);
        let c = Cursor {
            position: 1000,
            order: 1,
        };
        let t = issue(&key, "job-a", c, 1_000_000);
        assert!(t.len() <= 255);
        assert_eq!(open(&key, "job-a", &t, 1_000_010).unwrap(), c);
        assert!(open(&key, "job-b", &t, 1_000_010).is_err(), "another job");
        assert!(open(b"other key", "job-a", &t, 1_000_010).is_err());
        let expired = open(&key, "job-a", &t, 1_000_000 + TOKEN_LIFETIME_SECS + 1);
        assert!(matches!(expired, Err(VideoError::InvalidToken(m)) if m.contains("expired")));
        // Flip each byte in turn: never accepted.
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        for i in 0..raw.len() {
            let mut r = raw.clone();
            r[i] ^= 1;
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r);
            assert!(open(&key, "job-a", &forged, 1_000_010).is_err(), "byte {i}");
        }
        assert!(open(&key, "job-a", "garbage!", 1_000_010).is_err());
    }
}
