use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::{ManifestSummary, MetaError, MetaStore, NewManifest};
use berth_oci::manifest::{ManifestKind, parse_manifest};
use berth_oci::{Algorithm, ByteRange, ContentRange, Digest, DigestError, Hasher, ManifestError, validate_tag};
use berth_store::{BlobStore, ByteStream, StoreError, UploadState};
use futures_util::StreamExt;

use crate::RegistryError;

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
    /// When each (repository, digest) pull was last written, to write at most once a minute.
    pulls_recorded: Mutex<HashMap<(String, String), i64>>,
    /// Per-digest locks held while an upload publishes and records a blob, and while GC deletes
    /// a blob's bytes, so the two never interleave (see gc.rs).
    commit_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The 12-digit account id this registry serves.
    registry_id: String,
    /// The region in its ARNs (repositories, KMS keys).
    region: String,
    /// Wakes the scan queue's worker when a scan is requested or finishes.
    scan_wakeup: Arc<tokio::sync::Notify>,
    scan_settings: crate::scan::ScanSettings,
    /// Seals every secret the registry stores.
    pub(crate) master_keys: Arc<crate::secrets::MasterKeys>,
    /// The client of pull-through cache upstreams.
    pub(crate) upstream: crate::pull_through::UpstreamHttp,
    /// What the pull-through cache has in flight on this node.
    pub(crate) cache: crate::pull_through::state::CacheState,
}

pub struct BlobRead {
    pub digest: Digest,
    pub size: u64,
    pub body: ByteStream,
}

pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<String>,
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

/// Where an upload stands: its acknowledged size, the running hash over those bytes, and the
/// blob store's state for them.
struct Position {
    offset: u64,
    hasher: Hasher,
    state: UploadState,
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
fn hashing(body: ByteStream, hasher: Arc<Mutex<Hasher>>) -> ByteStream {
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
            pulls_recorded: Mutex::new(HashMap::new()),
            commit_locks: Mutex::new(HashMap::new()),
            registry_id,
            region: DEFAULT_REGION.to_string(),
            scan_wakeup: Arc::new(tokio::sync::Notify::new()),
            scan_settings: crate::scan::ScanSettings::default(),
            master_keys,
            upstream: crate::pull_through::UpstreamHttp::new(&Default::default())
                .expect("an HTTP client without extra CA certificates builds"),
            cache: Default::default(),
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

    pub async fn read_blob(&self, name: &str, digest: &str, range: Option<ByteRange>) -> Result<BlobRead> {
        let (digest, size) = self.stat_blob(name, digest).await?;
        let body = match self.blobs.read(&digest, range).await {
            Ok(b) => b,
            Err(StoreError::NotFound) => {
                tracing::error!(%digest, "blob is linked but its bytes are missing from storage");
                return Err(blob_unknown(&digest));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobRead { digest, size, body })
    }

    /// How a GET of a blob the repository serves is answered: by a redirect to storage until
    /// the URL expires (an object store's presigned GET, when the store is set to hand them
    /// out), or with the bytes, which the registry serves itself.
    pub async fn locate_blob(&self, name: &str, digest: &str) -> Result<BlobGet> {
        let (digest, size) = self.stat_blob(name, digest).await?;
        let expires_at = berth_meta::now_ms() / 1000 + BLOB_REDIRECT_SECONDS;
        Ok(match self.blobs.presigned_read_url(&digest, expires_at).await? {
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
        self.repository_for_push(name).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let state = self.blobs.upload_create(&id).await?;
        self.meta.create_upload(name, &id, algorithm, &state.0).await?;
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
    pub async fn upload_blob(&self, name: &str, digest: &str, body: ByteStream) -> Result<Completed> {
        let expected = digest_param(digest)?;
        let id = self.start_upload(name, Some(expected.algorithm().as_str())).await?;
        self.complete_upload(name, &id, digest, Some(body), None).await
    }

    /// The lock serializing publication of a blob with GC's deletion of it. Entries nobody
    /// holds are dropped as new ones are made, so the map stays as small as the work in flight.
    pub(crate) fn commit_lock(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.commit_locks.lock().expect("commit locks");
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(digest.to_string()).or_default().clone()
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
        let held = self.blobs.upload_held(id, acknowledged, &state).await?.ok_or_else(|| upload_unknown(id))?;
        let resumed = match &upload.hash_state {
            None if acknowledged == 0 => Some(algorithm.hasher()),
            Some(hash) => Hasher::resume(algorithm, hash),
            None => None,
        };
        match resumed {
            Some(hasher) if held == acknowledged => Ok(Position { offset: acknowledged, hasher, state }),
            _ => {
                tracing::warn!(
                    upload = id,
                    held,
                    acknowledged,
                    "upload state and bytes disagree: hashing the bytes again"
                );
                let hasher = self.rehash(id, held, &state, algorithm).await?;
                if !self.meta.record_upload_progress(id, acknowledged, held, &hasher.state(), &state.0).await? {
                    return Err(RegistryError::UploadInterrupted("another request moved the upload".into()));
                }
                Ok(Position { offset: held, hasher, state })
            }
        }
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
    async fn append(&self, id: &str, at: Position, body: ByteStream) -> Result<Position> {
        let hasher = Arc::new(Mutex::new(at.hasher));
        match self.blobs.upload_append(id, at.offset, &at.state, hashing(body, hasher.clone())).await {
            Ok((offset, state)) => {
                let hasher = Arc::try_unwrap(hasher)
                    .map_err(|_| RegistryError::Internal("upload hasher still shared".into()))?
                    .into_inner()
                    .expect("hasher lock");
                Ok(Position { offset, hasher, state })
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
        if self.meta.record_upload_progress(id, from, to.offset, &to.hasher.state(), &to.state.0).await? {
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
            let end = self.append(id, at, body).await?;
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
        let end = self.append(id, at, body).await?;
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
        let state = UploadState(upload.store_state.clone());
        self.blobs.upload_held(id, upload.acknowledged_bytes, &state).await?.ok_or_else(|| upload_unknown(id))?;
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
            // Digested with another algorithm than the session was started for: the
            // acknowledged bytes are hashed with that one.
            at => Position { hasher: self.rehash(id, at.offset, &at.state, expected.algorithm()).await?, ..at },
        };
        let before = at.offset;
        let end = match body {
            Some(body) => self.append(id, at, body).await?,
            None => at,
        };
        let Position { offset: size, hasher, state } = end;
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
            let stored = self.blobs.upload_commit(id, size, &state, &actual).await?;
            // The session ends in the same transaction that links the blob.
            (stored, self.meta.link_blob(name, &actual, stored, Some(id)).await?)
        };
        drop(held);
        self.sessions.lock().expect("sessions lock").remove(id);
        Ok(Completed { digest: actual, size, already_linked })
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
        let rule = crate::repositories::tag_mutability(&repository.settings);
        let immutable: Vec<String> = tags.iter().filter(|t| rule.is_immutable(t)).cloned().collect();
        let manifest = NewManifest {
            digest: digest.clone(),
            media_type: parsed.kind.media_type().to_string(),
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.clone(),
            annotations: parsed.annotations.map(|a| serde_json::to_string(&a).expect("string map serializes")),
            content: body,
            blobs: parsed.blobs,
            manifests: parsed.manifests,
        };
        let is_index = matches!(parsed.kind, ManifestKind::OciIndex | ManifestKind::DockerManifestList);
        match self.meta.put_manifest(name, &manifest, &tags, &immutable).await {
            Ok(()) => {
                self.scan_on_push(&repository, &digest, manifest.artifact_type.as_deref(), is_index).await;
                Ok(ManifestPut { digest, subject: parsed.subject, tags })
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
        let sboms = self.berth_sboms_of(name, digest).await?;
        match self.meta.delete_manifest(name, digest).await {
            Ok(_) => {}
            // Listed by an index: the store refuses it in the deleting transaction.
            Err(MetaError::ReferencedByIndex(parents)) => return Ok(Err(parents)),
            Err(e) => return Err(e.into()),
        }
        // The SBOM a scan attached describes this image only: it goes with it.
        for sbom in sboms {
            self.meta.delete_manifest(name, &sbom).await?;
        }
        for child in &image.children {
            let Ok(child_digest) = Digest::parse(child) else { continue };
            let orphan = self.meta.manifest_parents(name, child).await?.is_empty();
            let untagged = self.meta.image(name, child).await?.is_some_and(|c| c.tags.is_empty());
            if orphan && untagged {
                match self.meta.delete_manifest(name, &child_digest).await {
                    // Listed by another index meanwhile: it stays.
                    Ok(_) | Err(MetaError::ReferencedByIndex(_)) => {}
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
        let deleted = if reference.contains(':') {
            let digest = digest_param(reference)?;
            match self.meta.delete_manifest(name, &digest).await {
                Err(MetaError::ReferencedByIndex(parents)) => {
                    return Err(RegistryError::ReferencedByIndex { digest, parents });
                }
                other => other?,
            }
        } else {
            validate_tag(reference).map_err(RegistryError::TagInvalid)?;
            self.meta.delete_tag(name, reference).await?
        };
        if deleted { Ok(()) } else { Err(self.not_found_in(name, manifest_unknown(reference)).await) }
    }

    /// Records a pull for `lastRecordedPullTime`: at most one write per image per minute, done
    /// in the background so a pull never waits for the database writer.
    pub fn record_pull(&self, name: &str, digest: &Digest) {
        const EVERY_MS: i64 = 60_000;
        let now = berth_meta::now_ms();
        {
            let mut recorded = self.pulls_recorded.lock().expect("pull records");
            let key = (name.to_string(), digest.to_string());
            if recorded.get(&key).is_some_and(|t| now - t < EVERY_MS) {
                return;
            }
            if recorded.len() > 100_000 {
                recorded.clear();
            }
            recorded.insert(key, now);
        }
        let (meta, name, digest) = (self.meta.clone(), name.to_string(), digest.to_string());
        tokio::spawn(async move {
            if let Err(e) = meta.record_pull(&name, &digest, now).await {
                tracing::warn!(error = %e, "could not record a pull");
            }
        });
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
        Ok(self.meta.referrers(name, &digest, artifact_type).await?)
    }
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
        let node_a = Registry::new(meta.clone(), blobs.clone(), "111111111111".into(), crate::test_master_keys());
        let node_b = Registry::new(meta.clone(), blobs.clone(), "111111111111".into(), crate::test_master_keys());
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
        registry.blobs().upload_append(&id, 5, &state, body(b"lost in a crash")).await.unwrap();
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
