//! Image signing, decided without IO: ECR's signing configuration (up to 10 rules, each a
//! signing profile with optional `WILDCARD_MATCH` repository filters), which profiles sign a
//! repository's pushes, what is never signed (signatures, attestations, referrers), and the
//! containers "simple signing" payload a signature covers, in the tag scheme cosign and
//! containers/image share (`sha256-<hex>.sig`).

use serde::{Deserialize, Serialize};

use crate::wildcard;

/// The media type of a simple-signing payload layer (cosign's and containers/image's).
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the payload's signature, base64 of an ASN.1 DER ECDSA signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A sigstore bundle, as Berth attaches each signature as an OCI referrer of its image.
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// `critical.type` of a simple-signing payload.
const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SigningConfiguration {
    pub rules: Vec<SigningRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningRule {
    pub signing_profile_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<SigningFilter>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningFilter {
    pub filter: String,
    pub filter_type: String,
}

/// A signing profile's ARN, in AWS Signer's form:
/// `arn:<partition>:signer:<region>:<account>:/signing-profiles/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
}

impl ProfileArn {
    pub fn new(region: &str, account: &str, name: &str) -> ProfileArn {
        ProfileArn { partition: "aws".into(), region: region.into(), account: account.into(), name: name.into() }
    }

    pub fn parse(arn: &str) -> Option<ProfileArn> {
        let rest = arn.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(":signer:")?;
        let (region, rest) = rest.split_once(':')?;
        let (account, name) = rest.split_once(":/signing-profiles/")?;
        let partition_ok = partition == "aws"
            || partition.strip_prefix("aws-").is_some_and(|p| {
                p.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
            });
        let region_ok =
            !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        (partition_ok && region_ok && account_ok && valid_profile_name(name) && arn.len() <= 200).then(|| ProfileArn {
            partition: partition.into(),
            region: region.into(),
            account: account.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for ProfileArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "arn:{}:signer:{}:{}:/signing-profiles/{}", self.partition, self.region, self.account, self.name)
    }
}

/// A signing profile's name: `[a-zA-Z0-9_]{2,}`, as the profile ARN's pattern has it (at most
/// 64 characters, as AWS Signer's profile names).
pub fn valid_profile_name(name: &str) -> bool {
    (2..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The model's pattern for a filter: slash-separated path parts of lower-case letters, digits
/// and `*`, with single `.`, `_` or `-` between runs; 1 to 256 characters.
fn filter_value_ok(f: &str) -> bool {
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'*';
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && word(b[0])
            && word(b[b.len() - 1])
            && b.iter().all(|&c| word(c) || matches!(c, b'.' | b'_' | b'-'))
            && !b.windows(2).any(|w| !word(w[0]) && !word(w[1]))
    };
    (1..=256).contains(&f.len()) && f.split('/').all(part_ok)
}

impl SigningConfiguration {
    /// Validates a configuration as `PutSigningConfiguration` receives it (the profiles'
    /// existence is the registry's to check).
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > 10 {
            return Err(format!("rules may hold at most 10 rules, got {}", self.rules.len()));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("signingConfiguration.rules[{i}]");
            if ProfileArn::parse(&rule.signing_profile_arn).is_none() {
                return Err(format!(
                    "{at}.signingProfileArn: {:?} is not a signing profile ARN \
                     (arn:aws:signer:<region>:<account>:/signing-profiles/<name>)",
                    rule.signing_profile_arn
                ));
            }
            let Some(filters) = &rule.repository_filters else { continue };
            if filters.is_empty() || filters.len() > 100 {
                return Err(format!("{at}.repositoryFilters must hold between 1 and 100 filters"));
            }
            for (j, f) in filters.iter().enumerate() {
                if f.filter_type != "WILDCARD_MATCH" {
                    return Err(format!(
                        "{at}.repositoryFilters[{j}]: filterType must be WILDCARD_MATCH, got {:?}",
                        f.filter_type
                    ));
                }
                if !filter_value_ok(&f.filter) {
                    return Err(format!(
                        "{at}.repositoryFilters[{j}]: filter {:?} must be a repository name pattern \
                         (lower-case letters, digits, '*', '._-' separators, '/' between parts)",
                        f.filter
                    ));
                }
            }
        }
        Ok(())
    }

    /// The profiles that sign `repository`'s images: of every rule whose filters match it (a
    /// rule without filters matches every repository), each profile once, in rule order.
    pub fn profiles_for(&self, repository: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for rule in &self.rules {
            let matched = rule
                .repository_filters
                .as_ref()
                .is_none_or(|filters| filters.iter().any(|f| wildcard::matches(&f.filter, repository)));
            if matched && !out.contains(&rule.signing_profile_arn.as_str()) {
                out.push(&rule.signing_profile_arn);
            }
        }
        out
    }
}

/// The tag-scheme tag of `digest`'s signatures: `sha256:<hex>` → `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The digest a tag-scheme attachment tag (`<algorithm>-<hex>.sig|.att|.sbom`) names, with the
/// attachment's kind.
pub fn attachment_of(tag: &str) -> Option<(String, &str)> {
    let (stem, kind) = tag.rsplit_once('.')?;
    if !matches!(kind, "sig" | "att" | "sbom") {
        return None;
    }
    let (algorithm, hex) = stem.split_once('-')?;
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    let hex_ok = hex.len() == hex_len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex_ok.then(|| (format!("{algorithm}:{hex}"), kind))
}

/// Whether `tag` is a signature tag (`sha256-<hex>.sig`): such tags move as signatures are
/// added, so tag immutability does not hold them.
pub fn is_signature_tag(tag: &str) -> bool {
    attachment_of(tag).is_some_and(|(_, kind)| kind == "sig")
}

/// What a pushed manifest is, as far as signing goes.
pub struct PushedManifest<'a> {
    pub has_subject: bool,
    /// Its layers' media types (none for an index).
    pub layer_media_types: &'a [&'a str],
    /// The tags it was pushed with.
    pub tags: &'a [String],
}

/// Whether a push is an image Berth signs: never a referrer (a manifest with a `subject`),
/// nothing under a tag-scheme attachment tag, nothing whose layers are simple-signing payloads
/// (so a signature is never signed in turn).
pub fn is_signable(m: &PushedManifest<'_>) -> bool {
    !m.has_subject
        && !m.tags.iter().any(|t| attachment_of(t).is_some())
        && !m.layer_media_types.contains(&SIMPLE_SIGNING)
}

/// The simple-signing payload for `digest` under `docker_reference` (`host/repository:tag`, or
/// `host/repository` for a push by digest), as containers/image writes and verifies it.
pub fn simple_signing_payload(docker_reference: &str, digest: &str, creator: &str, timestamp: i64) -> Vec<u8> {
    let payload = serde_json::json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": SIGNATURE_TYPE,
        },
        "optional": { "creator": creator, "timestamp": timestamp },
    });
    serde_json::to_vec(&payload).expect("a payload serializes")
}

/// The parts of a simple-signing payload verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedClaim {
    pub docker_reference: String,
    pub manifest_digest: String,
}

/// Reads a simple-signing payload (of any signer), refusing anything that is not one.
pub fn parse_simple_signing(payload: &[u8]) -> Option<SignedClaim> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = v.get("critical")?;
    if critical.get("type")?.as_str()? != SIGNATURE_TYPE {
        return None;
    }
    Some(SignedClaim {
        docker_reference: critical.get("identity")?.get("docker-reference")?.as_str()?.to_string(),
        manifest_digest: critical.get("image")?.get("docker-manifest-digest")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(arn: &str, filters: Option<&[&str]>) -> SigningRule {
        SigningRule {
            signing_profile_arn: arn.into(),
            repository_filters: filters.map(|fs| {
                fs.iter().map(|f| SigningFilter { filter: (*f).into(), filter_type: "WILDCARD_MATCH".into() }).collect()
            }),
        }
    }

    const PROD: &str = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/prod_signer";
    const ALL: &str = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/everything";

    #[test]
    fn profile_arns_round_trip_and_refuse_what_signer_would() {
        let arn = ProfileArn::parse(PROD).unwrap();
        assert_eq!(
            (arn.account.as_str(), arn.name.as_str(), arn.region.as_str()),
            ("123456789012", "prod_signer", "us-east-1")
        );
        assert_eq!(arn.to_string(), PROD);
        assert_eq!(
            ProfileArn::new("eu-west-1", "123456789012", "ab").to_string(),
            "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ab"
        );
        for bad in [
            "arn:aws:signer:us-east-1:123456789012:/signing-profiles/a",
            "arn:aws:signer:us-east-1:123456789012:/signing-profiles/has-dash",
            "arn:aws:signer:us-east-1:12345678901:/signing-profiles/ok",
            "arn:aws:signer:US:123456789012:/signing-profiles/ok",
            "arn:aws:kms:us-east-1:123456789012:/signing-profiles/ok",
            "arn:aws:signer:us-east-1:123456789012:signing-profiles/ok",
        ] {
            assert!(ProfileArn::parse(bad).is_none(), "{bad}");
        }
        assert!(valid_profile_name("a_1") && !valid_profile_name("a") && !valid_profile_name("a b"));
    }

    #[test]
    fn validation_follows_the_model() {
        let ok = SigningConfiguration { rules: vec![rule(PROD, Some(&["prod/*", "team-a/app.x"])), rule(ALL, None)] };
        ok.validate().unwrap();
        SigningConfiguration::default().validate().unwrap();
        let eleven = SigningConfiguration { rules: (0..11).map(|_| rule(ALL, None)).collect() };
        assert!(eleven.validate().unwrap_err().contains("at most 10"));
        assert!(
            SigningConfiguration { rules: vec![rule(PROD, Some(&[]))] }
                .validate()
                .unwrap_err()
                .contains("between 1 and 100")
        );
        for bad in ["Prod/*", "prod//x", "prod/", "-x", "a..b", ""] {
            let e = SigningConfiguration { rules: vec![rule(PROD, Some(&[bad]))] }.validate().unwrap_err();
            assert!(e.contains("repositoryFilters[0]"), "{bad}: {e}");
        }
        let mut wrong_type = rule(PROD, Some(&["x"]));
        wrong_type.repository_filters.as_mut().unwrap()[0].filter_type = "PREFIX_MATCH".into();
        assert!(SigningConfiguration { rules: vec![wrong_type] }.validate().unwrap_err().contains("WILDCARD_MATCH"));
        assert!(SigningConfiguration { rules: vec![rule("arn:aws:signer:x", None)] }.validate().is_err());
    }

    #[test]
    fn profiles_follow_the_filters_each_once() {
        let c = SigningConfiguration {
            rules: vec![rule(PROD, Some(&["prod/*"])), rule(PROD, Some(&["*app*"])), rule(ALL, Some(&["*"]))],
        };
        assert_eq!(c.profiles_for("prod/app"), [PROD, ALL]);
        assert_eq!(c.profiles_for("dev/app"), [PROD, ALL]);
        assert_eq!(c.profiles_for("dev/svc"), [ALL]);
        let none = SigningConfiguration { rules: vec![rule(PROD, None)] };
        assert_eq!(none.profiles_for("anything/at/all"), [PROD]);
        assert!(SigningConfiguration::default().profiles_for("x").is_empty());
    }

    #[test]
    fn attachment_tags_and_what_is_never_signed() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let tag = signature_tag(&d);
        assert_eq!(tag, format!("sha256-{}.sig", "ab".repeat(32)));
        assert_eq!(attachment_of(&tag), Some((d.clone(), "sig")));
        assert!(is_signature_tag(&tag));
        assert_eq!(attachment_of(&tag.replace(".sig", ".att")).map(|a| a.1), Some("att"));
        assert!(!is_signature_tag(&tag.replace(".sig", ".sbom")));
        for not in ["v1.sig", "sha256-abc.sig", &format!("sha256-{}.sig", "AB".repeat(32)), "sha256-x.txt"] {
            assert!(attachment_of(not).is_none(), "{not}");
        }
        let tags = vec!["v1".to_string()];
        let image = PushedManifest {
            has_subject: false,
            layer_media_types: &["application/vnd.oci.image.layer.v1.tar"],
            tags: &tags,
        };
        assert!(is_signable(&image));
        assert!(!is_signable(&PushedManifest { has_subject: true, ..image }));
        let sig_tags = vec![tag];
        assert!(!is_signable(&PushedManifest { has_subject: false, layer_media_types: &[], tags: &sig_tags }));
        assert!(!is_signable(&PushedManifest {
            has_subject: false,
            layer_media_types: &[SIMPLE_SIGNING],
            tags: &tags
        }));
    }

    #[test]
    fn the_payload_is_what_containers_image_reads() {
        let d = format!("sha256:{}", "0".repeat(64));
        let p = simple_signing_payload("127.0.0.1:5000/prod/app:v1", &d, "Berth", 1_700_000_000);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["critical"]["type"], "cosign container image signature");
        assert_eq!(v["critical"].as_object().unwrap().len(), 3);
        assert_eq!(v["optional"]["timestamp"], 1_700_000_000);
        assert_eq!(
            parse_simple_signing(&p),
            Some(SignedClaim { docker_reference: "127.0.0.1:5000/prod/app:v1".into(), manifest_digest: d })
        );
        assert!(parse_simple_signing(br#"{"critical":{"type":"atomic container signature"}}"#).is_none());
        assert!(parse_simple_signing(b"not json").is_none());
    }
}
