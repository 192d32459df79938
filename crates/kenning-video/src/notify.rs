//! Completion notifications: Rekognition publishes to an SNS topic; Kenning
//! posts the same JSON to a webhook the deployer mapped to the topic's ARN
//! (`--notify ARN=URL`), signed with HMAC-SHA-256 so the receiver can tell
//! it came from this service. Delivery runs on its own thread and is
//! retried; a topic with no webhook is accepted and the client polls.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Result, VideoError};

/// Header carrying `sha256=<hex HMAC-SHA-256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Kenning-Signature";
/// Header carrying the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Kenning-Timestamp";

/// An `http://host[:port]/path` webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    host: String,
    port: u16,
    path: String,
}

impl Webhook {
    /// Parses a webhook URL. Only plain `http://` is spoken: put a TLS proxy
    /// in front of a receiver that needs HTTPS.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            VideoError::InvalidParameter(format!(
                "webhook {url:?} must be an http:// URL (use a local TLS proxy for https)"
            ))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>().map_err(|_| {
                    VideoError::InvalidParameter(format!("webhook {url:?} has a bad port"))
                })?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(VideoError::InvalidParameter(format!(
                "webhook {url:?} is not a URL"
            )));
        }
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// Posts `body` once, signed with `secret` at Unix time `now`; `Ok` on a
    /// 2xx answer.
    pub fn post(&self, body: &str, secret: &[u8], now: u64) -> std::io::Result<u16> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the webhook host has no address"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{TIMESTAMP_HEADER}: {now}\r\n{SIGNATURE_HEADER}: sha256={}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            self.port,
            body.len(),
            signature(secret, now, body)
        );
        s.write_all(request.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other("the webhook did not answer HTTP"))?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(std::io::Error::other(format!(
                "the webhook answered {status}"
            )))
        }
    }
}

impl std::fmt::Display for Webhook {
    /// The URL without its query string, which may carry a receiver's token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.split('?').next().unwrap_or("/");
        write!(f, "http://{}:{}{path}", self.host, self.port)
    }
}

/// The signature a receiver recomputes: hex HMAC-SHA-256 of `"<now>.<body>"`.
pub fn signature(secret: &[u8], now: u64, body: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(format!("{now}.").as_bytes());
    m.update(body.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// `ARN=URL`.
pub fn parse_route(spec: &str) -> Result<(String, Webhook)> {
    let (arn, url) = spec.split_once('=').ok_or_else(|| {
        VideoError::InvalidParameter(format!("notification route {spec:?} must be ARN=URL"))
    })?;
    let arn = arn.trim();
    if !crate::service::valid_topic_arn(arn) {
        return Err(VideoError::InvalidParameter(format!(
            "{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT12:NAME)"
        )));
    }
    Ok((arn.to_owned(), Webhook::parse(url.trim())?))
}

struct Delivery {
    hook: Webhook,
    body: String,
}

/// Sends completion notifications to the webhooks topics are mapped to.
pub struct Notifier {
    routes: BTreeMap<String, Webhook>,
    secret: Vec<u8>,
    queue: Mutex<Option<Sender<Delivery>>>,
}

impl Notifier {
    /// A notifier for `routes`, signing with `secret`.
    pub fn new(routes: BTreeMap<String, Webhook>, secret: Vec<u8>) -> Self {
        let (tx, rx) = mpsc::channel::<Delivery>();
        let key = secret.clone();
        std::thread::Builder::new()
            .name("kenning-notify".into())
            .spawn(move || {
                for d in rx {
                    let mut wait = Duration::from_secs(1);
                    for attempt in 1..=4 {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        match d.hook.post(&d.body, &key, now) {
                            Ok(_) => break,
                            Err(e) if attempt == 4 => {
                                eprintln!(
                                    "kenning: notification to {} failed after {attempt} attempts: {e}",
                                    d.hook
                                );
                            }
                            Err(_) => {
                                std::thread::sleep(wait);
                                wait *= 4;
                            }
                        }
                    }
                }
            })
            .expect("spawning the notification thread");
        Self {
            routes,
            secret,
            queue: Mutex::new(Some(tx)),
        }
    }

    /// The signing key.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether `arn` has a webhook.
    pub fn routes(&self, arn: &str) -> bool {
        self.routes.contains_key(arn)
    }

    /// Queues `body` for the webhook of `arn`, if it has one.
    pub fn notify(&self, arn: &str, body: &serde_json::Value) {
        let Some(hook) = self.routes.get(arn) else {
            return;
        };
        if let Some(tx) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(Delivery {
                hook: hook.clone(),
                body: body.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert_eq!(
            Webhook::parse("http://127.0.0.1:9000/hooks/rek").unwrap(),
            Webhook {
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/hooks/rek".into()
            }
        );
        assert_eq!(Webhook::parse("http://example").unwrap().port, 80);
        assert_eq!(
            Webhook::parse("http://h:81/x?token=secret")
                .unwrap()
                .to_string(),
            "http://h:81/x"
        );
        assert!(Webhook::parse("https://example/x").is_err());
        assert!(Webhook::parse("http://:80/").is_err());
        assert!(parse_route(
            "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionDone=http://127.0.0.1:1/"
        )
        .is_ok());
        assert!(parse_route("not-an-arn=http://127.0.0.1:1/").is_err());
    }

    #[test]
    fn signature_is_an_hmac_of_time_and_body() {
        // Computed independently with Python's hmac module.
        assert_eq!(
            signature(b"secret", 1700000000, "{}"),
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(
            signature(b"secret", 1700000000, "{}"),
            signature(b"secret", 1700000001, "{}")
        );
    }
}
