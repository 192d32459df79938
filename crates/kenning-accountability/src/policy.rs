//! Purpose binding: the rules a collection's searches must keep.

use kenning_models::Equalise;
use serde::{Deserialize, Serialize};

/// When retention counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetentionFrom {
    /// Delete a face `days` after it was indexed.
    Indexed,
    /// Delete a face `days` after a search last matched it (never matched:
    /// after it was indexed).
    LastMatch,
}

/// How long faces are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Retention {
    /// Days to keep a face (1-36500).
    pub days: u32,
    /// What the days count from.
    pub after: RetentionFrom,
}

/// A collection's policy, stored with the collection as JSON. Every field is
/// optional; an empty policy (`{}`) restricts nothing. Unknown fields are
/// refused, so a misspelt rule cannot silently fail to apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Policy {
    /// Searches must use at least this FaceMatchThreshold / UserMatchThreshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_face_match_threshold: Option<f64>,
    /// Searches must expect at most this many false matches per probe
    /// (face count x the false-match rate at the threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expected_false_matches: Option<f64>,
    /// Searches must give a case reference.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_case: bool,
    /// Reviewers who must confirm a candidate (0: no review, 1 or 2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub required_reviewers: u8,
    /// How long faces are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Whether video may be searched against the collection (default yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_video: Option<bool>,
    /// Whether live streams may be searched against it (default yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_streams: Option<bool>,
    /// Where reviewers and admins (and only they) find the photo each face
    /// was enrolled from. Kenning keeps no enrolment images itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_source: Option<ImageSource>,
    /// What the collection's Similarity keeps equal across groups of people
    /// (FalseMatches, Misses or Balanced): which of the recogniser's shipped
    /// calibrations its searches use. Absent: the recogniser's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equalise: Option<Equalise>,
}

/// A folder of enrolment photos in which each face's ExternalImageId is a
/// file name (as `kenning index` names faces after their files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ImageSource {
    /// Absolute path of the folder on the service's machine.
    pub directory: std::path::PathBuf,
}

/// A search rule of the policy, as refusals name it in the audit trail.
pub const SEARCH_RULES: [&str; 3] = [
    "RequireCase",
    "MinFaceMatchThreshold",
    "MaxExpectedFalseMatches",
];

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// A broken policy rule, and the Rekognition exception it is reported as.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    /// A request parameter is outside what the policy allows.
    #[error("{0}")]
    Parameter(String),
    /// The request lacks something the policy requires (a case reference) or
    /// asks for something it forbids (video, streams).
    #[error("{0}")]
    Denied(String),
}

impl Policy {
    /// Parses a stored or submitted policy document; `""` is the empty policy.
    pub fn parse(doc: &str) -> Result<Self, String> {
        if doc.trim().is_empty() {
            return Ok(Self::default());
        }
        let p: Policy =
            serde_json::from_str(doc).map_err(|e| format!("invalid collection policy: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// From a JSON value (a request's `Policy` field).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        let p: Policy = serde_json::from_value(v.clone())
            .map_err(|e| format!("invalid collection policy: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(t) = self.min_face_match_threshold {
            if !(0.0..=100.0).contains(&t) {
                return Err(format!("MinFaceMatchThreshold must be 0-100, not {t}"));
            }
        }
        if let Some(m) = self.max_expected_false_matches {
            if !(m.is_finite() && m > 0.0) {
                return Err(format!(
                    "MaxExpectedFalseMatches must be a positive number, not {m}"
                ));
            }
        }
        if self.required_reviewers > 2 {
            return Err(format!(
                "RequiredReviewers must be 0, 1 or 2, not {}",
                self.required_reviewers
            ));
        }
        if let Some(r) = self.retention {
            if !(1..=36_500).contains(&r.days) {
                return Err(format!("Retention.Days must be 1-36500, not {}", r.days));
            }
        }
        if let Some(src) = &self.image_source {
            if !src.directory.is_absolute() {
                return Err(format!(
                    "ImageSource.Directory must be an absolute path, not {:?}",
                    src.directory
                ));
            }
        }
        Ok(())
    }

    /// Checks a search of `collection` at `threshold` whose expected false
    /// matches per probe are `expected`, given with case reference `case`.
    pub fn check_search(
        &self,
        collection: &str,
        threshold: f64,
        expected: f64,
        case: Option<&str>,
    ) -> Result<(), Violation> {
        match self.search_violation(collection, threshold, expected, case) {
            Some((_, v)) => Err(v),
            None => Ok(()),
        }
    }

    /// Like [`Policy::check_search`], naming the rule broken (one of
    /// [`SEARCH_RULES`]) so refusals can be counted by rule.
    pub fn search_violation(
        &self,
        collection: &str,
        threshold: f64,
        expected: f64,
        case: Option<&str>,
    ) -> Option<(&'static str, Violation)> {
        if self.require_case && case.is_none_or(|c| c.trim().is_empty()) {
            return Some((SEARCH_RULES[0], Violation::Denied(format!(
                "collection {collection}'s policy requires a case reference for every search (HTTP header X-Kenning-Case, CLI --case)"
            ))));
        }
        if let Some(min) = self.min_face_match_threshold {
            if threshold < min {
                return Some((SEARCH_RULES[1], Violation::Parameter(format!(
                    "collection {collection}'s policy sets the minimum match threshold to {min}; this search asked for {threshold}"
                ))));
            }
        }
        if let Some(max) = self.max_expected_false_matches {
            if expected > max {
                return Some((SEARCH_RULES[2], Violation::Parameter(format!(
                    "collection {collection}'s policy allows at most {max} expected false matches per search; at threshold {threshold} its faces give {expected:.3e} (raise the threshold)"
                ))));
            }
        }
        None
    }

    /// Checks a video (`stream = false`) or live-stream search.
    pub fn check_video(&self, collection: &str, stream: bool) -> Result<(), Violation> {
        let (allowed, what) = if stream {
            (self.allow_streams, "live-stream")
        } else {
            (self.allow_video, "video")
        };
        if allowed == Some(false) {
            return Err(Violation::Denied(format!(
                "collection {collection}'s policy forbids {what} searches"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_validate_and_round_trip() {
        let p = Policy::parse(
            r#"{"MinFaceMatchThreshold":95,"MaxExpectedFalseMatches":0.01,"RequireCase":true,
               "RequiredReviewers":2,"Retention":{"Days":30,"After":"LAST_MATCH"},"AllowStreams":false}"#,
        )
        .unwrap();
        assert_eq!(p.required_reviewers, 2);
        assert_eq!(p.retention.unwrap().after, RetentionFrom::LastMatch);
        assert_eq!(Policy::parse(&p.to_json()).unwrap(), p);
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
        for e in Equalise::ALL {
            let p = Policy::parse(&format!(r#"{{"Equalise":"{}"}}"#, e.as_str())).unwrap();
            assert_eq!(p.equalise, Some(e));
            assert_eq!(Equalise::from_policy(&p.to_json()), Some(e));
        }
        assert_eq!(Policy::default().to_json(), "{}");
        for bad in [
            r#"{"MinFaceMatchTreshold":95}"#,
            r#"{"MinFaceMatchThreshold":101}"#,
            r#"{"RequiredReviewers":3}"#,
            r#"{"Retention":{"Days":0,"After":"INDEXED"}}"#,
            r#"{"MaxExpectedFalseMatches":-1}"#,
            r#"{"Equalise":"Sideways"}"#,
            r#"{"Equalise":"falsematches"}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn searches_are_checked_rule_by_rule() {
        let p = Policy::parse(
            r#"{"MinFaceMatchThreshold":90,"MaxExpectedFalseMatches":0.01,"RequireCase":true}"#,
        )
        .unwrap();
        assert!(p.check_search("c", 95.0, 0.001, Some("CASE-1")).is_ok());
        let e = p.check_search("c", 95.0, 0.001, None).unwrap_err();
        assert!(matches!(e, Violation::Denied(ref m) if m.contains("case reference")));
        let e = p.check_search("c", 85.0, 0.001, Some("C")).unwrap_err();
        assert!(
            matches!(e, Violation::Parameter(ref m) if m.contains("minimum match threshold to 90"))
        );
        let e = p.check_search("c", 95.0, 0.5, Some("C")).unwrap_err();
        assert!(matches!(e, Violation::Parameter(ref m) if m.contains("at most 0.01 expected")));
        let streams = Policy::parse(r#"{"AllowStreams":false}"#).unwrap();
        assert!(streams.check_video("c", false).is_ok());
        assert!(streams.check_video("c", true).is_err());
    }
}
