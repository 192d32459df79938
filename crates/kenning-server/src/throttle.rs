//! Per-key request rate and concurrency limits, so one key (or one stolen
//! key) cannot take the whole service. Refusals are Rekognition's
//! `ThrottlingException` (rate) and `ProvisionedThroughputExceededException`
//! (concurrency) with a Retry-After, which AWS SDKs back off and retry on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Limits for every key.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sustained requests per second per key (0: no rate limit).
    pub rate: f64,
    /// Requests a key may make at once above the rate (the bucket's size).
    pub burst: f64,
    /// Requests of one key being served at once (0: no limit).
    pub concurrency: usize,
}

struct KeyState {
    tokens: f64,
    last: Instant,
    in_flight: Arc<AtomicUsize>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the key's rate; retry after this many seconds.
    Rate(u64),
    /// Over the key's concurrent requests.
    Concurrency,
}

/// Held while a request runs; frees the key's concurrency slot on drop
/// (also when the request is cancelled).
pub struct Permit(Option<Arc<AtomicUsize>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The limiter: a token bucket and an in-flight count per access key.
pub struct Throttle {
    limits: Limits,
    keys: Mutex<HashMap<String, KeyState>>,
}

impl Throttle {
    /// A limiter with `limits` for every key.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request of `key` at `now`, or says why not.
    pub fn admit(&self, key: &str, now: Instant) -> Result<Permit, Refusal> {
        let Limits {
            rate,
            burst,
            concurrency,
        } = self.limits;
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = keys.entry(key.to_owned()).or_insert_with(|| KeyState {
            tokens: burst.max(1.0),
            last: now,
            in_flight: Arc::new(AtomicUsize::new(0)),
        });
        if rate > 0.0 {
            let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
            state.tokens = (state.tokens + elapsed * rate).min(burst.max(1.0));
            state.last = now;
            if state.tokens < 1.0 {
                let wait = ((1.0 - state.tokens) / rate).ceil().max(1.0);
                return Err(Refusal::Rate(wait as u64));
            }
        }
        if concurrency > 0 && state.in_flight.load(Ordering::Acquire) >= concurrency {
            return Err(Refusal::Concurrency);
        }
        if rate > 0.0 {
            state.tokens -= 1.0;
        }
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(Permit(Some(state.in_flight.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate_and_slots_free_on_drop() {
        let t = Throttle::new(Limits {
            rate: 2.0,
            burst: 3.0,
            concurrency: 2,
        });
        let t0 = Instant::now();
        let a = t.admit("k", t0).unwrap();
        let b = t.admit("k", t0).unwrap();
        assert_eq!(t.admit("k", t0).err(), Some(Refusal::Concurrency));
        assert!(t.admit("other", t0).is_ok(), "keys are limited separately");
        drop(a);
        let c = t.admit("k", t0).unwrap();
        drop((b, c));
        assert_eq!(t.admit("k", t0).err(), Some(Refusal::Rate(1)));
        assert!(t.admit("k", t0 + Duration::from_millis(500)).is_ok());
        assert!(t.admit("k", t0 + Duration::from_millis(500)).is_err());
    }
}
