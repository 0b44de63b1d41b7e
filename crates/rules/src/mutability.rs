//! Tag immutability as ECR defines it: `MUTABLE`, `IMMUTABLE`, and the two `*_WITH_EXCLUSION`
//! forms whose wildcard filters name the tags that behave the other way.

use crate::wildcard;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMutability {
    pub mode: Mode,
    /// Wildcard filters (`filterType` WILDCARD) of the `*_WITH_EXCLUSION` modes.
    pub exclusions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Mutable,
    Immutable,
    ImmutableWithExclusion,
    MutableWithExclusion,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mutable => "MUTABLE",
            Mode::Immutable => "IMMUTABLE",
            Mode::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
            Mode::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "MUTABLE" => Mode::Mutable,
            "IMMUTABLE" => Mode::Immutable,
            "IMMUTABLE_WITH_EXCLUSION" => Mode::ImmutableWithExclusion,
            "MUTABLE_WITH_EXCLUSION" => Mode::MutableWithExclusion,
            _ => return None,
        })
    }

    fn has_exclusions(self) -> bool {
        matches!(self, Mode::ImmutableWithExclusion | Mode::MutableWithExclusion)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutabilityError {
    #[error(
        "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]'"
    )]
    UnknownMode,
    #[error("imageTagMutabilityExclusionFilters are required when imageTagMutability is {0}")]
    FiltersRequired(&'static str),
    #[error(
        "imageTagMutabilityExclusionFilters can only be used with IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION"
    )]
    FiltersNotAllowed,
    #[error("imageTagMutabilityExclusionFilters must hold between 1 and 5 filters")]
    TooManyFilters,
    #[error("Invalid filter {0:?}: a filter is 1 to 128 characters of [0-9a-zA-Z._*-]")]
    InvalidFilter(String),
}

impl TagMutability {
    pub fn mutable() -> Self {
        TagMutability { mode: Mode::Mutable, exclusions: Vec::new() }
    }

    /// Validates a mode and its filters as `CreateRepository` / `PutImageTagMutability` get them.
    pub fn new(mode: &str, exclusions: Vec<String>) -> Result<Self, MutabilityError> {
        let mode = Mode::parse(mode).ok_or(MutabilityError::UnknownMode)?;
        if mode.has_exclusions() {
            if exclusions.is_empty() {
                return Err(MutabilityError::FiltersRequired(mode.as_str()));
            }
            if exclusions.len() > 5 {
                return Err(MutabilityError::TooManyFilters);
            }
        } else if !exclusions.is_empty() {
            return Err(MutabilityError::FiltersNotAllowed);
        }
        for f in &exclusions {
            let ok = !f.is_empty()
                && f.len() <= 128
                && f.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'*' | b'-'));
            if !ok {
                return Err(MutabilityError::InvalidFilter(f.clone()));
            }
        }
        Ok(TagMutability { mode, exclusions })
    }

    /// Whether `tag`, once it exists, may not be moved to another image.
    pub fn is_immutable(&self, tag: &str) -> bool {
        let excluded = || self.exclusions.iter().any(|f| wildcard::matches(f, tag));
        match self.mode {
            Mode::Mutable => false,
            Mode::Immutable => true,
            Mode::ImmutableWithExclusion => !excluded(),
            Mode::MutableWithExclusion => excluded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert!(!TagMutability::mutable().is_immutable("latest"));
        let imm = TagMutability::new("IMMUTABLE", vec![]).unwrap();
        assert!(imm.is_immutable("v1") && imm.is_immutable("latest"));
        let ie = TagMutability::new("IMMUTABLE_WITH_EXCLUSION", vec!["latest".into(), "dev-*".into()]).unwrap();
        assert!(ie.is_immutable("v1.0"));
        assert!(!ie.is_immutable("latest"));
        assert!(!ie.is_immutable("dev-42"));
        let me = TagMutability::new("MUTABLE_WITH_EXCLUSION", vec!["release-*".into()]).unwrap();
        assert!(me.is_immutable("release-1"));
        assert!(!me.is_immutable("latest"));
    }

    #[test]
    fn validation() {
        assert_eq!(TagMutability::new("SOMETIMES", vec![]), Err(MutabilityError::UnknownMode));
        assert_eq!(
            TagMutability::new("IMMUTABLE_WITH_EXCLUSION", vec![]),
            Err(MutabilityError::FiltersRequired("IMMUTABLE_WITH_EXCLUSION"))
        );
        assert_eq!(TagMutability::new("IMMUTABLE", vec!["x".into()]), Err(MutabilityError::FiltersNotAllowed));
        assert_eq!(
            TagMutability::new("MUTABLE_WITH_EXCLUSION", vec!["a".into(); 6]),
            Err(MutabilityError::TooManyFilters)
        );
        assert!(matches!(
            TagMutability::new("MUTABLE_WITH_EXCLUSION", vec!["a/b".into()]),
            Err(MutabilityError::InvalidFilter(_))
        ));
    }
}
