//! Server-side sessions: the browser holds only a random id in an HttpOnly
//! cookie; who signed in, the CSRF token and the idle clock stay here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "kenning_session";
/// The cookie that binds the sign-in form to the browser that loaded it.
pub const SIGNIN_COOKIE: &str = "kenning_signin";
/// Most sessions held at once; beyond it the oldest idle one is dropped.
const MAX_SESSIONS: usize = 10_000;

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    // The OS random source failing is not something to serve pages through.
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Compares secrets without leaking where they differ through timing.
pub fn same(a: &str, b: &str) -> bool {
    kenning_accountability::keys::same_secret(a, b)
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access key it acts as.
    pub key_id: String,
    /// The API token it signed in with, if it did: checked again on every
    /// request, so revoking the token ends the session. Held only here.
    pub token: Option<String>,
    /// The token every form that changes something must carry.
    pub csrf: String,
    /// A one-shot message for the next page.
    pub flash: Option<String>,
    created: Instant,
    last_seen: Instant,
}

/// Why a cookie did not lead to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No such session (never was, signed out, or the service restarted).
    Unknown,
    /// It was idle too long, or is older than the longest a session lives.
    Expired,
}

/// Every session of the running service. Ids are kept only as SHA-256
/// hashes, so the table cannot be used to take over a session.
pub struct Sessions {
    idle: Duration,
    lifetime: Duration,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions that end after `idle` without a request, or `lifetime`
    /// after sign-in.
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Self {
            idle,
            lifetime,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.lifetime
    }

    /// Starts a session for `key_id` (signed in with `api_token`, if
    /// given); returns the cookie's value.
    pub fn start(&self, key_id: &str, api_token: Option<&str>) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut t = self.lock();
        t.retain(|_, s| self.alive(s, now));
        if t.len() >= MAX_SESSIONS {
            if let Some(oldest) = t.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k) {
                t.remove(&oldest);
            }
        }
        t.insert(
            key(&token),
            Session {
                key_id: key_id.into(),
                token: api_token.map(Into::into),
                csrf: random_token(),
                flash: None,
                created: now,
                last_seen: now,
            },
        );
        token
    }

    /// The session of `token`, with its idle clock restarted and its flash
    /// message taken; an expired one is removed.
    pub fn touch(&self, token: &str) -> Result<Session, Missing> {
        let now = Instant::now();
        let mut t = self.lock();
        let k = key(token);
        let s = t.get_mut(&k).ok_or(Missing::Unknown)?;
        if !self.alive(s, now) {
            t.remove(&k);
            return Err(Missing::Expired);
        }
        s.last_seen = now;
        let out = s.clone();
        s.flash = None;
        Ok(out)
    }

    /// Leaves a message for the next page of the session.
    pub fn flash(&self, token: &str, message: String) {
        if let Some(s) = self.lock().get_mut(&key(token)) {
            s.flash = Some(message);
        }
    }

    /// Ends the session of `token`.
    pub fn end(&self, token: &str) {
        self.lock().remove(&key(token));
    }
}

/// The value of cookie `name` in a request's Cookie headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A Set-Cookie value: HttpOnly, SameSite=Strict, scoped to the console,
/// Secure when the service speaks TLS; `None` clears the cookie.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; Path=/console; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_end_on_sign_out() {
        let s = Sessions::new(Duration::from_millis(200), Duration::from_secs(60));
        let a = s.start("AKKNA", None);
        let b = s.start("AKKNB", Some("kntk_x_y"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let got = s.touch(&a).unwrap();
        assert_eq!(got.key_id, "AKKNA");
        assert_eq!(got.token, None);
        let other = s.touch(&b).unwrap();
        assert_ne!(got.csrf, other.csrf);
        assert_eq!(other.token.as_deref(), Some("kntk_x_y"));
        s.flash(&a, "saved".into());
        assert_eq!(s.touch(&a).unwrap().flash.as_deref(), Some("saved"));
        assert_eq!(s.touch(&a).unwrap().flash, None, "a flash shows once");
        std::thread::sleep(Duration::from_millis(120));
        s.touch(&a).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        // a was used 120 ms ago, b 240 ms ago.
        assert!(s.touch(&a).is_ok());
        assert_eq!(s.touch(&b).unwrap_err(), Missing::Expired);
        assert_eq!(s.touch(&b).unwrap_err(), Missing::Unknown);
        s.end(&a);
        assert_eq!(s.touch(&a).unwrap_err(), Missing::Unknown);
        assert_eq!(s.touch("forged").unwrap_err(), Missing::Unknown);
    }

    #[test]
    fn cookies_are_read_and_written_safely() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; kenning_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie(COOKIE, Some("tok"), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(COOKIE, Some("tok"), false).contains("Secure"));
        assert!(set_cookie(COOKIE, None, false).contains("Max-Age=0"));
    }
}
