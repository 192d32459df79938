use std::sync::{Condvar, Mutex};

use ort::session::Session;

use crate::ModelError;

/// A fixed-size pool of ONNX Runtime sessions for one model.
///
/// `Session::run` needs `&mut self`, so concurrent callers each borrow their
/// own session; sessions are created lazily up to `capacity` because each one
/// holds its own copy of the weights.
pub struct SessionPool {
    model: Vec<u8>,
    threads: usize,
    capacity: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    created: usize,
}

impl SessionPool {
    /// A pool for the ONNX `model` bytes holding at most `capacity` sessions,
    /// each with `threads` intra-op threads.
    pub fn new(model: Vec<u8>, capacity: usize, threads: usize) -> Result<Self, ModelError> {
        let pool = Self {
            model,
            threads: threads.max(1),
            capacity: capacity.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                created: 0,
            }),
            returned: Condvar::new(),
        };
        // Build one session up front so a broken model fails at load, not on
        // the first request.
        let first = pool.create()?;
        let mut state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
        state.idle.push(first);
        state.created = 1;
        drop(state);
        Ok(pool)
    }

    fn create(&self) -> Result<Session, ModelError> {
        let env = crate::runtime::environment()?;
        let session = Session::builder(env)?
            .with_intra_threads(self.threads)
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            .with_intra_op_spinning(false)
            .map_err(ort::Error::from)?
            .commit_from_memory(&self.model)?;
        Ok(session)
    }

    /// Runs `f` with a session of its own, waiting for one if all are busy.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, ModelError>,
    ) -> Result<T, ModelError> {
        let mut session = self.checkout()?;
        let result = f(&mut session);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.idle.push(session);
        drop(state);
        self.returned.notify_one();
        result
    }

    fn checkout(&self) -> Result<Session, ModelError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = state.idle.pop() {
                return Ok(s);
            }
            if state.created < self.capacity {
                state.created += 1;
                drop(state);
                return self.create().inspect_err(|_| {
                    self.state.lock().unwrap_or_else(|e| e.into_inner()).created -= 1;
                });
            }
            state = self.returned.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}
