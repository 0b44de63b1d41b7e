//! Manifest parsing and validation for the four manifest types a registry stores: OCI image
//! manifest, OCI image index, Docker schema 2 manifest and Docker manifest list (artifacts are
//! OCI manifests with `artifactType` and/or a non-image config).
//!
//! The registry keeps and serves the exact bytes it received; parsing only extracts what it
//! must check (media type, schema version, referenced blobs and child manifests) and what it
//! must index (subject, artifact type, annotations).

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::digest::Digest;

pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str = "application/vnd.oci.image.layer.nondistributable.";
    pub const ALL_MANIFESTS: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];
}
use media_types::*;

/// Largest manifest body accepted, as distribution and ECR do.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Whether a client's `Accept` header values admit a manifest of `media_type`.
///
/// A client that names no manifest media type at all (no header, `*/*`, `application/json`)
/// takes whatever is stored. One that names manifest types gets only those (`q=0` excludes),
/// as the reference registry does; Berth never converts between manifest formats.
pub fn accepts(accept_headers: &[&str], media_type: &str) -> bool {
    let mut names_manifest_types = false;
    for item in accept_headers.iter().flat_map(|h| h.split(',')) {
        let mut parts = item.split(';');
        let ty = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
        });
        if refused {
            continue;
        }
        if ty == media_type || ty == "*/*" || ty == "application/*" {
            return true;
        }
        if ALL_MANIFESTS.contains(&ty) {
            names_manifest_types = true;
        }
    }
    !names_manifest_types
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl ManifestKind {
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::OciIndex => OCI_INDEX,
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn from_media_type(m: &str) -> Option<Self> {
        match m {
            OCI_MANIFEST => Some(ManifestKind::OciManifest),
            OCI_INDEX => Some(ManifestKind::OciIndex),
            DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerManifestList)
    }
}

/// What the registry needs to know of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// Blobs (config and layers) that must be present in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must be present in the repository.
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// The referrers API's artifact type: `artifactType`, or an image manifest's config media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
}

fn is_generic_content_type(ct: &str) -> bool {
    ct.is_empty() || ct == "application/json" || ct == "application/octet-stream"
}

/// Parses and validates a manifest body received with the given `Content-Type`.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let invalid = |m: String| ManifestError::Invalid(m);
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| invalid(format!("manifest is not a valid JSON object: {e}")))?;
    // A Content-Type may carry parameters (`; charset=utf-8`); the media type is what precedes them.
    let declared =
        content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !is_generic_content_type(c));
    let declared_kind = match declared {
        Some(ct) => {
            Some(ManifestKind::from_media_type(ct).ok_or_else(|| ManifestError::UnsupportedMediaType(ct.to_string()))?)
        }
        None => None,
    };
    let body_kind = match probe.media_type.as_deref() {
        Some(mt) => {
            Some(ManifestKind::from_media_type(mt).ok_or_else(|| ManifestError::UnsupportedMediaType(mt.to_string()))?)
        }
        None => None,
    };
    let kind = match (declared_kind, body_kind) {
        (Some(d), Some(b)) if d != b => {
            return Err(invalid(format!(
                "mediaType {:?} in the manifest does not match Content-Type {:?}",
                b.media_type(),
                d.media_type()
            )));
        }
        (Some(d), _) => d,
        (None, Some(b)) => b,
        (None, None) if probe.manifests.is_some() => ManifestKind::OciIndex,
        (None, None) if probe.config.is_some() => ManifestKind::OciManifest,
        (None, None) => {
            return Err(invalid(
                "cannot tell the manifest type: no Content-Type, mediaType, config or manifests".into(),
            ));
        }
    };
    match probe.schema_version.as_ref().and_then(|v| v.as_u64()) {
        Some(2) => {}
        _ => return Err(invalid("schemaVersion must be 2".into())),
    }
    // Docker types always carry their mediaType; a body without one that claims to be Docker is malformed.
    if matches!(kind, ManifestKind::DockerManifest | ManifestKind::DockerManifestList) && body_kind.is_none() {
        return Err(invalid(format!("a {} must carry its mediaType", kind.media_type())));
    }

    if kind.is_index() {
        let index: ImageIndex =
            serde_json::from_slice(body).map_err(|e| invalid(format!("invalid image index: {e}")))?;
        let manifests = index.manifests().iter().map(descriptor_digest).collect::<Result<Vec<_>, _>>()?;
        Ok(ParsedManifest {
            kind,
            blobs: Vec::new(),
            manifests,
            subject: index.subject().as_ref().map(descriptor_digest).transpose()?,
            artifact_type: index.artifact_type().as_ref().map(|m| m.to_string()),
            annotations: index.annotations().clone(),
        })
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(body).map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
        let mut blobs = vec![descriptor_digest(manifest.config())?];
        for layer in manifest.layers() {
            if is_external_layer(layer) {
                continue;
            }
            blobs.push(descriptor_digest(layer)?);
        }
        let artifact_type = match manifest.artifact_type() {
            Some(a) => Some(a.to_string()),
            None => Some(manifest.config().media_type().to_string()),
        };
        Ok(ParsedManifest {
            kind,
            blobs,
            manifests: Vec::new(),
            subject: manifest.subject().as_ref().map(descriptor_digest).transpose()?,
            artifact_type,
            annotations: manifest.annotations().clone(),
        })
    }
}

/// Foreign (Windows base) and non-distributable layers with URLs live outside the registry.
fn is_external_layer(d: &Descriptor) -> bool {
    let mt = d.media_type().to_string();
    let has_urls = d.urls().as_ref().is_some_and(|u| !u.is_empty());
    has_urls && (mt == DOCKER_FOREIGN_LAYER || mt.starts_with(OCI_NONDISTRIBUTABLE_PREFIX))
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest, ManifestError> {
    Digest::parse(d.digest().as_ref()).map_err(|e| ManifestError::Invalid(format!("descriptor digest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(s: &str) -> String {
        Digest::from_bytes(Algorithm::Sha256, s.as_bytes()).to_string()
    }

    fn image(media_type: Option<&str>, config_mt: &str) -> String {
        let mt = media_type.map(|m| format!(r#""mediaType":"{m}","#)).unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{config_mt}","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":5}}]}}"#,
            d("c"),
            d("l")
        )
    }

    #[test]
    fn oci_image_manifest() {
        let body = image(Some(OCI_MANIFEST), OCI_IMAGE_CONFIG);
        let p = parse_manifest(Some(OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(p.kind, ManifestKind::OciManifest);
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.blobs[0].to_string(), d("c"));
        assert_eq!(p.artifact_type.as_deref(), Some(OCI_IMAGE_CONFIG));
        // no Content-Type: inferred from the body
        assert_eq!(parse_manifest(None, body.as_bytes()).unwrap().kind, ManifestKind::OciManifest);
        // no mediaType anywhere: inferred from the structure
        let bare = image(None, OCI_IMAGE_CONFIG);
        assert_eq!(parse_manifest(Some("application/json"), bare.as_bytes()).unwrap().kind, ManifestKind::OciManifest);
    }

    #[test]
    fn docker_manifest_needs_media_type() {
        let body = image(Some(DOCKER_MANIFEST), DOCKER_IMAGE_CONFIG);
        assert_eq!(parse_manifest(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap().kind, ManifestKind::DockerManifest);
        let bare = image(None, DOCKER_IMAGE_CONFIG);
        assert!(matches!(parse_manifest(Some(DOCKER_MANIFEST), bare.as_bytes()), Err(ManifestError::Invalid(_))));
    }

    #[test]
    fn mismatched_media_type_is_invalid() {
        let body = image(Some(OCI_MANIFEST), OCI_IMAGE_CONFIG);
        let e = parse_manifest(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(matches!(
            parse_manifest(Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), body.as_bytes()),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn index_lists_children_and_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"amd64","os":"linux"}}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}},"artifactType":"application/x-sig"}}"#,
            d("m1"),
            d("s")
        );
        let p = parse_manifest(Some(OCI_INDEX), body.as_bytes()).unwrap();
        assert_eq!(p.kind, ManifestKind::OciIndex);
        assert_eq!(p.manifests.len(), 1);
        assert!(p.blobs.is_empty());
        assert_eq!(p.subject.unwrap().to_string(), d("s"));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x-sig"));
    }

    #[test]
    fn artifact_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}},"annotations":{{"a":"b"}}}}"#,
            d("{}"),
            d("s")
        );
        let p = parse_manifest(Some(OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(p.artifact_type.as_deref(), Some("application/vnd.example.sbom"));
        assert_eq!(p.annotations.unwrap()["a"], "b");
        assert_eq!(p.blobs.len(), 1);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"schemaVersion":1,"config":{}}"#,
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:abc","size":1},"layers":[]}"#,
            br#"{"schemaVersion":2,"manifests":"nope"}"#,
        ] {
            assert!(parse_manifest(None, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], OCI_MANIFEST));
        assert!(accepts(&["application/json"], OCI_MANIFEST));
        assert!(accepts(&["*/*"], OCI_INDEX));
        assert!(accepts(&[DOCKER_MANIFEST, OCI_MANIFEST], OCI_MANIFEST));
        assert!(accepts(&[&format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5")], OCI_MANIFEST));
        assert!(!accepts(&[DOCKER_MANIFEST], OCI_MANIFEST));
        assert!(!accepts(&[&format!("{DOCKER_MANIFEST}, {OCI_INDEX}")], OCI_MANIFEST));
        assert!(!accepts(&[&format!("{OCI_MANIFEST};q=0, {DOCKER_MANIFEST}")], OCI_MANIFEST));
        assert!(accepts(&[&format!("{DOCKER_MANIFEST}, */*;q=0.1")], OCI_INDEX));
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_IMAGE_CONFIG}","digest":"{}","size":2}},"layers":[{{"mediaType":"{DOCKER_FOREIGN_LAYER}","digest":"{}","size":5,"urls":["https://example.invalid/l"]}}]}}"#,
            d("c"),
            d("l")
        );
        assert_eq!(parse_manifest(None, body.as_bytes()).unwrap().blobs.len(), 1);
    }
}
