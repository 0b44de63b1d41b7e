//! The web console's sessions: sign-in with an access key id and secret, sessions kept in the
//! metadata store (so every node knows them and signing out revokes them) by the SHA-256 of
//! their cookie value, bound to the access key (a session whose key is no longer active ends at
//! its next request), expiring after 12 hours; each with a CSRF token its forms carry. Failed
//! sign-ins are throttled per access key and per source address: after 5 within 15 minutes,
//! further attempts are refused until the oldest of them is 15 minutes old.

use std::net::IpAddr;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_meta::{ConsoleSession, now_ms};

use crate::identity::{AuthError, Caller, Identity};
use crate::{Registry, RegistryError};

/// How long a session lasts.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// The window failed sign-ins are counted in.
pub const SIGN_IN_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failed sign-ins per key or per address within the window before further ones are refused.
pub const MAX_FAILED_SIGN_INS: usize = 5;

/// A new session: the cookie value (given to the browser, never stored) and its CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub cookie: String,
    pub csrf_token: String,
    pub expires_at_ms: i64,
    pub caller: Caller,
}

/// Who a session's requests act as.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub caller: Caller,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

/// Why a sign-in was refused.
#[derive(Debug)]
pub enum SignInRefusal {
    /// Too many failed sign-ins for the key or the address; try again after this many seconds.
    Throttled {
        retry_after_seconds: u64,
    },
    /// The key is unknown or inactive, or the secret is not its own (one answer for all, so
    /// the form tells no one which keys exist).
    Invalid,
    Failed(RegistryError),
}

impl From<berth_meta::MetaError> for SignInRefusal {
    fn from(e: berth_meta::MetaError) -> Self {
        SignInRefusal::Failed(e.into())
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn id_hash(cookie: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, cookie.as_bytes()).as_ref())
}

/// The throttling subjects of a sign-in.
fn subjects(access_key_id: &str, source: Option<IpAddr>) -> Vec<String> {
    let mut s = vec![format!("key:{access_key_id}")];
    if let Some(ip) = source {
        s.push(format!("ip:{ip}"));
    }
    s
}

impl Registry {
    /// Signs in with an access key id and secret from `source`.
    pub async fn console_sign_in(
        &self,
        identity: &Identity,
        access_key_id: &str,
        secret: &str,
        source: Option<IpAddr>,
    ) -> Result<SignedIn, SignInRefusal> {
        let now = now_ms();
        let since = now - SIGN_IN_WINDOW_MS;
        let subjects = subjects(access_key_id.trim(), source);
        for subject in &subjects {
            let failures = self.meta().console_sign_in_failures(subject, since).await?;
            if failures.len() >= MAX_FAILED_SIGN_INS {
                // Free again once enough of them are older than the window.
                let freed_at = failures[failures.len() - MAX_FAILED_SIGN_INS] + SIGN_IN_WINDOW_MS;
                return Err(SignInRefusal::Throttled { retry_after_seconds: ((freed_at - now) / 1000).max(1) as u64 });
            }
        }
        let caller = match identity.authenticate_secret(access_key_id.trim(), secret).await {
            Ok(caller) => caller,
            Err(AuthError::Backend(e)) => return Err(SignInRefusal::Failed(RegistryError::Internal(e))),
            Err(_) => {
                self.meta().record_console_sign_in_failure(&subjects, now, since).await?;
                return Err(SignInRefusal::Invalid);
            }
        };
        let cookie = random_token();
        let session = ConsoleSession {
            id_hash: id_hash(&cookie),
            access_key_id: caller.access_key_id.clone(),
            csrf_token: random_token(),
            created_at: now,
            expires_at: now + SESSION_LIFETIME_MS,
        };
        self.meta().create_console_session(&session).await?;
        // Expired sessions go as new ones come.
        if let Err(e) = self.meta().delete_expired_console_sessions(now).await {
            tracing::warn!(error = %e, "could not forget expired console sessions");
        }
        Ok(SignedIn { cookie, csrf_token: session.csrf_token, expires_at_ms: session.expires_at, caller })
    }

    /// The session a cookie value names, if it is signed in: not expired, and its access key
    /// still active (a session whose key is not is ended here).
    pub async fn console_session(
        &self,
        identity: &Identity,
        cookie: &str,
    ) -> Result<Option<ConsoleUser>, RegistryError> {
        let Some(session) = self.meta().console_session(&id_hash(cookie)).await? else { return Ok(None) };
        if session.expires_at <= now_ms() {
            self.meta().delete_console_session(&session.id_hash).await?;
            return Ok(None);
        }
        match identity.caller_of_active_key(&session.access_key_id).await {
            Ok(caller) => {
                Ok(Some(ConsoleUser { caller, csrf_token: session.csrf_token, expires_at_ms: session.expires_at }))
            }
            Err(AuthError::Backend(e)) => Err(RegistryError::Internal(e)),
            Err(_) => {
                self.meta().delete_console_sessions(&session.access_key_id).await?;
                Ok(None)
            }
        }
    }

    /// Signs out: the session is gone for every node.
    pub async fn console_sign_out(&self, cookie: &str) -> Result<(), RegistryError> {
        self.meta().delete_console_session(&id_hash(cookie)).await?;
        Ok(())
    }
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub fn csrf_matches(user: &ConsoleUser, given: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(user.csrf_token.as_bytes(), given.as_bytes()).is_ok()
}
