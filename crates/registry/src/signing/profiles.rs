//! Signing profiles: the ECDSA P-256 / SHA-256 key pairs Berth holds for an account in place
//! of AWS Signer, named by Signer-form ARNs. The private key (PKCS#8) is sealed under the
//! master keyring (`SealedKind::SigningProfileKey`, so a master-key rotation re-seals it); the
//! public key is a PEM `PUBLIC KEY` anyone may be given to verify signatures.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use berth_meta::{MetaError, SealedKind, SigningProfile, now_ms};
use berth_rules::signing::{ProfileArn, valid_profile_name};

use crate::{Registry, RegistryError};

impl Registry {
    /// `berth admin create-signing-profile`: a new key pair for `account`.
    pub async fn create_signing_profile(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<SigningProfile, RegistryError> {
        if !valid_profile_name(name) {
            return Err(RegistryError::InvalidParameter(format!(
                "the signing profile name {name:?} must be 2 to 64 letters, digits or '_'"
            )));
        }
        let arn = ProfileArn::new(region, account, name).to_string();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| RegistryError::Internal("could not generate a P-256 key".into()))?;
        let pair = key_pair(pkcs8.as_ref())?;
        let spki =
            pair.public_key().as_der().map_err(|_| RegistryError::Internal("could not encode a public key".into()))?;
        let profile = SigningProfile {
            arn: arn.clone(),
            account_id: account.to_string(),
            name: name.to_string(),
            public_key_pem: pem("PUBLIC KEY", spki.as_ref()),
            sealed_private_key: self.master_keys.seal(SealedKind::SigningProfileKey, &arn, pkcs8.as_ref()),
            created_at: now_ms(),
            revoked_at: None,
        };
        match self.meta().create_signing_profile(&profile).await {
            Ok(()) => Ok(profile),
            Err(MetaError::AlreadyExists) => Err(RegistryError::InvalidParameter(format!(
                "account {account} already has a signing profile named {name:?}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// An account's signing profiles in name order.
    pub async fn signing_profiles(&self, account: &str) -> Result<Vec<SigningProfile>, RegistryError> {
        Ok(self.meta().signing_profiles(account).await?)
    }

    /// The profile of `account` named `name`.
    pub async fn signing_profile_named(&self, account: &str, name: &str) -> Result<SigningProfile, RegistryError> {
        let wanted = |p: &SigningProfile| p.name == name;
        self.signing_profiles(account).await?.into_iter().find(wanted).ok_or_else(|| {
            RegistryError::InvalidParameter(format!("account {account} has no signing profile named {name:?}"))
        })
    }

    /// Revokes a profile: it signs nothing from now on (what it signed stays, and stays
    /// verifiable with its public key).
    pub async fn revoke_signing_profile(&self, account: &str, name: &str) -> Result<SigningProfile, RegistryError> {
        let profile = self.signing_profile_named(account, name).await?;
        Ok(self.meta().revoke_signing_profile(&profile.arn, now_ms()).await?)
    }

    /// A profile's key pair, opened for signing.
    pub(crate) fn signing_key(&self, profile: &SigningProfile) -> Result<EcdsaKeyPair, RegistryError> {
        let pkcs8 = self.master_keys.open(
            SealedKind::SigningProfileKey,
            &profile.arn,
            profile.sealed_private_key.as_bytes(),
        )?;
        key_pair(&pkcs8)
    }
}

fn key_pair(pkcs8: &[u8]) -> Result<EcdsaKeyPair, RegistryError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        .map_err(|_| RegistryError::Internal("a signing profile's key is not a P-256 PKCS#8 key".into()))
}

/// `der` as PEM with the given label, base64 in lines of 64.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_wraps_at_64() {
        let p = super::pem("PUBLIC KEY", &[7u8; 91]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 124 - 64);
        assert_eq!(lines[3], "-----END PUBLIC KEY-----");
    }
}
