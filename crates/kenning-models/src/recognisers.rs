//! The recognisers one service runs side by side: every built-in one and
//! any loaded from a manifest file, each as a [`Pipeline`] sharing one
//! detector, loaded when first needed, and the name of the one new
//! collections get.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::manifest::{LoadedManifest, Manifest, BUILTIN};
use crate::{ModelError, Pipeline};

/// The recognisers a service can run, by manifest name.
///
/// A collection records the name of the recogniser that made its vectors;
/// [`Recognisers::get`] gives that recogniser's pipeline (detector, alignment,
/// embedding model and calibration), so every operation on the collection
/// embeds and scores with the model its vectors came from.
pub struct Recognisers {
    default: Arc<Pipeline>,
    others: BTreeMap<String, Slot>,
}

/// A recogniser that is known but loaded only when first asked for.
struct Slot {
    manifest: LoadedManifest,
    loaded: Mutex<Option<Arc<Pipeline>>>,
}

impl Recognisers {
    /// `default` (the recogniser new collections and one-off comparisons
    /// use) and every built-in recogniser of another name, each loaded on
    /// first use with `default`'s detector and settings.
    pub fn new(default: Arc<Pipeline>) -> Self {
        let mut this = Self {
            default,
            others: BTreeMap::new(),
        };
        for b in BUILTIN {
            // Built-in manifests are checked by this crate's tests.
            if let Ok(m) = LoadedManifest::builtin(b.name) {
                this.add(m);
            }
        }
        this
    }

    /// Adds (or replaces) a recogniser other than the default; it is loaded
    /// on first use.
    pub fn add(&mut self, manifest: LoadedManifest) {
        let name = manifest.manifest.name.clone();
        if name != self.default_name() {
            self.others.insert(
                name,
                Slot {
                    manifest,
                    loaded: Mutex::new(None),
                },
            );
        }
    }

    /// The default recogniser's name.
    pub fn default_name(&self) -> &str {
        &self.default.recognizer().manifest().name
    }

    /// The default recogniser's pipeline.
    pub fn default_pipeline(&self) -> &Arc<Pipeline> {
        &self.default
    }

    /// The manifest of the recogniser called `name`, without loading it.
    pub fn manifest(&self, name: &str) -> Option<&Manifest> {
        if name == self.default_name() {
            return Some(self.default.recognizer().manifest());
        }
        self.others.get(name).map(|s| &s.manifest.manifest)
    }

    /// Every recogniser's name, the default first.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(self.default_name())
            .chain(self.others.keys().map(String::as_str))
            .collect()
    }

    /// The pipeline of the recogniser called `name`, loading it if needed;
    /// [`ModelError::UnknownRecogniser`] when this service has none of that
    /// name.
    pub fn get(&self, name: &str) -> Result<Arc<Pipeline>, ModelError> {
        if name == self.default_name() {
            return Ok(self.default.clone());
        }
        let slot = self
            .others
            .get(name)
            .ok_or_else(|| ModelError::UnknownRecogniser {
                name: name.into(),
                known: self.names().join(", "),
            })?;
        let mut loaded = slot.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &*loaded {
            return Ok(p.clone());
        }
        let p = Arc::new(self.default.with_recogniser(slot.manifest.clone())?);
        *loaded = Some(p.clone());
        Ok(p)
    }
}

impl From<Arc<Pipeline>> for Recognisers {
    fn from(default: Arc<Pipeline>) -> Self {
        Self::new(default)
    }
}

impl From<Pipeline> for Recognisers {
    fn from(default: Pipeline) -> Self {
        Self::new(Arc::new(default))
    }
}
