//! A `kenning eval fairness --json` report as published for the console and
//! the accountability report: the measurements with what was measured.

use serde::Deserialize;

use crate::fairness::FairnessReport;

/// A `kenning eval fairness` JSON report.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalReport {
    /// Where it came from (shipped file or published name).
    #[serde(skip)]
    pub source: String,
    /// The command that measured it.
    #[serde(default)]
    pub command: Option<String>,
    /// The recogniser measured.
    #[serde(default)]
    pub recogniser: Option<String>,
    /// The impostor photos' folder.
    #[serde(default)]
    pub data: Option<String>,
    /// The label columns forming the groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The measurements.
    pub fairness: FairnessReport,
}

impl EvalReport {
    /// Reads report `text`, naming `source` in the error when it is not one.
    pub fn parse(source: &str, text: &str) -> Result<Self, String> {
        let mut r: Self = serde_json::from_str(text)
            .map_err(|e| format!("{source}: not a fairness report: {e}"))?;
        r.source = source.to_owned();
        Ok(r)
    }

    /// The calibration it measured, spelled as searches record it
    /// (`dlib-resnet-v1 (fair)`).
    pub fn calibration(&self) -> String {
        let kind = if self.fairness.scoring.starts_with("fair calibration") {
            "fair"
        } else {
            "global"
        };
        format!(
            "{} ({kind})",
            self.recogniser.as_deref().unwrap_or("unknown recogniser")
        )
    }

    /// A short title.
    pub fn title(&self) -> String {
        let groups = if self.groups.is_empty() {
            "groups".to_owned()
        } else {
            self.groups.join(" x ")
        };
        format!("{} by {groups}", self.calibration())
    }
}
