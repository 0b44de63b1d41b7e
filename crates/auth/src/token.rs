//! Registry tokens: what `GetAuthorizationToken` returns and `/v2/` accepts as the password of
//! user `AWS`. A token is self-contained and signed with the registry's token key (HMAC-SHA256),
//! so any node holding the key can check it without a lookup: `berth1.<payload>.<mac>`, both
//! parts base64url. It names the principal it was issued to and when it expires.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::EpochSeconds;

const PREFIX: &str = "berth1";
/// Tokens live 12 hours, as ECR's do.
pub const TOKEN_LIFETIME_SECONDS: i64 = 12 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id of the principal.
    #[serde(rename = "a")]
    pub account: String,
    /// Principal id (the user id, or the account id for the root).
    #[serde(rename = "p")]
    pub principal: String,
    /// The access key the token was issued through (revoking the key revokes the token).
    #[serde(rename = "k")]
    pub access_key_id: String,
    /// Expiry, epoch seconds.
    #[serde(rename = "e")]
    pub expires_at: EpochSeconds,
    /// The registry the token is for: `None` for the private registry (ECR's
    /// `GetAuthorizationToken`), `Some("ecr-public")` for the public one — which the private
    /// registry refuses.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature is not valid")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

pub fn issue(key: &[u8], claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("{PREFIX}.{payload}");
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
}

pub fn verify(key: &[u8], token: &str, now: EpochSeconds) -> Result<Claims, TokenError> {
    let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (prefix, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
    if prefix != PREFIX {
        return Err(TokenError::Malformed);
    }
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed)?;
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), signed.as_bytes(), &mac)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(TokenError::Malformed)?;
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// When a token expires, read without checking its signature (for a token already checked).
pub fn expiry(token: &str) -> Option<EpochSeconds> {
    let (signed, _) = token.rsplit_once('.')?;
    let (_, payload) = signed.split_once('.')?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(claims.expires_at)
}

/// Parses an HTTP Basic `Authorization` value into (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `base64("AWS:" + token)`, the `authorizationToken` of `GetAuthorizationToken`.
pub fn docker_authorization(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            audience: None,
            account: "123456789012".into(),
            principal: "AIDAX".into(),
            access_key_id: "AKIAX".into(),
            expires_at: 1000,
        }
    }

    #[test]
    fn issue_and_verify() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = issue(key, &claims());
        assert_eq!(verify(key, &t, 999), Ok(claims()));
        assert_eq!(verify(key, &t, 1000), Err(TokenError::Expired));
        assert_eq!(verify(b"another key", &t, 0), Err(TokenError::BadSignature));
        // Forged payload with the original MAC.
        let (_, mac) = t.rsplit_once('.').unwrap();
        let forged_claims = Claims { expires_at: 9_999_999_999, ..claims() };
        let forged = format!("{PREFIX}.{}.{mac}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap()));
        assert_eq!(verify(key, &forged, 0), Err(TokenError::BadSignature));
        for bad in ["", "x", "berth1.x", "other.e30.AAAA", "berth1.!!.AAAA"] {
            assert!(verify(key, bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_auth_round_trip() {
        let header = format!("Basic {}", docker_authorization("tok.en"));
        assert_eq!(parse_basic(&header), Some(("AWS".into(), "tok.en".into())));
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
