//! Who is calling: accounts, principals and access keys; SigV4 verification for the ECR API;
//! registry tokens for `/v2/`. Authentication ends here with a [`Caller`]; what the caller may
//! do is decided by the policy evaluator (the IAM issue), in one place, from that `Caller`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_auth::{EpochSeconds, keys, sigv4, token};
use berth_meta::{AccessKey, AccountStore, KeyUse, MetaError, Principal, PrincipalKind, SealedKind, now_ms};

use crate::RegistryError;
use crate::secrets::MasterKeys;

/// The authenticated principal behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub principal_id: String,
    /// `arn:aws:iam::<account>:root` or `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    pub access_key_id: String,
    pub kind: PrincipalKind,
}

/// Authentication failures, each with the exception AWS names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Incomplete(String),
    UnknownKey,
    Signature(String),
    Token(String),
    Backend(String),
}

impl AuthError {
    /// The ECR API's `__type`.
    pub fn exception(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Signature(_) | AuthError::Token(_) => "InvalidSignatureException",
            AuthError::Backend(_) => "ServerException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "Missing Authentication Token".into(),
            AuthError::UnknownKey => "The security token included in the request is invalid.".into(),
            AuthError::Incomplete(m) | AuthError::Signature(m) | AuthError::Token(m) | AuthError::Backend(m) => {
                m.clone()
            }
        }
    }
}

impl From<MetaError> for AuthError {
    fn from(e: MetaError) -> Self {
        AuthError::Backend(e.to_string())
    }
}

const TOKEN_KEY: &str = "registry-token-hmac";

pub struct Identity {
    meta: Arc<dyn AccountStore>,
    keys: Arc<MasterKeys>,
    account_id: String,
    region: String,
    /// The token and URL signing key, opened once at start and held in memory only.
    token_key: Vec<u8>,
    /// Tokens checked recently, so `/v2/` does not look the key up on every request.
    token_cache: Mutex<HashMap<String, (Caller, EpochSeconds)>>,
    /// When each access key's use was last written, to write at most once a minute.
    uses_recorded: Arc<Mutex<HashMap<String, i64>>>,
}

/// How long a checked token is trusted before its key is looked up again: the delay with which
/// deactivating or deleting a key (here or on another node, or by `berth admin`) reaches its
/// tokens. Tokens are trusted until the next whole second, so at most 1 s.
const TOKEN_RECHECK_SECONDS: EpochSeconds = 1;
/// A key's last use is written at most this often (milliseconds).
const USE_RECORD_INTERVAL_MS: i64 = 60_000;
/// Entries kept at most; the cache is emptied when it reaches this.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Keys created at first start, to be shown once.
pub struct NewRootKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub fn principal_arn(p: &Principal) -> String {
    match p.kind {
        PrincipalKind::Root => format!("arn:aws:iam::{}:root", p.account_id),
        PrincipalKind::User => format!("arn:aws:iam::{}:user/{}", p.account_id, p.name),
    }
}

/// The root principal of an account that exists, created if missing (its id is the account id).
pub async fn ensure_root_principal(meta: &dyn AccountStore, account_id: &str) -> Result<Principal, RegistryError> {
    let root = Principal {
        id: account_id.to_string(),
        account_id: account_id.to_string(),
        name: "root".into(),
        kind: PrincipalKind::Root,
        created_at: now_ms(),
    };
    match meta.create_principal(&root).await {
        Ok(()) | Err(MetaError::AlreadyExists) => Ok(root),
        Err(e) => Err(e.into()),
    }
}

/// What a SigV4-signed request claims, its failures as AWS names them.
pub(crate) fn parse_signature(req: &sigv4::Request<'_>) -> Result<sigv4::Credential, AuthError> {
    sigv4::parse(req).map_err(|e| match e {
        sigv4::SigV4Error::Missing => AuthError::Missing,
        other => AuthError::Incomplete(other.to_string()),
    })
}

/// Checks a request's signature (and time window) against `secret`.
pub(crate) fn verify_signature(
    req: &sigv4::Request<'_>,
    cred: &sigv4::Credential,
    secret: &str,
    now: EpochSeconds,
) -> Result<(), AuthError> {
    sigv4::verify(req, cred, secret, now).map_err(|e| match e {
        sigv4::SigV4Error::Incomplete(m) => AuthError::Incomplete(m),
        other => AuthError::Signature(other.to_string()),
    })
}

/// Creates an account (if new), its root principal, and the root's first access key: `root_key`
/// when given, or a new one returned for the caller to show once. A root key is applied only
/// while the root has no key at all (the account's creation, or after every key was deleted by
/// force): a key once deleted is never brought back, and a root that manages its own keys is
/// not overridden by the environment — both start with a warning instead. How the first account
/// is made at start, and `berth admin create-account` others.
pub async fn ensure_account_root(
    meta: &dyn AccountStore,
    keys: &MasterKeys,
    account_id: &str,
    root_key: Option<(&str, &str)>,
) -> Result<Option<NewRootKey>, RegistryError> {
    if !is_account_id(account_id) {
        return Err(RegistryError::Internal(format!("account id {account_id:?} is not 12 digits")));
    }
    let account_id = account_id.to_string();
    meta.ensure_account(&account_id).await?;
    let root = ensure_root_principal(meta, &account_id).await?;
    let root_keys = meta.list_access_keys(&root.id).await?;
    let root_id = root.id.clone();
    // Stored only as the root's first key: of nodes starting together, one stores it.
    let store_first = |id: String, secret: String| async move {
        let sealed_secret = keys.seal(SealedKind::AccessKeySecret, &id, secret.as_bytes());
        let key = AccessKey {
            access_key_id: id,
            principal_id: root_id,
            sealed_secret,
            active: true,
            created_at: now_ms(),
            last_used: None,
        };
        meta.create_first_access_key(&key).await
    };
    match root_key {
        Some((id, secret)) => {
            if !keys::is_access_key_id(id) || secret.is_empty() {
                return Err(RegistryError::Internal("the root access key id or secret is malformed".into()));
            }
            match meta.access_key(id).await? {
                Some((k, p)) => {
                    let same = p.id == root.id
                        && keys.open(SealedKind::AccessKeySecret, id, k.sealed_secret.as_bytes())? == secret.as_bytes();
                    if !same {
                        return Err(RegistryError::Internal(format!(
                            "access key {id} already exists with another secret or principal"
                        )));
                    }
                    if !k.active {
                        tracing::warn!(access_key_id = id, "the root access key from the environment is inactive");
                    }
                }
                None if meta.access_key_deleted(id).await? => {
                    tracing::warn!(
                        access_key_id = id,
                        "the root access key from the environment was deleted; it is not brought back"
                    );
                }
                None if !root_keys.is_empty() => {
                    tracing::warn!(
                        access_key_id = id,
                        "the root access key from the environment is not applied: the root has keys of its own"
                    );
                }
                None => {
                    if !store_first(id.to_string(), secret.to_string()).await? {
                        // Another node stored the root's first key meanwhile: the same one, if
                        // it was given the same environment.
                        if meta.access_key(id).await?.is_none() {
                            tracing::warn!(
                                access_key_id = id,
                                "the root access key from the environment is not applied: another node gave the root its first key"
                            );
                        }
                    }
                }
            }
            Ok(None)
        }
        None if root_keys.is_empty() => {
            let key = NewRootKey {
                access_key_id: keys::new_access_key_id(),
                secret_access_key: keys::new_secret_access_key(),
            };
            // Shown only by the node that stored it.
            Ok(store_first(key.access_key_id.clone(), key.secret_access_key.clone()).await?.then_some(key))
        }
        None => Ok(None),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Identity {
    /// Opens the identity store: the account (given, or the one created at first start), its
    /// root principal, and the root's access key: the one given (created or updated to match),
    /// or, when the root has none, a new one returned for the caller to show once.
    pub async fn open(
        meta: Arc<dyn AccountStore>,
        keys: Arc<MasterKeys>,
        account_id: Option<&str>,
        region: &str,
        root_key: Option<(&str, &str)>,
    ) -> Result<(Self, Option<NewRootKey>), RegistryError> {
        let account_id = match account_id {
            Some(a) if is_account_id(a) => a.to_string(),
            Some(a) => return Err(RegistryError::Internal(format!("account id {a:?} is not 12 digits"))),
            None => match meta.first_account().await? {
                Some(a) => a,
                None => {
                    let digits: String =
                        keys::new_secret_bytes().iter().take(12).map(|b| char::from(b'0' + b % 10)).collect();
                    // An account id never starts with 0, so it reads as a number everywhere.
                    let candidate = format!("{}{}", (digits.as_bytes()[0] % 9 + b'1') as char, &digits[1..]);
                    // Nodes starting together on an empty store agree on one account.
                    meta.first_account_or_create(&candidate).await?.0
                }
            },
        };
        let created = ensure_account_root(meta.as_ref(), &keys, &account_id, root_key).await?;
        let initial = keys.seal(SealedKind::RegistrySecret, TOKEN_KEY, &keys::new_secret_bytes());
        let stored = meta.registry_secret(TOKEN_KEY, initial.as_bytes()).await?;
        let token_key = keys.open(SealedKind::RegistrySecret, TOKEN_KEY, &stored)?;
        let identity = Identity {
            meta,
            keys,
            account_id,
            region: region.to_string(),
            token_key,
            token_cache: Mutex::new(HashMap::new()),
            uses_recorded: Arc::new(Mutex::new(HashMap::new())),
        };
        Ok((identity, created))
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Records that `caller`'s key authenticated a request for `service`: behind the request
    /// (a spawned write), at most once a minute per key.
    fn note_use(&self, caller: &Caller, service: &str) {
        let now = now_ms();
        {
            let mut recorded = self.uses_recorded.lock().expect("key uses");
            match recorded.get(&caller.access_key_id) {
                Some(at) if now - at < USE_RECORD_INTERVAL_MS => return,
                _ => {}
            }
            if recorded.len() >= TOKEN_CACHE_MAX {
                recorded.clear();
            }
            recorded.insert(caller.access_key_id.clone(), now);
        }
        let (meta, recorded) = (self.meta.clone(), self.uses_recorded.clone());
        let used = KeyUse { at: now, service: service.to_string(), region: self.region.clone() };
        let key = caller.access_key_id.clone();
        tokio::spawn(async move {
            if let Err(e) = meta.record_access_key_use(&key, &used).await {
                // Forget the write so the next request tries again.
                recorded.lock().expect("key uses").remove(&key);
                tracing::warn!(error = %e, access_key_id = %key, "could not record an access key's use");
            }
        });
    }

    async fn caller_for_key(&self, access_key_id: &str) -> Result<(AccessKey, Caller), AuthError> {
        if !keys::is_access_key_id(access_key_id) {
            return Err(AuthError::UnknownKey);
        }
        let Some((key, principal)) = self.meta.access_key(access_key_id).await? else {
            return Err(AuthError::UnknownKey);
        };
        if !key.active {
            return Err(AuthError::UnknownKey);
        }
        let caller = Caller {
            account_id: principal.account_id.clone(),
            principal_id: principal.id.clone(),
            arn: principal_arn(&principal),
            access_key_id: key.access_key_id.clone(),
            kind: principal.kind,
        };
        Ok((key, caller))
    }

    /// Checks an access key's secret as the web console's sign-in form gives it: the caller if
    /// the key is active and the secret is its own (compared in constant time).
    pub async fn authenticate_secret(&self, access_key_id: &str, secret: &str) -> Result<Caller, AuthError> {
        let (key, caller) = self.caller_for_key(access_key_id).await?;
        let stored = self
            .keys
            .open(SealedKind::AccessKeySecret, &key.access_key_id, key.sealed_secret.as_bytes())
            .map_err(|e| AuthError::Backend(e.to_string()))?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&stored, secret.as_bytes())
            .map_err(|_| AuthError::Signature("The secret access key is not the key's".into()))?;
        self.note_use(&caller, "console");
        Ok(caller)
    }

    /// The caller of an access key that is still active (a console session's key, looked up
    /// on every request so that deactivating or deleting the key ends its sessions).
    pub async fn caller_of_active_key(&self, access_key_id: &str) -> Result<Caller, AuthError> {
        Ok(self.caller_for_key(access_key_id).await?.1)
    }

    /// Verifies a SigV4-signed request for `service` (`ecr`, `iam`).
    pub async fn authenticate_sigv4(
        &self,
        req: &sigv4::Request<'_>,
        service: &str,
        now: EpochSeconds,
    ) -> Result<Caller, AuthError> {
        let cred = parse_signature(req)?;
        let (key, caller) = self.caller_for_key(&cred.access_key_id).await?;
        if cred.service != service {
            return Err(AuthError::Signature(format!("Credential should be scoped to correct service: '{service}'. ")));
        }
        if !self.signs_for_region(service, &cred.region) {
            return Err(AuthError::Signature(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                cred.region
            )));
        }
        // Opened for this request only: the status above came from the store, never from a
        // cache of opened secrets.
        let secret = self
            .keys
            .open(SealedKind::AccessKeySecret, &key.access_key_id, key.sealed_secret.as_bytes())
            .map_err(|e| AuthError::Backend(e.to_string()))?;
        let secret =
            String::from_utf8(secret).map_err(|_| AuthError::Backend("an access key secret is not text".into()))?;
        verify_signature(req, &cred, &secret, now)?;
        self.note_use(&caller, service);
        Ok(caller)
    }

    /// Whether a signature scoped to `region` is valid for `service` here: a regional API (ECR
    /// and every one added later) must name this deployment's region; IAM is global, and AWS
    /// clients sign it for `us-east-1` or for their configured region; ECR Public lives in
    /// `us-east-1`, and clients configured for this deployment's region sign for that.
    pub fn signs_for_region(&self, service: &str, region: &str) -> bool {
        region == self.region || (matches!(service, "iam" | "ecr-public") && region == "us-east-1")
    }

    /// A registry token for `caller`, valid 12 hours; returns it with its expiry.
    pub fn issue_token(&self, caller: &Caller, now: EpochSeconds) -> (String, EpochSeconds) {
        self.issue_token_for(caller, now, None)
    }

    /// A token for the public registry (ECR Public's `GetAuthorizationToken`): the private
    /// registry refuses it, as ECR's refuses a public.ecr.aws token.
    pub fn issue_public_token(&self, caller: &Caller, now: EpochSeconds) -> (String, EpochSeconds) {
        self.issue_token_for(caller, now, Some(PUBLIC_AUDIENCE))
    }

    fn issue_token_for(&self, caller: &Caller, now: EpochSeconds, audience: Option<&str>) -> (String, EpochSeconds) {
        let expires_at = now + token::TOKEN_LIFETIME_SECONDS;
        let claims = token::Claims {
            account: caller.account_id.clone(),
            principal: caller.principal_id.clone(),
            access_key_id: caller.access_key_id.clone(),
            expires_at,
            audience: audience.map(str::to_string),
        };
        (token::issue(&self.token_key, &claims), expires_at)
    }

    /// The signature of a presigned blob download (`GetDownloadUrlForLayer`) issued to
    /// `caller`, valid until `expires`. The issuing key is part of what is signed, so the URL
    /// stops working when the key is deactivated or deleted.
    pub fn presign_download(&self, caller: &Caller, repository: &str, digest: &str, expires: EpochSeconds) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.token_key);
        let msg = download_message(&caller.access_key_id, repository, digest, expires);
        hex::encode(aws_lc_rs::hmac::sign(&key, msg.as_bytes()).as_ref())
    }

    /// A pagination token: the position `payload`, readable by clients but sealed with the
    /// registry's key for one `scope` (operation and registry), so a token Berth did not issue,
    /// or issued for another listing, is refused instead of being trusted as a position.
    pub fn seal_page_token(&self, scope: &str, payload: &str) -> String {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        format!("{encoded}.{}", self.page_token_mac(scope, &encoded))
    }

    /// The position a sealed pagination token holds, if Berth issued it for `scope`.
    pub fn open_page_token(&self, scope: &str, token: &str) -> Option<String> {
        use base64::Engine;
        let (encoded, mac) = token.rsplit_once('.')?;
        let expected = self.page_token_mac(scope, encoded);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), mac.as_bytes()).ok()?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
        String::from_utf8(bytes).ok()
    }

    fn page_token_mac(&self, scope: &str, encoded: &str) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.token_key);
        let tag = aws_lc_rs::hmac::sign(&key, format!("page-token\n{scope}\n{encoded}").as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }

    /// Whether a presigned download URL is ours, unexpired, and issued under a key that is
    /// still active (looked up as a token's key is, at most a second old).
    pub async fn check_download(
        &self,
        url: &PresignedDownload<'_>,
        repository: &str,
        digest: &str,
        now: EpochSeconds,
    ) -> bool {
        if now > url.expires {
            return false;
        }
        let Ok(sig) = hex::decode(url.signature) else { return false };
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.token_key);
        let msg = download_message(url.access_key_id, repository, digest, url.expires);
        if aws_lc_rs::hmac::verify(&key, msg.as_bytes(), &sig).is_err() {
            return false;
        }
        self.caller_for_key(url.access_key_id).await.is_ok()
    }

    /// Checks a registry token; the key it was issued through must still be active.
    pub async fn authenticate_token(&self, token: &str, now: EpochSeconds) -> Result<Caller, AuthError> {
        self.authenticate_token_for(token, None, now).await
    }

    /// A token for anonymous pulls from the public host: it names no one, and grants nothing
    /// a request without credentials could not do there (it exists because clients follow the
    /// Bearer challenge and present what the token endpoint gives them).
    pub fn issue_anonymous_public_token(&self, now: EpochSeconds) -> (String, EpochSeconds) {
        let expires_at = now + token::TOKEN_LIFETIME_SECONDS;
        let claims = token::Claims {
            account: String::new(),
            principal: String::new(),
            access_key_id: String::new(),
            expires_at,
            audience: Some(ANONYMOUS_PUBLIC_AUDIENCE.to_string()),
        };
        (token::issue(&self.token_key, &claims), expires_at)
    }

    /// Checks a token presented to the public host: `None` for an anonymous one, the caller
    /// for an ECR Public token (`GetAuthorizationToken` of `ecr-public`), whose key must still
    /// be active. A private registry token is refused there, as ECR Public refuses ECR's.
    pub async fn authenticate_public_token(&self, token: &str, now: EpochSeconds) -> Result<Option<Caller>, AuthError> {
        let claims = token::verify(&self.token_key, token, now).map_err(|e| AuthError::Token(e.to_string()))?;
        match claims.audience.as_deref() {
            Some(ANONYMOUS_PUBLIC_AUDIENCE) => Ok(None),
            Some(PUBLIC_AUDIENCE) => Ok(Some(self.authenticate_token_for(token, Some(PUBLIC_AUDIENCE), now).await?)),
            _ => Err(AuthError::Token("the token is for the private registry, not the public one".into())),
        }
    }

    /// Checks a token issued for `audience` (`None`: the private registry).
    async fn authenticate_token_for(
        &self,
        token: &str,
        audience: Option<&str>,
        now: EpochSeconds,
    ) -> Result<Caller, AuthError> {
        // Cached under its audience too, so a token checked for one registry is never taken
        // from the cache for the other.
        let cache_key = format!("{}\n{token}", audience.unwrap_or(""));
        if let Some((caller, until)) = self.token_cache.lock().expect("token cache").get(&cache_key)
            && now < *until
        {
            return Ok(caller.clone());
        }
        let claims = token::verify(&self.token_key, token, now).map_err(|e| AuthError::Token(e.to_string()))?;
        if claims.audience.as_deref() != audience {
            return Err(AuthError::Token(match audience {
                None => "the token is for the public registry, not this one".into(),
                Some(_) => "the token is not one of the public registry".into(),
            }));
        }
        let (_, caller) = self.caller_for_key(&claims.access_key_id).await?;
        if caller.principal_id != claims.principal {
            return Err(AuthError::Token("token does not match its key".into()));
        }
        // Registry-token use counts as a use of its key for ECR, as in ECR.
        self.note_use(&caller, "ecr");
        let mut cache = self.token_cache.lock().expect("token cache");
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(cache_key, (caller.clone(), claims.expires_at.min(now + TOKEN_RECHECK_SECONDS)));
        Ok(caller)
    }
}

/// The audience of the public registry's tokens.
const PUBLIC_AUDIENCE: &str = "ecr-public";

/// The audience of the public host's anonymous pull tokens.
const ANONYMOUS_PUBLIC_AUDIENCE: &str = "ecr-public-anonymous";

/// The parameters of a presigned download URL (`X-Berth-Credential`, `X-Berth-Expires`,
/// `X-Berth-Signature`).
pub struct PresignedDownload<'a> {
    pub access_key_id: &'a str,
    pub expires: EpochSeconds,
    pub signature: &'a str,
}

/// What a presigned download's signature covers. The `download2` label sets it apart from the
/// format before key management, which named no key: those URLs no longer verify.
fn download_message(access_key_id: &str, repository: &str, digest: &str, expires: EpochSeconds) -> String {
    format!("download2\n{access_key_id}\n{repository}\n{digest}\n{expires}")
}
