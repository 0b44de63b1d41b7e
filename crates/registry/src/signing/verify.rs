//! Verification on pull — beyond ECR, which cannot refuse unsigned images: a repository may
//! require that every image pulled from it is signed, in the tag scheme, by one of a set of
//! trusted keys (Berth's signing profiles, or PEM public keys of clients' own signatures).
//! A signature counts when the key verifies it and its payload's `docker-manifest-digest` is the
//! image's: no transparency log, no certificates, and the docker reference is the client's to
//! check (skopeo and podman do).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine;
use berth_meta::StoredManifest;
use berth_oci::Digest;
use berth_rules::signing::{SIMPLE_SIGNING, parse_simple_signing, signature_tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Registry, RegistryError};

/// The most signatures of one image a check reads, and the largest payload it reads (a
/// simple-signing payload is a few hundred bytes).
const MAX_SIGNATURES: usize = 64;
const MAX_PAYLOAD: usize = 64 << 10;

/// A repository's verification on pull, as stored (JSON) and as the Berth extension shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullVerification {
    /// Berth signing profiles of the repository's account, by ARN.
    #[serde(default)]
    pub trusted_signing_profile_arns: Vec<String>,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, ECDSA P-256), e.g. a cosign key.
    #[serde(default)]
    pub trusted_public_keys: Vec<String>,
}

/// A public key signatures are checked with, and how a refusal names it.
pub struct TrustedKey {
    pub name: String,
    spki: Vec<u8>,
}

impl TrustedKey {
    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of an ECDSA P-256 key.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustedKey, String> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PUBLIC KEY-----")
            .collect();
        let spki = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| format!("{name} is not a PEM public key (-----BEGIN PUBLIC KEY-----)"))?;
        let key = TrustedKey { name: name.to_string(), spki };
        // A key that cannot verify anything is refused when it is configured, not at each pull.
        if !key.is_p256() {
            return Err(format!("{name} is not an ECDSA P-256 public key"));
        }
        Ok(key)
    }

    fn is_p256(&self) -> bool {
        // id-ecPublicKey with the prime256v1 curve, as a SubjectPublicKeyInfo names it.
        const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        self.spki.windows(P256_OID.len()).any(|w| w == P256_OID)
    }

    /// Whether `signature` (base64 of an ASN.1 DER ECDSA signature) is this key's over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.spki).verify(payload, &signature).is_ok()
    }
}

/// One tag-scheme signature: its payload and the signature's base64.
pub(crate) struct TagSignature {
    pub payload: Vec<u8>,
    pub signature: String,
}

impl Registry {
    /// Sets (`Some`) or removes a repository's verification on pull. Every profile must be the
    /// account's, every key a P-256 PEM public key; at least one of either.
    pub async fn set_pull_verification(
        &self,
        account: &str,
        name: &str,
        config: Option<&PullVerification>,
    ) -> Result<(), RegistryError> {
        let text = match config {
            Some(c) => {
                self.trusted_keys(account, c).await?;
                if c.trusted_signing_profile_arns.is_empty() && c.trusted_public_keys.is_empty() {
                    return Err(RegistryError::InvalidParameter(
                        "a verification on pull trusts at least one signing profile or public key".into(),
                    ));
                }
                Some(serde_json::to_string(c).expect("a configuration serializes"))
            }
            None => None,
        };
        self.meta().set_pull_verification(name, text.as_deref()).await.map_err(RegistryError::in_repository(name))
    }

    /// A repository's verification on pull, if it has one.
    pub async fn pull_verification(&self, name: &str) -> Result<Option<PullVerification>, RegistryError> {
        match self.meta().pull_verification(name).await.map_err(RegistryError::in_repository(name))? {
            Some(text) => Ok(Some(parse_stored(&text)?)),
            None => Ok(None),
        }
    }

    /// The keys a configuration trusts; a profile that is not the account's, or a key that is
    /// not a P-256 PEM public key, is `InvalidParameter` naming it.
    async fn trusted_keys(&self, account: &str, c: &PullVerification) -> Result<Vec<TrustedKey>, RegistryError> {
        let mut keys = Vec::new();
        for arn in &c.trusted_signing_profile_arns {
            let profile = self.meta().signing_profile(arn).await?.filter(|p| p.account_id == account);
            let profile = profile.ok_or_else(|| {
                RegistryError::InvalidParameter(format!(
                    "the signing profile {arn} does not exist in account {account}"
                ))
            })?;
            keys.push(TrustedKey::from_pem(arn, &profile.public_key_pem).map_err(RegistryError::Internal)?);
        }
        for (i, pem) in c.trusted_public_keys.iter().enumerate() {
            keys.push(
                TrustedKey::from_pem(&format!("trustedPublicKeys[{i}]"), pem)
                    .map_err(RegistryError::InvalidParameter)?,
            );
        }
        Ok(keys)
    }

    /// The pull's check: the manifest about to be served is exempt, or signed by a key the
    /// repository trusts, or a child of an index that is; otherwise `PullUnverified`.
    pub(crate) async fn check_pull_verification(&self, name: &str, m: &StoredManifest) -> Result<(), RegistryError> {
        let Some(text) = &m.pull_gate.verification else { return Ok(()) };
        if !is_runnable(&m.content) {
            return Ok(());
        }
        let config = parse_stored(text)?;
        let account = crate::repositories::split_repository_key(self.registry_id(), name).0;
        let keys = self.trusted_keys(account, &config).await?;
        if self.signed_by(name, &m.digest, &keys).await? {
            return Ok(());
        }
        for parent in self.meta().manifest_parents(name, m.digest.as_str()).await? {
            if let Ok(parent) = Digest::parse(&parent)
                && self.signed_by(name, &parent, &keys).await?
            {
                return Ok(());
            }
        }
        Err(RegistryError::PullUnverified {
            repository: name.to_string(),
            digest: m.digest.clone(),
            trusted: keys.into_iter().map(|k| k.name).collect(),
        })
    }

    /// Whether some tag-scheme signature of `digest` verifies with one of `keys` and claims it.
    async fn signed_by(&self, name: &str, digest: &Digest, keys: &[TrustedKey]) -> Result<bool, RegistryError> {
        for s in self.tag_signatures(name, digest).await? {
            let claims_it = parse_simple_signing(&s.payload).is_some_and(|c| c.manifest_digest == digest.as_str());
            if claims_it && keys.iter().any(|k| k.verifies(&s.payload, &s.signature)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The signatures `digest`'s `.sig` manifest holds, payloads read.
    pub(crate) async fn tag_signatures(&self, name: &str, digest: &Digest) -> Result<Vec<TagSignature>, RegistryError> {
        let Some(sig) = self.meta().tagged_manifest(name, &signature_tag(digest.as_str())).await? else {
            return Ok(Vec::new());
        };
        let sig = self.at_rest().open_manifest(name, sig).await?;
        let doc: Value = serde_json::from_slice(&sig.content).unwrap_or_default();
        let mut out = Vec::new();
        // Bounded: whoever may push may write a .sig manifest, and every pull reads it.
        for layer in doc["layers"].as_array().into_iter().flatten().take(MAX_SIGNATURES) {
            let (Some(blob), Some(signature)) =
                (layer["digest"].as_str(), layer["annotations"][berth_rules::signing::SIGNATURE_ANNOTATION].as_str())
            else {
                continue;
            };
            if layer["mediaType"] != SIMPLE_SIGNING {
                continue;
            }
            if let Some(payload) = self.read_blob_at_most(name, blob, MAX_PAYLOAD).await {
                out.push(TagSignature { payload, signature: signature.to_string() });
            }
        }
        Ok(out)
    }
}

fn parse_stored(text: &str) -> Result<PullVerification, RegistryError> {
    serde_json::from_str(text).map_err(|e| RegistryError::Internal(format!("stored verification on pull: {e}")))
}

/// What verification on pull guards: an image a runtime would run — an index, or an image
/// manifest with at least one filesystem layer (`application/vnd.oci.image.layer.*`,
/// `application/vnd.docker.image.rootfs.*`). Signatures, attestations, SBOMs and other
/// artifacts carry none and stay readable; how a manifest is tagged, or whether it names a
/// `subject`, decides nothing (a runnable image with a `subject` is still checked).
fn is_runnable(content: &[u8]) -> bool {
    let doc: Value = serde_json::from_slice(content).unwrap_or_default();
    if doc.get("manifests").is_some_and(Value::is_array) {
        return true;
    }
    doc["layers"].as_array().into_iter().flatten().any(|l| {
        l["mediaType"].as_str().is_some_and(|t| {
            t.starts_with("application/vnd.oci.image.layer.") || t.starts_with("application/vnd.docker.image.rootfs.")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn pem_of(pair: &EcdsaKeyPair) -> String {
        let der = pair.public_key().as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    fn pair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_trusted_key_verifies_its_own_signatures_only() {
        let (mine, theirs) = (pair(), pair());
        let key = TrustedKey::from_pem("mine", &pem_of(&mine)).unwrap();
        let rng = SystemRandom::new();
        let sig = |p: &EcdsaKeyPair, m: &[u8]| {
            base64::engine::general_purpose::STANDARD.encode(p.sign(&rng, m).unwrap().as_ref())
        };
        assert!(key.verifies(b"payload", &sig(&mine, b"payload")));
        assert!(!key.verifies(b"payload", &sig(&theirs, b"payload")));
        assert!(!key.verifies(b"other", &sig(&mine, b"payload")));
        assert!(!key.verifies(b"payload", "not base64!"));
    }

    #[test]
    fn keys_that_are_not_p256_pem_are_refused() {
        assert!(TrustedKey::from_pem("k", "hello").is_err());
        assert!(TrustedKey::from_pem("k", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }

    #[test]
    fn only_what_a_runtime_would_run_is_guarded() {
        let sig = format!(r#"{{"layers":[{{"mediaType":"{SIMPLE_SIGNING}"}}]}}"#);
        assert!(!is_runnable(sig.as_bytes()));
        assert!(!is_runnable(br#"{"layers":[{"mediaType":"application/vnd.dsse.envelope.v1+json"}]}"#));
        assert!(!is_runnable(br#"{"subject":{"digest":"sha256:00"},"layers":[{"mediaType":"application/json"}]}"#));
        // A subject or a signature layer beside a filesystem layer exempts nothing.
        let disguised = format!(
            r#"{{"subject":{{"digest":"sha256:00"}},"layers":[{{"mediaType":"{SIMPLE_SIGNING}"}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}}]}}"#
        );
        assert!(is_runnable(disguised.as_bytes()));
        assert!(is_runnable(br#"{"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip"}]}"#));
        assert!(is_runnable(br#"{"manifests":[]}"#));
    }
}
