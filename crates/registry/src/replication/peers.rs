//! Replication peers: the deployments of other regions this one sends replicas to or takes
//! them from. Both sides of a pair hold one credential (an access key pair that belongs to no
//! user, its secret sealed under each side's master keyring); requests on the replication
//! route are SigV4-signed with it for the service `berth-replication` and the destination's
//! region, so a user's key never opens that route and a peer's key opens nothing else.
//!
//! Setting up a pair: `berth admin add-replication-peer --region <theirs> --endpoint <url>` on
//! one side makes the credential and prints a peer token (this side's region, the credential
//! and the accounts it holds); the same command with `--token` on the other side takes it in
//! and prints that side's token, which the first side takes in the same way to learn the
//! accounts the second holds (needed only to replicate back). A side accepts replicas only on
//! behalf of the accounts its peer's token named.

use base64::Engine as _;
use berth_auth::EpochSeconds;
use berth_auth::keys;
use berth_auth::sigv4;
use berth_meta::{MetaError, ReplicationPeer, SealedKind};
use serde::{Deserialize, Serialize};

use crate::identity::{AuthError, parse_signature, verify_signature};
use crate::{Registry, RegistryError};

/// The service replication requests are signed for.
pub const PEER_SERVICE: &str = "berth-replication";

const TOKEN_PREFIX: &str = "berthpeer1.";

/// What one side of a pair hands the other: who it is, the shared credential, and the
/// accounts it holds. Secret: it carries the credential's secret in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerToken {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub accounts: Vec<String>,
}

impl PeerToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serializes");
        format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(text: &str) -> Result<PeerToken, String> {
        let body = text.trim().strip_prefix(TOKEN_PREFIX).ok_or("not a Berth peer token")?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| format!("the peer token does not decode: {e}"))?;
        let token: PeerToken =
            serde_json::from_slice(&json).map_err(|e| format!("the peer token does not parse: {e}"))?;
        if !keys::is_access_key_id(&token.access_key_id) || token.secret_access_key.len() < 16 {
            return Err("the peer token holds no usable credential".into());
        }
        if let Some(bad) = token.accounts.iter().find(|a| !is_account_id(a)) {
            return Err(format!("the peer token names {bad:?}, which is not an account id"));
        }
        Ok(token)
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What `add_replication_peer` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PeerSetup {
    /// The peer's region.
    pub region: String,
    /// Where to send replicas for that region (`http(s)://host[:port]`); none to only accept.
    pub endpoint: Option<String>,
    /// PEM certificates to trust for the endpoint.
    pub ca_pem: Option<String>,
    /// The other side's token: its credential is then the pair's, its accounts the peer's.
    pub token: Option<String>,
    /// The accounts the peer holds, instead of the token's.
    pub accounts: Option<Vec<String>>,
}

impl Registry {
    /// Adds or updates the peer of `setup.region`; returns it and this side's token for the
    /// other side. Without a token an existing peer keeps its credential (a new one is made
    /// for a new peer) and the accounts it had.
    pub async fn add_replication_peer(&self, setup: &PeerSetup) -> Result<(ReplicationPeer, String), RegistryError> {
        let invalid = |m: String| RegistryError::InvalidParameter(m);
        let region = setup.region.as_str();
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(invalid(format!("{region:?} is not a region name")));
        }
        if region == self.region() {
            return Err(invalid(format!(
                "{region} is this deployment's own region: its accounts replicate to each other in-process"
            )));
        }
        if let Some(e) = &setup.endpoint {
            let url = reqwest::Url::parse(e).map_err(|err| invalid(format!("endpoint {e:?}: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.path() != "/" {
                return Err(invalid(format!("endpoint {e:?}: give http(s)://host[:port], without a path")));
            }
        }
        if let Some(pem) = &setup.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| invalid(format!("the CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(invalid("the CA file holds no certificate".into()));
            }
        }
        let existing = self.meta().replication_peer(region).await?;
        let token = setup.token.as_deref().map(PeerToken::decode).transpose().map_err(invalid)?;
        if let Some(t) = &token
            && t.region != region
        {
            return Err(invalid(format!("the token is the peer token of {}, not of {region}", t.region)));
        }
        let keys = &self.master_keys;
        let (access_key_id, sealed_secret, secret) = match (&token, &existing) {
            (Some(t), Some(p)) if t.access_key_id == p.access_key_id => {
                (p.access_key_id.clone(), p.sealed_secret.clone(), t.secret_access_key.clone())
            }
            (Some(t), _) => {
                let sealed =
                    keys.seal(SealedKind::ReplicationPeerSecret, &t.access_key_id, t.secret_access_key.as_bytes());
                (t.access_key_id.clone(), sealed, t.secret_access_key.clone())
            }
            (None, Some(p)) => (p.access_key_id.clone(), p.sealed_secret.clone(), self.peer_secret(p)?),
            (None, None) => {
                let (id, secret) = (keys::new_access_key_id(), keys::new_secret_access_key());
                (id.clone(), keys.seal(SealedKind::ReplicationPeerSecret, &id, secret.as_bytes()), secret)
            }
        };
        let accounts = match (&setup.accounts, &token, &existing) {
            (Some(a), _, _) => a.clone(),
            (None, Some(t), _) => t.accounts.clone(),
            (None, None, Some(p)) => p.accounts.clone(),
            (None, None, None) => Vec::new(),
        };
        if let Some(bad) = accounts.iter().find(|a| !is_account_id(a)) {
            return Err(invalid(format!("{bad:?} is not an account id")));
        }
        let peer = ReplicationPeer {
            region: region.to_string(),
            endpoint: setup.endpoint.clone().or_else(|| existing.as_ref().and_then(|p| p.endpoint.clone())),
            ca_pem: setup.ca_pem.clone().or_else(|| existing.as_ref().and_then(|p| p.ca_pem.clone())),
            access_key_id: access_key_id.clone(),
            sealed_secret,
            accounts,
            created_at: berth_meta::now_ms(),
        };
        match self.meta().put_replication_peer(&peer).await {
            Ok(()) => {}
            Err(MetaError::AlreadyExists) => {
                return Err(invalid("another region's peer holds this credential".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let mine = PeerToken {
            region: self.region().to_string(),
            access_key_id,
            secret_access_key: secret,
            accounts: self.meta().accounts().await?,
        };
        Ok((peer, mine.encode()))
    }

    pub async fn replication_peers(&self) -> Result<Vec<ReplicationPeer>, RegistryError> {
        Ok(self.meta().replication_peers().await?)
    }

    /// Whether there was a peer of `region` to remove. Jobs for its region then wait as
    /// `DESTINATION_UNREACHABLE` until one is added again.
    pub async fn remove_replication_peer(&self, region: &str) -> Result<bool, RegistryError> {
        Ok(self.meta().delete_replication_peer(region).await?)
    }

    /// The shared credential's secret, opened for one use.
    pub(super) fn peer_secret(&self, peer: &ReplicationPeer) -> Result<String, RegistryError> {
        let secret = self.master_keys.open(
            SealedKind::ReplicationPeerSecret,
            &peer.access_key_id,
            peer.sealed_secret.as_bytes(),
        )?;
        String::from_utf8(secret).map_err(|_| RegistryError::Internal("a peer secret is not text".into()))
    }

    /// The peer that signed a request to the replication route: signed with a peer's
    /// credential, for `berth-replication` in this deployment's region. Any other key (a
    /// user's, an account root's) is unknown here.
    pub async fn authenticate_peer(
        &self,
        req: &sigv4::Request<'_>,
        now: EpochSeconds,
    ) -> Result<ReplicationPeer, AuthError> {
        let cred = parse_signature(req)?;
        if !keys::is_access_key_id(&cred.access_key_id) {
            return Err(AuthError::UnknownKey);
        }
        let Some(peer) = self
            .meta()
            .replication_peer_by_key(&cred.access_key_id)
            .await
            .map_err(|e| AuthError::Backend(e.to_string()))?
        else {
            return Err(AuthError::UnknownKey);
        };
        if cred.service != PEER_SERVICE || cred.region != self.region() {
            return Err(AuthError::Signature(format!(
                "Credential should be scoped to '{}' in '{}'. ",
                PEER_SERVICE,
                self.region()
            )));
        }
        let secret = self.peer_secret(&peer).map_err(|e| AuthError::Backend(e.to_string()))?;
        verify_signature(req, &cred, &secret, now)?;
        Ok(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> PeerToken {
        PeerToken {
            region: "us-east-1".into(),
            access_key_id: "AKIAPEER000000000001".into(),
            secret_access_key: "0123456789abcdef0123456789abcdef01234567".into(),
            accounts: vec!["123456789012".into()],
        }
    }

    #[test]
    fn a_token_travels_as_one_word_and_comes_back_whole() {
        let text = token().encode();
        assert!(text.starts_with(TOKEN_PREFIX) && !text.contains(char::is_whitespace));
        assert_eq!(PeerToken::decode(&format!("  {text}\n")).unwrap(), token());
    }

    #[test]
    fn a_token_that_is_not_one_is_refused() {
        assert!(PeerToken::decode("AKIA...").is_err());
        assert!(PeerToken::decode("berthpeer1.!!!").is_err());
        let bad_account = PeerToken { accounts: vec!["12".into()], ..token() };
        assert!(PeerToken::decode(&bad_account.encode()).unwrap_err().contains("account id"));
        let bad_key = PeerToken { access_key_id: "A/B".into(), ..token() };
        assert!(PeerToken::decode(&bad_key.encode()).is_err());
    }
}
