use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::{ManifestSummary, MetaError, MetaStore, NewManifest, Repository};
use berth_oci::manifest::{ManifestKind, parse_manifest};
use berth_oci::{Algorithm, ByteRange, ContentRange, Digest, DigestError, Hasher, ManifestError, validate_tag};
use berth_rules::signing;
use berth_store::{BlobStore, ByteStream, StoreError, UploadState};
use futures_util::StreamExt;

use berth_envelope::{BlobKeys, CHUNK_LEN, Envelope, Sealer};
use berth_meta::{BlobKeyWrapping, UploadCipher};

use crate::RegistryError;
use crate::at_rest::{Binding, Protection};

type Result<T> = std::result::Result<T, RegistryError>;

/// Largest page the listing endpoints return, whatever `n` asks for.
pub const MAX_PAGE: u32 = 10_000;
/// Page size when the client gives no `n`.
pub const DEFAULT_PAGE: u32 = 1_000;
/// ECR API layer parts but the last are at least this large, as in ECR.
pub const MIN_LAYER_PART: usize = 5 * 1024 * 1024;

/// One lock per upload session on this node: appends and the final PUT of one session are
/// serialized here; across nodes the upload record's compare-and-set progress does it.
type SessionLock = Arc<tokio::sync::Mutex<()>>;

pub struct Registry {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    sessions: Mutex<HashMap<String, SessionLock>>,
    /// When each image's pull was last written, and each account's pull-time update
    /// exclusions as last read (see pull_times.rs).
    pub(crate) pull_records: crate::pull_times::PullRecords,
    /// Per-digest locks held while an upload publishes and records a blob, and while GC deletes
    /// a blob's bytes, so the two never interleave (see gc.rs); and other named node locks
    /// (`node_lock`: a signature tag's writers).
    commit_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The 12-digit account id this registry serves.
    registry_id: String,
    /// The region in its ARNs (repositories, KMS keys).
    region: String,
    /// Wakes the scan queue's worker when a scan is requested or finishes.
    scan_wakeup: Arc<tokio::sync::Notify>,
    /// The replication worker's wakeup, peer clients and transfers to resume.
    pub(crate) replication: crate::replication::ReplicationState,
    scan_settings: crate::scan::ScanSettings,
    /// Seals every secret the registry stores.
    pub(crate) master_keys: Arc<crate::secrets::MasterKeys>,
    /// The client of pull-through cache upstreams.
    pub(crate) upstream: crate::pull_through::UpstreamHttp,
    /// What the pull-through cache has in flight on this node.
    pub(crate) cache: crate::pull_through::state::CacheState,
    /// Data keys this node opened for reads lately (see `at_rest::OpenedKeys`).
    pub(crate) opened_keys: crate::at_rest::OpenedKeys,
    /// The host signatures name images by.
    pub(crate) signing_host: crate::signing::SigningHost,
    /// The public registry's host (ECR Public), when it is on.
    pub(crate) public_host: std::sync::OnceLock<crate::public::PublicHost>,
}

pub struct BlobRead {
    pub digest: Digest,
    pub size: u64,
    pub body: ByteStream,
}

pub struct ManifestPut {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<Digest>,
    pub tags: Vec<String>,
    /// Whether it is an image a signing rule may sign (`berth_rules::signing::is_signable`).
    pub signable: bool,
}

/// See [`Registry::locate_blob`].
pub enum BlobGet {
    Redirect(String),
    Serve { digest: Digest, size: u64 },
}

/// The region of a registry whose region is not configured.
const DEFAULT_REGION: &str = "us-east-1";

/// How long a blob GET's redirect to storage stays valid: long enough for a slow layer
/// download to start, short enough that a leaked URL soon stops working.
const BLOB_REDIRECT_SECONDS: i64 = 20 * 60;

/// Where an upload stands: its acknowledged size, the running hash over those bytes, the
/// blob store's state for them, and how they are sealed if the repository's blobs are.
struct Position {
    offset: u64,
    hasher: Hasher,
    state: UploadState,
    cipher: Option<UploadSealing>,
}

/// A sealed upload's keys and its sealer: the chunk index it is at and the plaintext past the
/// last whole chunk (`None` once the blob's last chunk is sealed).
struct UploadSealing {
    keys: BlobKeys,
    envelope: Envelope,
    protection: Protection,
    sealer: Option<Sealer>,
}

impl UploadSealing {
    /// What binds a sealed upload's hash state: the upload, and the size it was hashed over.
    fn hash_state_context(id: &str) -> Vec<u8> {
        [b"hash state\n".as_slice(), id.as_bytes()].concat()
    }

    fn seal_hash_state(&self, id: &str, offset: u64, state: &[u8]) -> Vec<u8> {
        self.envelope.seal_staged(&Self::hash_state_context(id), offset, state)
    }

    fn open_hash_state(&self, id: &str, offset: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.envelope.open_staged(&Self::hash_state_context(id), offset, sealed).map_err(|e| {
            tracing::error!(upload = id, "a sealed upload's hash state: {e}");
            upload_unknown(id)
        })
    }
}

impl Position {
    /// The running hash's state as the upload's record keeps it: sealed for a sealed upload.
    fn recorded_hash_state(&self, id: &str) -> Vec<u8> {
        let state = self.hasher.state();
        match &self.cipher {
            Some(c) => c.seal_hash_state(id, self.offset, &state),
            None => state,
        }
    }

    /// The bytes the blob store's session holds for the acknowledged ones: as many for an
    /// upload stored as sent; for a sealed one, its whole chunks, sealed (the partial chunk
    /// is kept with the record), or the whole sealed blob once finished.
    fn stored(&self) -> u64 {
        match &self.cipher {
            None => self.offset,
            Some(c) => match &c.sealer {
                Some(s) => s.next_index() * c.envelope.sealed_chunk_len() as u64,
                None => c.envelope.sealed_len(self.offset),
            },
        }
    }
}

/// A finished upload: the blob's digest and size, and whether the repository held it already
/// (decided in the transaction that linked it, so two racing uploads of one blob cannot both
/// be told it was new).
#[derive(Debug)]
pub struct Completed {
    pub digest: Digest,
    pub size: u64,
    pub already_linked: bool,
}

/// One page of a listing and whether more follow.
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

pub(crate) fn digest_param(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| match e {
        DigestError::Invalid(m) => RegistryError::DigestInvalid(m),
        DigestError::Unsupported(a) => {
            RegistryError::DigestInvalid(format!("unsupported digest algorithm {a:?}: use sha256 or sha512"))
        }
    })
}

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::UploadNotFound { id: id.to_string() }
}

pub(crate) fn blob_unknown(d: &Digest) -> RegistryError {
    RegistryError::BlobNotFound { digest: d.clone() }
}

pub(crate) fn manifest_unknown(reference: &str) -> RegistryError {
    RegistryError::ManifestNotFound { reference: reference.to_string() }
}

/// Wraps a byte stream so that every chunk passing through also feeds `hasher`.
pub(crate) fn hashing(body: ByteStream, hasher: Arc<Mutex<Hasher>>) -> ByteStream {
    Box::pin(body.map(move |chunk| {
        if let Ok(b) = &chunk {
            hasher.lock().expect("hasher lock").update(b);
        }
        chunk
    }))
}

/// `body` cut off after `limit` bytes; the flag tells whether it held more.
fn at_most(body: ByteStream, limit: u64) -> (ByteStream, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let overflow = Arc::new(AtomicBool::new(false));
    let seen = overflow.clone();
    let stream = body.scan(limit, move |left, chunk| {
        let item = match chunk {
            Ok(mut b) => {
                if *left == 0 && !b.is_empty() {
                    seen.store(true, Ordering::Relaxed);
                    None
                } else {
                    if b.len() as u64 > *left {
                        b.truncate(*left as usize);
                        seen.store(true, Ordering::Relaxed);
                    }
                    *left -= b.len() as u64;
                    Some(Ok(b))
                }
            }
            Err(e) => Some(Err(e)),
        };
        futures_util::future::ready(item)
    });
    (Box::pin(stream), overflow)
}

impl Registry {
    /// Whether this node can serve: the metadata store answers a query and the blob store a
    /// lookup (`/readyz`, for load balancers). Migrations ran before the server listened.
    pub async fn check_ready(&self) -> Result<()> {
        self.meta.first_account().await?;
        self.blobs.check().await?;
        Ok(())
    }
}

impl Registry {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        registry_id: String,
        master_keys: Arc<crate::secrets::MasterKeys>,
    ) -> Self {
        Registry {
            meta,
            blobs,
            sessions: Mutex::new(HashMap::new()),
            pull_records: Default::default(),
            commit_locks: Mutex::new(HashMap::new()),
            registry_id,
            region: DEFAULT_REGION.to_string(),
            scan_wakeup: Arc::new(tokio::sync::Notify::new()),
            replication: Default::default(),
            scan_settings: crate::scan::ScanSettings::default(),
            master_keys,
            upstream: crate::pull_through::UpstreamHttp::new(&Default::default())
                .expect("an HTTP client without extra CA certificates builds"),
            cache: Default::default(),
            opened_keys: Default::default(),
            signing_host: Default::default(),
            public_host: Default::default(),
        }
    }

    /// The region in the registry's ARNs (`us-east-1` unless set).
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The ARN of a repository, by its key (see `repositories::repository_key`).
    pub fn repository_arn(&self, key: &str) -> String {
        crate::repositories::repository_arn(&self.registry_id, &self.region, key)
    }

    /// The pull-through cache's upstream settings (`[pull_through]`).
    pub fn with_upstream_settings(
        mut self,
        settings: &crate::pull_through::UpstreamSettings,
    ) -> std::result::Result<Self, String> {
        self.upstream = crate::pull_through::UpstreamHttp::new(settings)?;
        if let Some(dir) = &settings.spool_dir {
            self.cache.set_spool_dir(dir.clone());
        }
        Ok(self)
    }

    pub fn with_scan_settings(mut self, settings: crate::scan::ScanSettings) -> Self {
        self.scan_settings = settings;
        self
    }

    pub fn scan_settings(&self) -> &crate::scan::ScanSettings {
        &self.scan_settings
    }

    /// Tells the scan queue's worker to look for work now.
    pub fn wake_scanner(&self) {
        self.scan_wakeup.notify_one();
    }

    pub(crate) fn scan_wakeup(&self) -> &tokio::sync::Notify {
        &self.scan_wakeup
    }

    pub fn registry_id(&self) -> &str {
        &self.registry_id
    }

    /// The stores are the services' own: nothing outside the registry reaches past them.
    pub(crate) fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    pub(crate) fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Closes the stores (pending writes are flushed).
    pub async fn close(&self) {
        self.meta.close().await;
    }

    async fn require_repository(&self, name: &str) -> Result<()> {
        match self.meta.repository(name).await? {
            Some(_) => Ok(()),
            None => Err(RegistryError::RepositoryNotFound { name: name.to_string() }),
        }
    }

    /// Turns a "not found" for content into NAME_UNKNOWN when the repository itself is missing.
    pub(crate) async fn not_found_in(&self, name: &str, err: RegistryError) -> RegistryError {
        match self.require_repository(name).await {
            Ok(()) => err,
            Err(e) => e,
        }
    }

    // ---- blobs ----

    /// Size of a blob the repository may serve.
    pub async fn stat_blob(&self, name: &str, digest: &str) -> Result<(Digest, u64)> {
        let digest = digest_param(digest)?;
        match self.meta.linked_blob(name, &digest).await? {
            Some(size) => Ok((digest, size)),
            None => Err(self.not_found_in(name, blob_unknown(&digest)).await),
        }
    }

    /// A blob's plaintext, whole or the inclusive `range` of it (a sealed blob opened as it
    /// is read, through the repository's key).
    pub async fn read_blob(&self, name: &str, digest: &str, range: Option<ByteRange>) -> Result<BlobRead> {
        let (digest, size) = self.stat_blob(name, digest).await?;
        let body = self.at_rest().open_blob(name, &digest, size, range).await?;
        Ok(BlobRead { digest, size, body })
    }

    /// How a GET of a blob the repository serves is answered: by a redirect to storage until
    /// the URL expires (an object store's presigned GET, when the store is set to hand them
    /// out), or with the bytes, which the registry serves itself.
    pub async fn locate_blob(&self, name: &str, digest: &str) -> Result<BlobGet> {
        let (digest, size) = self.stat_blob(name, digest).await?;
        let expires_at = berth_meta::now_ms() / 1000 + BLOB_REDIRECT_SECONDS;
        Ok(match self.direct_download_url(&digest, expires_at).await? {
            Some(url) => BlobGet::Redirect(url),
            None => BlobGet::Serve { digest, size },
        })
    }

    // ---- uploads ----

    /// Starts an upload session in an existing repository (or one a creation template makes).
    pub async fn start_upload(&self, name: &str, algorithm: Option<&str>) -> Result<String> {
        let algorithm = match algorithm {
            None => Algorithm::Sha256,
            Some(a) => Algorithm::parse(a).map_err(|_| {
                RegistryError::DigestInvalid(format!("unsupported digest algorithm {a:?}: use sha256 or sha512"))
            })?,
        };
        let repo = self.repository_for_push(name).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let at_rest = self.at_rest();
        let cipher = match at_rest.protection(&repo)? {
            None => None,
            Some(p) => {
                // The upload's own keys, wrapped under the repository's key (a disabled key
                // refuses here): they become the blob's if this upload is the first of it.
                let keys = BlobKeys::generate(p.layers);
                let wrapped_keys = at_rest.wrap(&p, Binding::Upload(&id), &keys).await?;
                Some(UploadCipher { wrapping: p.wrapping, wrapped_keys, staged_chunk: None })
            }
        };
        let state = self.blobs.upload_create(&id).await?;
        self.meta.create_upload(name, &id, algorithm, &state.0, cipher.as_ref()).await?;
        Ok(id)
    }

    /// Links a blob held by `from` into `name`. False when `from` does not hold it (or may not
    /// be read), in which case the caller starts a normal upload instead.
    /// Mounting is the account setting `BLOB_MOUNTING` (off unless `ENABLED`, as in ECR), and
    /// only between repositories with the same encryption settings.
    pub async fn mount_blob(&self, name: &str, digest: &str, from: &str) -> Result<Option<Digest>> {
        let digest = digest_param(digest)?;
        let target = self.repository_for_push(name).await?;
        let (account, _) = crate::repositories::split_repository_key(&self.registry_id, name);
        let enabled = self.meta.account_setting(account, "BLOB_MOUNTING").await?;
        if enabled.as_deref() != Some("ENABLED") {
            return Ok(None);
        }
        let Some(source) = self.meta.repository(from).await? else { return Ok(None) };
        if (&source.settings.encryption_type, &source.settings.kms_key)
            != (&target.settings.encryption_type, &target.settings.kms_key)
        {
            return Ok(None);
        }
        Ok(self.meta.mount_blob(from, name, &digest).await?.then_some(digest))
    }

    /// A monolithic upload: the whole blob in one request, verified against `digest`.
    /// A small blob of `repository` (an image config, a signature payload) read whole; `None`
    /// if it is not there or larger than 4 MiB.
    pub(crate) async fn read_small_blob(&self, repository: &str, digest: &str) -> Option<Vec<u8>> {
        self.read_blob_at_most(repository, digest, 4 << 20).await
    }

    /// A blob of `repository` read whole if it is at most `max` bytes.
    pub(crate) async fn read_blob_at_most(&self, repository: &str, digest: &str, max: usize) -> Option<Vec<u8>> {
        use futures_util::TryStreamExt;
        let digest = Digest::parse(digest).ok()?;
        let mut stream = self.at_rest().open_linked(repository, &digest).await.ok()?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.try_next().await.ok()? {
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return None;
            }
        }
        Some(out)
    }

    /// Stores a small blob Berth makes itself (an SBOM, a signature payload) in `name`.
    pub(crate) async fn store_small_blob(&self, name: &str, bytes: Vec<u8>) -> Result<(Digest, u64)> {
        let digest = Digest::from_bytes(Algorithm::Sha256, &bytes);
        let body: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }));
        self.upload_blob(name, digest.as_str(), body).await.map(|c| (c.digest, c.size))
    }

    pub async fn upload_blob(&self, name: &str, digest: &str, body: ByteStream) -> Result<Completed> {
        let expected = digest_param(digest)?;
        let id = self.start_upload(name, Some(expected.algorithm().as_str())).await?;
        self.complete_upload(name, &id, digest, Some(body), None).await
    }

    /// The lock serializing publication of a blob with GC's deletion of it. Entries nobody
    /// holds are dropped as new ones are made, so the map stays as small as the work in flight.
    pub(crate) fn commit_lock(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        self.node_lock(digest.as_str())
    }

    /// A lock of this node, by name (a digest, a signature tag): entries nobody holds are
    /// dropped as new ones are made.
    pub(crate) fn node_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.commit_locks.lock().expect("commit locks");
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Drops an upload session's bytes and record (cancel, or GC of an abandoned one).
    pub(crate) async fn drop_upload(&self, id: &str) {
        self.drop_session(id).await;
    }

    fn session_lock(&self, id: &str) -> SessionLock {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if sessions.len() > 1024 {
            sessions.retain(|_, l| Arc::strong_count(l) > 1);
        }
        sessions.entry(id.to_string()).or_default().clone()
    }

    async fn session_repository_check(&self, name: &str, id: &str) -> Result<berth_meta::Upload> {
        match self.meta.upload(id).await? {
            Some(u) if u.repository == name => Ok(u),
            _ => Err(upload_unknown(id)),
        }
    }

    /// Where an upload stands, from its record: the acknowledged bytes, the running hash over
    /// them and the blob store's state, without reading the bytes. Call with the session's lock
    /// held. Bytes past the acknowledged size (a chunk that failed or was refused, a crash
    /// between writing a chunk and recording it) were never acknowledged: the store discards
    /// them with the next append or the commit. Only if storage holds less than the record says
    /// (it lost what it had written), or the hash state is unreadable, are the bytes read to
    /// rebuild the hash, and the record follows them.
    async fn upload_position(&self, upload: &berth_meta::Upload, algorithm: Algorithm) -> Result<Position> {
        let id = upload.id.as_str();
        let state = UploadState(upload.store_state.clone());
        let acknowledged = upload.acknowledged_bytes;
        let cipher = match &upload.cipher {
            Some(c) => Some(self.resume_sealing(upload, c).await?),
            None => None,
        };
        // A sealed upload's hash state is sealed too: it holds the plaintext past the last
        // whole block of the hash.
        let hash_state = match (&cipher, &upload.hash_state) {
            (Some(c), Some(sealed)) => Some(c.open_hash_state(id, acknowledged, sealed)?),
            (_, h) => h.clone(),
        };
        let resumed = match &hash_state {
            None if acknowledged == 0 => Some(algorithm.hasher()),
            Some(hash) => Hasher::resume(algorithm, hash),
            None => None,
        };
        if cipher.is_some() {
            // Sealed bytes cannot be hashed again without the staged chunk they belong to: an
            // upload whose storage lost what it held is started again.
            let Some(hasher) = resumed else { return Err(upload_unknown(id)) };
            let at = Position { offset: acknowledged, hasher, state, cipher };
            let held = self.blobs.upload_held(id, at.stored(), &at.state).await?;
            if held != Some(at.stored()) {
                tracing::warn!(upload = id, ?held, stored = at.stored(), "a sealed upload's storage lost bytes");
                return Err(upload_unknown(id));
            }
            return Ok(at);
        }
        let held = self.blobs.upload_held(id, acknowledged, &state).await?.ok_or_else(|| upload_unknown(id))?;
        match resumed {
            Some(hasher) if held == acknowledged => Ok(Position { offset: acknowledged, hasher, state, cipher: None }),
            _ => {
                tracing::warn!(
                    upload = id,
                    held,
                    acknowledged,
                    "upload state and bytes disagree: hashing the bytes again"
                );
                let hasher = self.rehash(id, held, &state, algorithm).await?;
                if !self.meta.record_upload_progress(id, acknowledged, held, &hasher.state(), &state.0, None).await? {
                    return Err(RegistryError::UploadInterrupted("another request moved the upload".into()));
                }
                Ok(Position { offset: held, hasher, state, cipher: None })
            }
        }
    }

    /// A sealed upload's keys (opened through its repository's key: a disabled key refuses
    /// the request) and its sealer resumed at the acknowledged size, from the record: the
    /// chunk index follows from the size (a full chunk stays pending until a byte past it
    /// arrives, so the last chunk can be marked), the pending plaintext from the staged chunk.
    async fn resume_sealing(&self, upload: &berth_meta::Upload, c: &UploadCipher) -> Result<UploadSealing> {
        let at_rest = self.at_rest();
        let protection = at_rest.recorded_protection(&upload.repository, &c.wrapping);
        let keys = at_rest.unwrap(&protection, Binding::Upload(&upload.id), &c.wrapped_keys).await?;
        let envelope = keys.envelope();
        let acknowledged = upload.acknowledged_bytes;
        let next_index = acknowledged.saturating_sub(1) / CHUNK_LEN as u64;
        let damaged = |what: String| {
            tracing::error!(upload = upload.id, "a sealed upload's staged chunk: {what}");
            upload_unknown(&upload.id)
        };
        let pending = match &c.staged_chunk {
            Some(staged) => {
                envelope.open_staged(upload.id.as_bytes(), next_index, staged).map_err(|e| damaged(e.to_string()))?
            }
            None => Vec::new(),
        };
        if next_index * CHUNK_LEN as u64 + pending.len() as u64 != acknowledged {
            return Err(damaged(format!("{} bytes staged at {acknowledged}", pending.len())));
        }
        let sealer = envelope.resume_sealer(next_index, &pending).map_err(|e| damaged(e.to_string()))?;
        Ok(UploadSealing { keys, envelope, protection, sealer: Some(sealer) })
    }

    /// Rebuilds a session's running hash over its first `offset` bytes (recovery, or a digest
    /// of another algorithm than the session was started with).
    async fn rehash(&self, id: &str, offset: u64, state: &UploadState, algorithm: Algorithm) -> Result<Hasher> {
        let mut hasher = algorithm.hasher();
        let mut data = match self.blobs.upload_read(id, offset, state).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return Err(upload_unknown(id)),
            Err(StoreError::Unsupported(why)) => {
                return Err(RegistryError::DigestInvalid(format!(
                    "the upload's bytes cannot be read back to hash them as {algorithm} ({why}): \
                     start the upload with ?digest-algorithm={algorithm}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Internal(e.to_string()))?;
            hasher.update(&chunk);
        }
        Ok(hasher)
    }

    /// Appends `body` at the acknowledged position, hashing it on the way; returns where the
    /// upload would stand once acknowledged. A failed append leaves the acknowledged bytes as
    /// they were.
    /// A sealed upload's chunks are sealed as they pass (hashed before, as plaintext); with
    /// `finish`, its last chunk too.
    async fn append(&self, id: &str, at: Position, body: ByteStream, finish: bool) -> Result<Position> {
        let stored_from = at.stored();
        let hasher = Arc::new(Mutex::new(at.hasher));
        let body = hashing(body, hasher.clone());
        let (body, sealing) = match at.cipher {
            None => (body, None),
            Some(mut c) => {
                let sealer = c.sealer.take().ok_or_else(|| RegistryError::Internal("the upload is finished".into()))?;
                let (sealed, slot) = crate::blob_cipher::sealing(body, sealer, finish);
                (sealed, Some((c, slot)))
            }
        };
        match self.blobs.upload_append(id, stored_from, &at.state, body).await {
            Ok((stored, state)) => {
                let hasher = Arc::try_unwrap(hasher)
                    .map_err(|_| RegistryError::Internal("upload hasher still shared".into()))?
                    .into_inner()
                    .expect("hasher lock");
                let Some((mut c, slot)) = sealing else {
                    return Ok(Position { offset: stored, hasher, state, cipher: None });
                };
                c.sealer = slot.lock().expect("sealer slot").take();
                let offset = match &c.sealer {
                    Some(s) => s.position(),
                    None if finish => c.envelope.plain_len(stored).unwrap_or(u64::MAX),
                    None => return Err(RegistryError::UploadInterrupted("the chunk could not be sealed".into())),
                };
                let at = Position { offset, hasher, state, cipher: Some(c) };
                if at.stored() != stored {
                    return Err(RegistryError::Internal(format!(
                        "a sealed upload's storage holds {stored} bytes, not the {} its {offset} bytes seal to",
                        at.stored()
                    )));
                }
                Ok(at)
            }
            Err(StoreError::NotFound) => Err(upload_unknown(id)),
            Err(StoreError::Io(e)) if crate::error::is_storage_full(&e) => Err(crate::error::storage_full(&e)),
            Err(e) => Err(RegistryError::UploadInterrupted(e.to_string())),
        }
    }

    /// Acknowledges an appended chunk: the upload record moves from `from` bytes to `to` with
    /// its hash and store state, or the chunk is refused (another node moved the upload
    /// meanwhile).
    async fn acknowledge(&self, id: &str, from: u64, to: &Position) -> Result<()> {
        let staged = match to.cipher.as_ref().and_then(|c| c.sealer.as_ref()) {
            Some(s) if !s.pending().is_empty() => Some(s.stage(id.as_bytes())),
            _ => None,
        };
        if self
            .meta
            .record_upload_progress(id, from, to.offset, &to.recorded_hash_state(id), &to.state.0, staged.as_deref())
            .await?
        {
            Ok(())
        } else {
            Err(RegistryError::UploadInterrupted("another request moved the upload".into()))
        }
    }

    /// A PATCH: appends a chunk. With `range`, the chunk must start where the session ends.
    pub async fn append_upload(
        &self,
        name: &str,
        id: &str,
        range: Option<ContentRange>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let lock = self.session_lock(id);
        let _held = lock.lock().await;
        let upload = self.session_repository_check(name, id).await?;
        let at = self.upload_position(&upload, upload.algorithm).await?;
        let size = at.offset;
        let Some(r) = range else {
            let end = self.append(id, at, body, false).await?;
            self.acknowledge(id, size, &end).await?;
            return Ok(end.offset);
        };
        if r.start != size {
            return Err(RegistryError::UploadOutOfOrder { start: r.start, size });
        }
        // The range must describe the body exactly; its length is computed without wrapping.
        let mismatch = |got: &dyn std::fmt::Display| {
            RegistryError::ChunkRangeInvalid(format!(
                "the chunk's range {}-{} does not match its {got} bytes",
                r.start, r.end
            ))
        };
        let Some(expected) = r.byte_count() else {
            return Err(RegistryError::ChunkRangeInvalid(format!(
                "the chunk's range {}-{} is longer than any body can be",
                r.start, r.end
            )));
        };
        if let Some(len) = content_length
            && len != expected
        {
            return Err(mismatch(&len));
        }
        let (body, overflow) = at_most(body, expected);
        let end = self.append(id, at, body, false).await?;
        let refused = if overflow.load(std::sync::atomic::Ordering::Relaxed) {
            Some(mismatch(&"more"))
        } else {
            (end.offset - size != expected).then(|| mismatch(&(end.offset - size)))
        };
        if let Some(refused) = refused {
            // A refused chunk is never acknowledged: the session stays as it was.
            return Err(refused);
        }
        self.acknowledge(id, size, &end).await?;
        Ok(end.offset)
    }

    /// The bytes an upload holds, as acknowledged.
    pub async fn upload_status(&self, name: &str, id: &str) -> Result<u64> {
        let upload = self.session_repository_check(name, id).await?;
        if upload.cipher.is_none() {
            // (A sealed upload's stored bytes are checked by its next request, which opens its
            // keys; a status request does not need them.)
            let state = UploadState(upload.store_state.clone());
            self.blobs.upload_held(id, upload.acknowledged_bytes, &state).await?.ok_or_else(|| upload_unknown(id))?;
        }
        Ok(upload.acknowledged_bytes)
    }

    /// The final PUT: appends an optional last chunk, verifies the digest over every byte
    /// received, makes the blob durable and only then links it into the repository.
    pub async fn complete_upload(
        &self,
        name: &str,
        id: &str,
        digest: &str,
        body: Option<ByteStream>,
        content_length: Option<u64>,
    ) -> Result<Completed> {
        self.session_repository_check(name, id).await?;
        let expected = digest_param(digest)?;
        let lock = self.session_lock(id);
        let held = lock.lock().await;
        let upload = self.session_repository_check(name, id).await?;
        let at = match self.upload_position(&upload, upload.algorithm).await? {
            at if at.hasher.algorithm() == expected.algorithm() => at,
            at if at.cipher.is_some() => {
                let algorithm = expected.algorithm();
                return Err(RegistryError::DigestInvalid(format!(
                    "the upload was hashed as {} and its sealed bytes are not read back to hash them as {algorithm}: \
                     start the upload with ?digest-algorithm={algorithm}",
                    at.hasher.algorithm()
                )));
            }
            // Digested with another algorithm than the session was started for: the
            // acknowledged bytes are hashed with that one.
            at => Position { hasher: self.rehash(id, at.offset, &at.state, expected.algorithm()).await?, ..at },
        };
        let before = at.offset;
        let end = match body {
            Some(body) => self.append(id, at, body, true).await?,
            // A sealed upload's last chunk is sealed now.
            None if at.cipher.is_some() => self.append(id, at, Box::pin(futures_util::stream::empty()), true).await?,
            None => at,
        };
        let stored = end.stored();
        let Position { offset: size, hasher, state, cipher } = end;
        if let Some(len) = content_length
            && size - before != len
        {
            drop(held);
            self.drop_session(id).await;
            return Err(RegistryError::SizeMismatch { received: size - before, declared: len });
        }
        let actual = hasher.finish();
        if actual != expected {
            drop(held);
            self.drop_session(id).await;
            return Err(RegistryError::UploadDigestMismatch { expected, actual });
        }
        let (size, already_linked) = {
            let lock = self.commit_lock(&actual);
            let _committing = lock.lock().await;
            // The same lock across nodes: GC on another node deletes bytes under it too.
            let _across_nodes = self.meta.lock_blob_bytes(&[actual.to_string()]).await?;
            self.commit(name, id, &state, stored, size, &actual, cipher).await?
        };
        drop(held);
        self.sessions.lock().expect("sessions lock").remove(id);
        Ok(Completed { digest: actual, size, already_linked })
    }

    /// Publishes an upload as the blob `digest` of `size` plaintext bytes (`stored` as the
    /// blob store holds them, sealed or not), under the blob's commit locks, and links it.
    ///
    /// A blob is stored once: a commit of a digest already recorded drops its own bytes and
    /// links the stored ones, sealed under the keys of the blob's first commit (a sealed
    /// upload adds a wrapping of them under its repository's key, if the blob has none for
    /// it), or stored as sent before sealing began (`berth encrypt` seals those). Without a
    /// blob record, what is stored under the digest (and any keys recorded for it) is an
    /// interrupted commit's: removed; a sealed upload's keys are recorded before its bytes
    /// are published, so bytes that are published always have their keys.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        name: &str,
        id: &str,
        state: &UploadState,
        stored: u64,
        size: u64,
        digest: &Digest,
        sealing: Option<UploadSealing>,
    ) -> Result<(u64, bool)> {
        let existing = self.meta.blob_keys(digest).await?;
        let recorded = (!existing.is_empty() || sealing.is_some())
            && !self.meta.blobs_recorded(&[digest.to_string()]).await?.is_empty();
        if recorded {
            // Stored with fewer layers than this repository wants (a KMS_DSSE push of a blob
            // another repository stored with one): this upload's ciphertext, the same
            // plaintext under more layers, takes the stored one's place.
            if let Some(c) = &sealing
                && let Some(first) = existing.first()
                && c.keys.layers() as u32 > first.layers
                && self.take_over_with_more_layers(id, state, stored, digest, c).await?
            {
                return Ok((size, self.meta.link_blob(name, digest, size, Some(id)).await?));
            }
            if let Some(c) = &sealing {
                self.at_rest().add_wrapping_if_missing(digest, &existing, &c.protection).await?;
            }
            if sealing.is_some() || !existing.is_empty() {
                if let Err(e) = self.blobs.upload_delete(id, Some(state)).await {
                    tracing::warn!(upload = id, error = %e, "could not remove a duplicate upload's bytes");
                }
                // The session ends in the same transaction that links the blob.
                return Ok((size, self.meta.link_blob(name, digest, size, Some(id)).await?));
            }
        }
        if !existing.is_empty() {
            self.blobs.delete(digest).await?;
            self.meta.delete_blob_keys(&[digest.to_string()]).await?;
        }
        let Some(c) = sealing else {
            let stored = self.blobs.upload_commit(id, size, state, digest).await?;
            return Ok((stored, self.meta.link_blob(name, digest, stored, Some(id)).await?));
        };
        if existing.is_empty() {
            // Bytes a commit stored as sent but never recorded (the blob store keeps what is
            // stored under a digest).
            self.blobs.delete(digest).await?;
        }
        let at_rest = self.at_rest();
        let wrapped = at_rest.wrap(&c.protection, Binding::Blob(digest), &c.keys).await?;
        let w = BlobKeyWrapping { wrapping: c.protection.wrapping.clone(), layers: c.keys.layers() as u32, wrapped };
        self.meta.claim_blob_keys(digest, &w).await?;
        self.blobs.upload_commit(id, stored, state, digest).await?;
        Ok((size, self.meta.link_blob(name, digest, size, Some(id)).await?))
    }

    /// Puts a sealed upload's bytes in place of the blob stored under `digest` with fewer
    /// layers, its keys wrapped for every repository that links the blob and for the
    /// upload's (keys before bytes, as every commit). False, and nothing changed, if a key of a
    /// linking repository cannot wrap them now (disabled, its grant retired): the blob is then
    /// linked with the layers it has. Call under the blob's commit locks.
    async fn take_over_with_more_layers(
        &self,
        id: &str,
        state: &UploadState,
        stored: u64,
        digest: &Digest,
        c: &UploadSealing,
    ) -> Result<bool> {
        let at_rest = self.at_rest();
        let protections = at_rest.linking_protections(digest, Some(&c.protection)).await?;
        // Every wrapping first, so a key that refuses changes nothing.
        let wrappings = match at_rest.wrap_for_all(digest, &c.keys, protections.values()).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "blob left with the layers it has: a linking repository's key refused");
                return Ok(false);
            }
        };
        at_rest.record_new_keys(digest, &wrappings).await?;
        self.blobs.upload_replace(id, stored, state, digest).await?;
        Ok(true)
    }

    /// `UploadLayerPart` of the ECR API: a chunk with its byte range, as a `/v2/` PATCH
    /// appends it; every part but the last must be at least `MIN_LAYER_PART` bytes (a small
    /// part followed by another marks the upload, and `complete_layer_upload` refuses it).
    pub async fn upload_layer_part(
        &self,
        name: &str,
        id: &str,
        range: ContentRange,
        part: bytes::Bytes,
    ) -> Result<u64> {
        let len = part.len();
        let body: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(part) }));
        let size = self.append_upload(name, id, Some(range), Some(len as u64), body).await?;
        self.meta.note_upload_part(id, len < MIN_LAYER_PART).await?;
        Ok(size)
    }

    /// `CompleteLayerUpload` of the ECR API: refused for an upload without parts or with a
    /// small part before its last (which also ends the upload), then completed as a `/v2/`
    /// PUT without a body.
    pub async fn complete_layer_upload(&self, name: &str, id: &str, digest: &str) -> Result<Completed> {
        let upload = self.session_repository_check(name, id).await?;
        if upload.part_too_small {
            self.cancel_upload(name, id).await.ok();
            return Err(RegistryError::LayerPartTooSmall { min: MIN_LAYER_PART });
        }
        if self.upload_status(name, id).await? == 0 {
            return Err(RegistryError::EmptyUpload);
        }
        digest_param(digest)?;
        self.complete_upload(name, id, digest, None, None).await
    }

    async fn drop_session_meta(&self, id: &str) -> Result<()> {
        self.sessions.lock().expect("sessions lock").remove(id);
        self.meta.delete_upload(id).await?;
        Ok(())
    }

    async fn drop_session(&self, id: &str) {
        let state = match self.meta.upload(id).await {
            Ok(upload) => upload.map(|u| UploadState(u.store_state)),
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "could not read the upload session");
                None
            }
        };
        if let Err(e) = self.blobs.upload_delete(id, state.as_ref()).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload data");
        }
        if let Err(e) = self.drop_session_meta(id).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload session");
        }
    }

    pub async fn cancel_upload(&self, name: &str, id: &str) -> Result<()> {
        self.session_repository_check(name, id).await?;
        let lock = self.session_lock(id);
        let _held = lock.lock().await;
        self.drop_session(id).await;
        Ok(())
    }

    // ---- manifests ----

    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_tags: &[String],
    ) -> Result<ManifestPut> {
        let (by_digest, mut tags) = if reference.contains(':') {
            (Some(digest_param(reference)?), Vec::new())
        } else {
            validate_tag(reference).map_err(RegistryError::TagInvalid)?;
            (None, vec![reference.to_string()])
        };
        for t in extra_tags {
            validate_tag(t).map_err(RegistryError::TagInvalid)?;
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let parsed = parse_manifest(content_type, &body).map_err(|e| match e {
            ManifestError::Invalid(m) => RegistryError::ManifestInvalid(m),
            ManifestError::UnsupportedMediaType(m) => {
                RegistryError::ManifestInvalid(format!("unsupported manifest media type {m:?}"))
            }
        })?;
        let algorithm = by_digest.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm());
        let digest = Digest::from_bytes(algorithm, &body);
        if let Some(expected) = &by_digest
            && *expected != digest
        {
            return Err(RegistryError::ManifestDigestMismatch { expected: expected.clone(), actual: digest });
        }
        let repository = self.repository_for_push(name).await?;
        let replicate_to = self.replication_targets(name, &tags).await?;
        let queued = !replicate_to.is_empty();
        let put = self.store_manifest(&repository, digest, parsed, body, tags, replicate_to).await?;
        if queued {
            self.replication.wakeup.notify_one();
        }
        Ok(put)
    }

    /// Stores a parsed manifest of `repository` with `tags` (sealed under the repository's
    /// key, immutable tags checked in the storing transaction), queues its replication to
    /// `replicate_to` in that transaction, and asks for its scan on push: what a push and a
    /// replica's arrival both do.
    pub(crate) async fn store_manifest(
        &self,
        repository: &Repository,
        digest: Digest,
        parsed: berth_oci::manifest::ParsedManifest,
        body: Vec<u8>,
        tags: Vec<String>,
        replicate_to: Vec<berth_meta::ReplicationTarget>,
    ) -> Result<ManifestPut> {
        let name = repository.name.as_str();
        let rule = crate::repositories::tag_mutability(&repository.settings);
        // Signature tags move as signatures are added: immutability does not hold them.
        let immutable: Vec<String> =
            tags.iter().filter(|t| rule.is_immutable(t) && !signing::is_signature_tag(t)).cloned().collect();
        let size = body.len() as u64;
        let layer_media_types = layer_media_types(&body);
        let layer_media_types: Vec<&str> = layer_media_types.iter().map(String::as_str).collect();
        let signable = signing::is_signable(&signing::PushedManifest {
            has_subject: parsed.subject.is_some(),
            layer_media_types: &layer_media_types,
            tags: &tags,
        });
        let annotations = parsed.annotations.map(|a| serde_json::to_string(&a).expect("string map serializes"));
        // Sealed under the repository's key, as its blobs are (a disabled key refuses the push).
        let stored = self.at_rest().seal_manifest(repository, &digest, body, annotations).await?;
        let manifest = NewManifest {
            digest: digest.clone(),
            media_type: parsed.kind.media_type().to_string(),
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.clone(),
            annotations: stored.annotations,
            content: stored.content,
            size,
            keys: stored.keys,
            blobs: parsed.blobs,
            manifests: parsed.manifests,
            replicate_to,
        };
        let is_index = matches!(parsed.kind, ManifestKind::OciIndex | ManifestKind::DockerManifestList);
        match self.meta.put_manifest(name, &manifest, &tags, &immutable).await {
            Ok(()) => {
                self.scan_on_push(repository, &digest, manifest.artifact_type.as_deref(), is_index).await;
                Ok(ManifestPut {
                    digest,
                    media_type: manifest.media_type,
                    size,
                    subject: parsed.subject,
                    tags,
                    signable,
                })
            }
            Err(MetaError::TagImmutable(tag)) => Err(RegistryError::TagImmutable { repository: name.to_string(), tag }),
            Err(MetaError::MissingReferences { blobs, manifests }) => {
                Err(RegistryError::ReferencesMissing { repository: name.to_string(), blobs, manifests })
            }
            Err(e) => Err(RegistryError::in_repository(name)(e)),
        }
    }

    /// Deletes an image as `BatchDeleteImage` and lifecycle expiry do: refused while an index
    /// lists it (`Err(parents)`); otherwise the manifest goes with its tags, and an index takes
    /// along its children that no other index lists and that carry no tags of their own.
    /// Returns the tags the image had.
    pub async fn delete_image(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<std::result::Result<Vec<String>, Vec<String>>> {
        let Some(image) = self.meta.image(name, digest.as_str()).await? else { return Ok(Ok(Vec::new())) };
        self.queue_replication_removal(name, digest, None).await?;
        let removed = self.remove_image_record(name, digest, image).await?;
        if removed.is_ok() {
            self.replication_removal_done(name, digest).await?;
        }
        Ok(removed)
    }

    /// `delete_image` without propagating it (how a replica is removed at its destination).
    pub(crate) async fn remove_image(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<std::result::Result<Vec<String>, Vec<String>>> {
        match self.meta.image(name, digest.as_str()).await? {
            Some(image) => self.remove_image_record(name, digest, image).await,
            None => Ok(Ok(Vec::new())),
        }
    }

    /// `remove_image` of an image whose record was read.
    async fn remove_image_record(
        &self,
        name: &str,
        digest: &Digest,
        image: berth_meta::ImageRecord,
    ) -> Result<std::result::Result<Vec<String>, Vec<String>>> {
        match self.meta.delete_manifest(name, digest).await {
            Ok(_) => {}
            // Listed by an index: the store refuses it in the deleting transaction.
            Err(MetaError::ReferencedByIndex(parents)) => return Ok(Err(parents)),
            Err(e) => return Err(e.into()),
        }
        self.remove_attachments(name, digest).await?;
        for child in &image.children {
            let Ok(child_digest) = Digest::parse(child) else { continue };
            let orphan = self.meta.manifest_parents(name, child).await?.is_empty();
            let untagged = self.meta.image(name, child).await?.is_some_and(|c| c.tags.is_empty());
            if orphan && untagged {
                match self.meta.delete_manifest(name, &child_digest).await {
                    Ok(_) => self.remove_attachments(name, &child_digest).await?,
                    // Listed by another index meanwhile: it stays.
                    Err(MetaError::ReferencedByIndex(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Ok(image.tags))
    }

    /// DELETE by digest removes the manifest and its tags; DELETE by tag removes the tag only.
    /// A manifest that an index lists is refused (`DENIED`), as `BatchDeleteImage` refuses it:
    /// deleting it would leave the index pointing at nothing.
    pub async fn delete_manifest(&self, name: &str, reference: &str) -> Result<()> {
        let (deleted, digest) = if reference.contains(':') {
            let digest = digest_param(reference)?;
            if self.meta.manifest(name, &digest).await?.is_some() {
                self.queue_replication_removal(name, &digest, None).await?;
            }
            match self.meta.delete_manifest(name, &digest).await {
                Err(MetaError::ReferencedByIndex(parents)) => {
                    return Err(RegistryError::ReferencedByIndex { digest, parents });
                }
                other => (other?, Some(digest)),
            }
        } else {
            validate_tag(reference).map_err(RegistryError::TagInvalid)?;
            let digest = self.meta.resolve_tag(name, reference).await?;
            if let Some(d) = &digest {
                self.queue_replication_removal(name, d, Some(reference)).await?;
            }
            (self.meta.delete_tag(name, reference).await?, digest)
        };
        if deleted && let Some(d) = &digest {
            if reference.contains(':') {
                self.remove_attachments(name, d).await?;
            }
            self.replication_removal_done(name, d).await?;
        }
        if deleted { Ok(()) } else { Err(self.not_found_in(name, manifest_unknown(reference)).await) }
    }

    /// What hangs off a deleted image goes with it: its referrers (signature bundles, SBOMs,
    /// attestations) and its tag-scheme attachments (`sha256-<hex>.sig|.att|.sbom`), each
    /// with what hangs off it in turn. An attachment tag is removed; the manifest behind it
    /// (or a referrer) goes only once no tag names it (another image's attachment tag or a
    /// user's tag keeps it) and no index lists it.
    pub(crate) async fn remove_attachments(&self, name: &str, subject: &Digest) -> Result<()> {
        let mut pending = vec![subject.clone()];
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = pending.pop() {
            if !seen.insert(s.clone()) || seen.len() > 10_000 {
                continue;
            }
            let mut attached: Vec<Digest> = Vec::new();
            for r in self.meta.referrers(name, &s, None).await? {
                attached.extend(Digest::parse(&r.digest).ok());
            }
            for kind in ["sig", "att", "sbom"] {
                let tag = format!("{}.{kind}", s.as_str().replacen(':', "-", 1));
                if let Some(d) = self.meta.resolve_tag(name, &tag).await? {
                    self.meta.delete_tag(name, &tag).await?;
                    attached.push(d);
                }
            }
            for a in attached {
                let untagged = self.meta.image(name, a.as_str()).await?.is_some_and(|i| i.tags.is_empty());
                if !untagged {
                    continue;
                }
                match self.meta.delete_manifest(name, &a).await {
                    Ok(_) => pending.push(a),
                    Err(MetaError::ReferencedByIndex(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    // ---- listings ----

    fn page_size(n: Option<u32>) -> u32 {
        n.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE)
    }

    pub async fn list_tags(&self, name: &str, n: Option<u32>, last: Option<&str>) -> Result<Page> {
        self.require_repository(name).await?;
        let limit = Self::page_size(n);
        let mut items = self.meta.list_tags(name, last, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, more })
    }

    /// `/v2/_catalog` of `account`'s registry: a page of repository keys after the key `last`.
    pub async fn catalog(&self, account: &str, n: Option<u32>, last: Option<&str>) -> Result<Page> {
        let (items, more) = self.account_repository_keys(account, last, Self::page_size(n)).await?;
        Ok(Page { items, more })
    }

    pub async fn referrers(
        &self,
        name: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestSummary>> {
        let digest = digest_param(digest)?;
        self.require_repository(name).await?;
        let at_rest = self.at_rest();
        let mut out = Vec::new();
        for r in self.meta.referrers(name, &digest, artifact_type).await? {
            out.push(at_rest.open_summary(name, r).await?);
        }
        Ok(out)
    }
}

/// The media types of a manifest's layers (none for an index, or a body that is not JSON).
fn layer_media_types(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Layers {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    serde_json::from_slice::<Layers>(body)
        .map(|l| l.layers.into_iter().filter_map(|l| l.media_type).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{ContentStore, RepositoryStore};

    /// The real blob store, counting how often an upload's bytes are read back.
    struct CountingReads {
        inner: berth_store::FsBlobStore,
        upload_reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl BlobStore for CountingReads {
        async fn stat(&self, d: &Digest) -> berth_store::Result<Option<u64>> {
            self.inner.stat(d).await
        }
        async fn read(&self, d: &Digest, r: Option<ByteRange>) -> berth_store::Result<ByteStream> {
            self.inner.read(d, r).await
        }
        async fn delete(&self, d: &Digest) -> berth_store::Result<()> {
            self.inner.delete(d).await
        }
        fn list(&self) -> berth_store::Listing<Digest> {
            self.inner.list()
        }
        async fn upload_create(&self, id: &str) -> berth_store::Result<UploadState> {
            self.inner.upload_create(id).await
        }
        async fn upload_held(&self, id: &str, offset: u64, s: &UploadState) -> berth_store::Result<Option<u64>> {
            self.inner.upload_held(id, offset, s).await
        }
        async fn upload_append(
            &self,
            id: &str,
            offset: u64,
            s: &UploadState,
            data: ByteStream,
        ) -> berth_store::Result<(u64, UploadState)> {
            self.inner.upload_append(id, offset, s, data).await
        }
        async fn upload_read(&self, id: &str, offset: u64, s: &UploadState) -> berth_store::Result<ByteStream> {
            self.upload_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.upload_read(id, offset, s).await
        }
        async fn upload_commit(&self, id: &str, offset: u64, s: &UploadState, d: &Digest) -> berth_store::Result<u64> {
            self.inner.upload_commit(id, offset, s, d).await
        }
        async fn upload_replace(&self, id: &str, offset: u64, s: &UploadState, d: &Digest) -> berth_store::Result<u64> {
            self.inner.upload_replace(id, offset, s, d).await
        }
        async fn upload_delete(&self, id: &str, s: Option<&UploadState>) -> berth_store::Result<()> {
            self.inner.upload_delete(id, s).await
        }
        fn upload_list(&self) -> berth_store::Listing<(String, u64)> {
            self.inner.upload_list()
        }
    }

    fn body(data: &'static [u8]) -> ByteStream {
        Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from_static(data)) }))
    }

    /// Two nodes (two registries on one metadata store and one blob store) share an upload:
    /// the second continues from the first's recorded hash state and never reads the bytes.
    #[tokio::test]
    async fn another_node_continues_an_upload_without_reading_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(berth_meta::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
        let blobs = Arc::new(CountingReads {
            inner: berth_store::FsBlobStore::open(dir.path().join("blobs")).await.unwrap(),
            upload_reads: Default::default(),
        });
        meta.create_repository("app", &berth_meta::RepositorySettings::default(), &[]).await.unwrap();
        // The nodes of one deployment share the master keyring (the upload's keys are sealed under it).
        let keys = crate::test_master_keys();
        let node_a = Registry::new(meta.clone(), blobs.clone(), "111111111111".into(), keys.clone());
        let node_b = Registry::new(meta.clone(), blobs.clone(), "111111111111".into(), keys);
        let id = node_a.start_upload("app", None).await.unwrap();
        let first = ContentRange { start: 0, end: 5 };
        assert_eq!(node_a.append_upload("app", &id, Some(first), Some(6), body(b"first ")).await.unwrap(), 6);
        assert_eq!(node_b.append_upload("app", &id, None, None, body(b"second ")).await.unwrap(), 13);
        assert_eq!(node_a.upload_status("app", &id).await.unwrap(), 13);
        let digest = Digest::from_bytes(Algorithm::Sha256, b"first second third");
        let done = node_b.complete_upload("app", &id, digest.as_str(), Some(body(b"third")), None).await.unwrap();
        assert_eq!((done.digest, done.size), (digest, 18));
        assert_eq!(blobs.upload_reads.load(std::sync::atomic::Ordering::Relaxed), 0, "no node read the upload back");
    }

    /// Bytes written past what was acknowledged (a crash between writing a chunk and recording
    /// it) are not part of the upload: the next chunk continues from the acknowledged size.
    #[tokio::test]
    async fn bytes_never_acknowledged_are_cut_off() {
        let (_dir, registry) = crate::test_registry().await;
        let settings = berth_meta::RepositorySettings::default();
        registry.create_repository("app", &settings, &[], None).await.unwrap();
        let id = registry.start_upload("app", None).await.unwrap();
        registry.append_upload("app", &id, None, None, body(b"kept ")).await.unwrap();
        let state = UploadState::default();
        // The repository's blobs are sealed (AES256): 5 bytes are a partial chunk kept with the
        // record, so the store's session holds none of them yet.
        registry.blobs().upload_append(&id, 0, &state, body(b"lost in a crash")).await.unwrap();
        assert_eq!(registry.upload_status("app", &id).await.unwrap(), 5);
        let range = ContentRange { start: 5, end: 9 };
        assert_eq!(registry.append_upload("app", &id, Some(range), Some(5), body(b"after")).await.unwrap(), 10);
        let digest = Digest::from_bytes(Algorithm::Sha256, b"kept after");
        assert_eq!(registry.complete_upload("app", &id, digest.as_str(), None, None).await.unwrap().digest, digest);
    }

    /// Two uploads of one blob into one repository, completed at the same moment: exactly one
    /// is told the blob was new (ECR's CompleteLayerUpload answers the other
    /// LayerAlreadyExists), and the blob is there once.
    #[tokio::test]
    async fn of_two_racing_uploads_of_one_blob_exactly_one_links_it() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(berth_meta::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
        let blobs = Arc::new(berth_store::FsBlobStore::open(dir.path().join("blobs")).await.unwrap());
        let registry = Arc::new(Registry::new(meta.clone(), blobs, "111111111111".into(), crate::test_master_keys()));
        meta.create_repository("race/app", &berth_meta::RepositorySettings::default(), &[]).await.unwrap();
        let data = bytes::Bytes::from_static(b"the same layer, twice");
        let digest = Digest::from_bytes(Algorithm::Sha256, &data);
        for round in 0..10 {
            let repo = format!("race/app{round}");
            meta.create_repository(&repo, &berth_meta::RepositorySettings::default(), &[]).await.unwrap();
            let mut sessions = Vec::new();
            for _ in 0..2 {
                let id = registry.start_upload(&repo, None).await.unwrap();
                let body: ByteStream = Box::pin(futures_util::stream::once({
                    let data = data.clone();
                    async move { Ok(data) }
                }));
                registry.append_upload(&repo, &id, None, None, body).await.unwrap();
                sessions.push(id);
            }
            let tasks: Vec<_> = sessions
                .into_iter()
                .map(|id| {
                    let (registry, repo, digest) = (registry.clone(), repo.clone(), digest.to_string());
                    tokio::spawn(async move { registry.complete_upload(&repo, &id, &digest, None, None).await })
                })
                .collect();
            let mut new_links = 0;
            for t in tasks {
                let done = t.await.unwrap().unwrap();
                assert_eq!(done.digest, digest);
                new_links += usize::from(!done.already_linked);
            }
            assert_eq!(new_links, 1, "round {round}");
            assert_eq!(meta.linked_blob(&repo, &digest).await.unwrap(), Some(data.len() as u64));
        }
    }
}
