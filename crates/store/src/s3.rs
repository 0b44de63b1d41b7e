//! The S3 blob store, on any S3-compatible server, through `object_store`'s `AmazonS3`.
//!
//! Layout under the configured prefix, content-addressed as on the filesystem:
//! - `blobs/<alg>/<2 hex>/<hex>`: committed blobs.
//! - `uploads/<id>/…`: what an upload session holds until it is committed or dropped:
//!   `data`, the target of its S3 multipart upload (created with the first part);
//!   `multipart-<n>`, a marker naming each multipart upload the session created (so a dropped
//!   session aborts them even without its state); `staged-<offset>-<n>`, bytes received in
//!   chunks too small to be a part, kept until enough follow to make one.
//!
//! A session's state ([`UploadState`], kept by the caller in the metadata store) lists its
//! multipart upload, the parts sent (each at least S3's 5 MiB minimum but the last) and the
//! staged objects after them, so any node continues or commits it. An append writes only new
//! objects and new parts: the state it started from stays valid until the caller records the
//! new one, and an append nobody acknowledges leaves nothing the recorded state names.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_oci::{ByteRange, Digest};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{BlobStore, ByteStream, Listing, Result, StoreError, UploadState, listing};

/// S3's smallest part (every part of a multipart upload but the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// The part size sent: 10,000 parts (S3's most) of it hold 80,000 MiB, above ECR's largest
/// layer (52,000 MiB).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;

/// Where blobs go: a bucket (and a prefix in it) on an S3 server, and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Keys start with this (no leading or trailing slash; empty for the bucket's root).
    pub prefix: String,
    /// The server's URL (`http://127.0.0.1:3900`); AWS's own when absent.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Whether blob GETs may be redirected to presigned URLs of the server.
    pub presigned_reads: bool,
    /// Whether every object is written with SSE-S3 (`x-amz-server-side-encryption: AES256`):
    /// the server encrypts what it stores, so Berth leaves `AES256` repositories' blobs to it.
    pub server_side_encryption: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("presigned_reads", &self.presigned_reads)
            .field("server_side_encryption", &self.server_side_encryption)
            .finish()
    }
}

impl S3Config {
    /// Reads `s3://bucket[/prefix]?endpoint=…&region=…[&access_key_id=…&secret_access_key=…]
    /// [&presigned_reads=true][&server_side_encryption=AES256]`. Credentials missing from the URL come from `credential`
    /// (`BERTH_S3_ACCESS_KEY_ID` / `BERTH_S3_SECRET_ACCESS_KEY`, never the `AWS_*` variables,
    /// which name the caller's own Berth credentials).
    pub fn from_url(url: &str, credential: impl Fn(&str) -> Option<String>) -> std::result::Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{e}"))?;
        if parsed.scheme() != "s3" {
            return Err(format!("the scheme is {:?}, not s3", parsed.scheme()));
        }
        let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or("the URL names no bucket")?.to_string();
        let prefix = parsed.path().trim_matches('/').to_string();
        let (mut endpoint, mut region, mut key, mut secret, mut presigned_reads) = (None, None, None, None, false);
        let mut server_side_encryption = false;
        for (name, value) in parsed.query_pairs() {
            let value = value.into_owned();
            match name.as_ref() {
                "endpoint" => endpoint = Some(value.trim_end_matches('/').to_string()),
                "region" => region = Some(value),
                "access_key_id" => key = Some(value),
                "secret_access_key" => secret = Some(value),
                "presigned_reads" => {
                    presigned_reads = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        other => return Err(format!("presigned_reads is true or false, not {other:?}")),
                    }
                }
                "server_side_encryption" => {
                    server_side_encryption = match value.as_str() {
                        "AES256" => true,
                        other => {
                            return Err(format!(
                                "server_side_encryption is AES256 (SSE-S3), not {other:?}: Berth seals KMS repositories itself"
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (endpoint, region, access_key_id, secret_access_key, presigned_reads, \
                         server_side_encryption)"
                    ));
                }
            }
        }
        let access_key_id = key
            .or_else(|| credential("BERTH_S3_ACCESS_KEY_ID"))
            .ok_or("no access key: give access_key_id in the URL or BERTH_S3_ACCESS_KEY_ID")?;
        let secret_access_key = secret
            .or_else(|| credential("BERTH_S3_SECRET_ACCESS_KEY"))
            .ok_or("no secret key: give secret_access_key in the URL or BERTH_S3_SECRET_ACCESS_KEY")?;
        Ok(S3Config {
            bucket,
            prefix,
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id,
            secret_access_key,
            presigned_reads,
            server_side_encryption,
        })
    }

    /// The URL again without its credentials (for logs and messages).
    pub fn display(&self) -> String {
        let path = if self.prefix.is_empty() { String::new() } else { format!("/{}", self.prefix) };
        match &self.endpoint {
            Some(e) => format!("s3://{}{path}?endpoint={e}&region={}", self.bucket, self.region),
            None => format!("s3://{}{path}?region={}", self.bucket, self.region),
        }
    }
}

pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    /// The configured prefix with a trailing slash, or empty.
    root: String,
    presigned_reads: bool,
    server_side_encryption: bool,
}

/// A session's state: its multipart upload, the parts sent and the staged bytes after them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Session {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// The ETag and length of each part, part `i` being S3's part number `i + 1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<(String, u64)>,
    /// Staged objects (their names in the session's directory) and lengths, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    staged: Vec<(String, u64)>,
}

impl Session {
    fn parse(state: &UploadState) -> Result<Session> {
        if state.0.is_empty() {
            return Ok(Session::default());
        }
        serde_json::from_str(&state.0)
            .map_err(|e| StoreError::Io(io::Error::other(format!("unreadable upload state: {e}"))))
    }

    fn state(&self) -> UploadState {
        UploadState(serde_json::to_string(self).expect("a session serializes"))
    }

    fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.1).sum::<u64>() + self.staged_len()
    }

    fn staged_len(&self) -> u64 {
        self.staged.iter().map(|s| s.1).sum()
    }
}

fn store_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        e => StoreError::Io(io::Error::other(e.to_string())),
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Takes the first `n` bytes off the front of `chunks` (splitting one if need be).
fn take_front(chunks: &mut Vec<Bytes>, n: u64) -> Vec<Bytes> {
    let mut taken = Vec::new();
    let mut left = n as usize;
    while left > 0 {
        let Some(first) = chunks.first_mut() else { break };
        if first.len() <= left {
            left -= first.len();
            taken.push(chunks.remove(0));
        } else {
            taken.push(first.split_to(left));
            left = 0;
        }
    }
    taken
}

impl S3BlobStore {
    /// A store on the bucket `config` names. Nothing is sent yet: [`BlobStore::check`] tells
    /// whether the bucket answers.
    pub fn open(config: &S3Config) -> Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            // Path-style requests: what S3-compatible servers on an address (not a domain) take.
            .with_virtual_hosted_style_request(false)
            // A blob download may take long: bound the connect and each read, not the whole.
            .with_client_options(
                ClientOptions::new()
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_read_timeout(Duration::from_secs(60))
                    .with_allow_http(config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if config.server_side_encryption {
            let key: object_store::aws::AmazonS3ConfigKey = "server_side_encryption".parse().map_err(store_error)?;
            builder = builder.with_config(key, "AES256");
        }
        let s3 = builder.build().map_err(store_error)?;
        let root = if config.prefix.is_empty() { String::new() } else { format!("{}/", config.prefix) };
        Ok(S3BlobStore {
            s3: Arc::new(s3),
            root,
            presigned_reads: config.presigned_reads,
            server_side_encryption: config.server_side_encryption,
        })
    }

    /// Publishes a session's first `offset` bytes as `digest` (see `upload_commit`), in place
    /// of a stored copy when `replace` (S3 replaces an object whole: readers get the old or
    /// the new).
    async fn publish(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest, replace: bool) -> Result<u64> {
        let session = Session::parse(state)?;
        if session.size() != offset {
            return Err(StoreError::Io(io::Error::other(format!(
                "upload {id} holds {} bytes, not {offset}",
                session.size()
            ))));
        }
        let blob = self.blob_key(digest);
        match &session.multipart {
            // A small upload: staged objects only, which its state names. Published without
            // asking first whether the blob exists (the same digest is the same bytes), and its
            // objects removed by name without listing the session: what an unacknowledged
            // append left there (nothing, on the happy path) is GC's, through `upload_list`.
            // With the PUT that staged it, a one-chunk blob costs three requests.
            None => {
                let published = match session.staged.as_slice() {
                    [] => self.s3.put(&blob, PutPayload::default()).await.map(|_| ()).map_err(store_error),
                    [(name, _)] => self.s3.copy(&self.in_session(id, name)?, &blob).await.map_err(store_error),
                    many => match self.read_staged(id, many).await {
                        Ok(bytes) => {
                            self.s3.put(&blob, bytes.into_iter().collect()).await.map(|_| ()).map_err(store_error)
                        }
                        Err(e) => Err(e),
                    },
                };
                match published {
                    Ok(()) => {}
                    // A commit again after one that published and removed the staged objects
                    // (the caller's record of the session outlived it: its link failed): done.
                    Err(StoreError::NotFound) if !replace && self.stat(digest).await? == Some(offset) => {}
                    Err(e) => return Err(e),
                }
                let named: Vec<Path> =
                    session.staged.iter().map(|(name, _)| self.in_session(id, name)).collect::<Result<_>>()?;
                self.delete_objects(named).await?;
                return Ok(offset);
            }
            Some(multipart) if replace || self.stat(digest).await?.is_none() => {
                let mut parts: Vec<PartId> =
                    session.parts.iter().map(|(etag, _)| PartId { content_id: etag.clone() }).collect();
                if !session.staged.is_empty() {
                    // The last part may be smaller than the minimum.
                    let last = self.read_staged(id, &session.staged).await?;
                    parts.push(self.send_part(id, multipart, parts.len(), last).await?);
                }
                let data = self.in_session(id, "data")?;
                self.s3.complete_multipart(&data, multipart, parts).await.map_err(store_error)?;
                let assembled = self.s3.head(&data).await.map_err(store_error)?.size;
                if assembled != offset {
                    self.drop_session(id, Some(&session)).await.ok();
                    return Err(StoreError::Io(io::Error::other(format!(
                        "upload {id} assembled {assembled} bytes, not {offset}"
                    ))));
                }
                self.s3.copy(&data, &blob).await.map_err(store_error)?;
            }
            // Same digest, same bytes: a blob already stored is kept as it is.
            Some(_) => {}
        }
        self.drop_session(id, Some(&session)).await?;
        Ok(offset)
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!("{}blobs/{}/{}/{hex}", self.root, digest.algorithm().as_str(), &hex[..2]))
    }

    fn session_dir(&self, id: &str) -> Result<String> {
        // Session ids come from URLs: only accept the characters we generate.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::NotFound);
        }
        Ok(format!("{}uploads/{id}", self.root))
    }

    fn in_session(&self, id: &str, name: &str) -> Result<Path> {
        Ok(Path::from(format!("{}/{name}", self.session_dir(id)?)))
    }

    /// The staged bytes of a session, read back (less than a part: they are held whole).
    async fn read_staged(&self, id: &str, staged: &[(String, u64)]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(staged.len());
        for (name, len) in staged {
            let bytes = self.s3.get(&self.in_session(id, name)?).await.map_err(store_error)?.bytes().await;
            let bytes = bytes.map_err(store_error)?;
            if bytes.len() as u64 != *len {
                return Err(StoreError::Io(io::Error::other(format!(
                    "staged bytes {name} of upload {id} hold {} bytes, not {len}",
                    bytes.len()
                ))));
            }
            out.push(bytes);
        }
        Ok(out)
    }

    /// Starts a session's multipart upload, with the marker that lets a drop abort it.
    async fn start_multipart(&self, id: &str) -> Result<String> {
        let multipart = self.s3.create_multipart(&self.in_session(id, "data")?).await.map_err(store_error)?;
        let marker = self.in_session(id, &format!("multipart-{}", unique()))?;
        self.s3.put(&marker, PutPayload::from(multipart.clone())).await.map_err(store_error)?;
        Ok(multipart)
    }

    async fn send_part(&self, id: &str, multipart: &str, index: usize, part: Vec<Bytes>) -> Result<PartId> {
        let path = self.in_session(id, "data")?;
        let payload: PutPayload = part.into_iter().collect();
        self.s3.put_part(&path, &multipart.to_string(), index, payload).await.map_err(store_error)
    }

    /// Removes everything a session holds: its objects, and each multipart upload it started.
    async fn drop_session(&self, id: &str, session: Option<&Session>) -> Result<()> {
        let dir = Path::from(self.session_dir(id)?);
        let data = self.in_session(id, "data")?;
        let mut multiparts: Vec<String> = session.and_then(|s| s.multipart.clone()).into_iter().collect();
        let objects: Vec<Path> =
            self.s3.list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(store_error)?;
        for object in &objects {
            if object.filename().is_some_and(|f| f.starts_with("multipart-")) {
                match self.s3.get(object).await {
                    Ok(got) => {
                        multiparts.push(String::from_utf8_lossy(&got.bytes().await.map_err(store_error)?).into())
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        multiparts.sort();
        multiparts.dedup();
        for multipart in multiparts {
            // A completed or already aborted upload is no longer there: nothing to do.
            if let Err(e) = self.s3.abort_multipart(&data, &multipart).await {
                tracing::debug!(upload = id, error = %e, "abort of a multipart upload");
            }
        }
        self.delete_objects(objects).await
    }

    /// Deletes `objects` (in bulk requests); one that is gone already is not an error.
    async fn delete_objects(&self, objects: Vec<Path>) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        let deletions = futures_util::stream::iter(objects.into_iter().map(Ok)).boxed();
        self.s3.delete_stream(deletions).try_collect::<Vec<_>>().await.map(|_| ()).or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(()),
            e => Err(store_error(e)),
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        let options = GetOptions::default().with_range(range.map(|r| GetRange::Bounded(r.start..r.end + 1)));
        let got = self.s3.get_opts(&self.blob_key(digest), options).await.map_err(store_error)?;
        Ok(Box::pin(got.into_stream().map_err(io_error)))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.s3.delete(&self.blob_key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    fn list(&self) -> Listing<Digest> {
        let (s3, root) = (self.s3.clone(), self.root.clone());
        listing(move |tx| async move {
            let prefix = Path::from(format!("{root}blobs"));
            let mut objects = s3.list(Some(&prefix));
            while let Some(object) = objects.next().await {
                let item = match object {
                    Ok(meta) => {
                        let key = meta.location.as_ref();
                        let parts: Vec<&str> = key[root.len()..].split('/').collect();
                        match parts.as_slice() {
                            ["blobs", alg, _, hex] => match Digest::parse(&format!("{alg}:{hex}")) {
                                Ok(d) => Ok(d),
                                Err(_) => continue,
                            },
                            _ => continue,
                        }
                    }
                    Err(e) => Err(store_error(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        })
    }

    async fn upload_create(&self, id: &str) -> Result<UploadState> {
        self.session_dir(id)?;
        // Nothing is stored until bytes arrive.
        Ok(Session::default().state())
    }

    async fn upload_held(&self, id: &str, offset: u64, state: &UploadState) -> Result<Option<u64>> {
        self.session_dir(id)?;
        Ok(Some(Session::parse(state)?.size().min(offset)))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        state: &UploadState,
        mut data: ByteStream,
    ) -> Result<(u64, UploadState)> {
        let mut session = Session::parse(state)?;
        if session.size() != offset {
            return Err(StoreError::Io(io::Error::other(format!(
                "upload {id} is at {} bytes, not at {offset}",
                session.size()
            ))));
        }
        self.session_dir(id)?;
        // Bytes received and not yet sent; the staged bytes before them are read back when
        // enough arrive to make a part. One part is in flight while the next is received.
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0u64;
        let mut in_flight: Option<tokio::task::JoinHandle<Result<PartId>>> = None;
        let mut failure = None;
        loop {
            match data.next().await {
                Some(Ok(chunk)) => {
                    pending_len += chunk.len() as u64;
                    pending.push(chunk);
                }
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => break,
            }
            while session.staged_len() + pending_len >= PART_SIZE {
                let staged = std::mem::take(&mut session.staged);
                let staged_len: u64 = staged.iter().map(|s| s.1).sum();
                let mut part = self.read_staged(id, &staged).await?;
                part.extend(take_front(&mut pending, PART_SIZE - staged_len));
                pending_len -= PART_SIZE - staged_len;
                if let Some(sent) = in_flight.take() {
                    let etag = sent.await.map_err(|e| StoreError::Io(io::Error::other(e)))??;
                    session.parts.last_mut().expect("a part in flight is listed").0 = etag.content_id;
                }
                in_flight = Some(self.spawn_part(id, &mut session, part).await?);
            }
        }
        if let Some(sent) = in_flight.take() {
            let etag = sent.await.map_err(|e| StoreError::Io(io::Error::other(e)))??;
            session.parts.last_mut().expect("a part in flight is listed").0 = etag.content_id;
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        if pending_len > 0 {
            if session.staged_len() + pending_len >= MIN_PART {
                let staged = std::mem::take(&mut session.staged);
                let mut part = self.read_staged(id, &staged).await?;
                part.append(&mut pending);
                let sent = self.spawn_part(id, &mut session, part).await?;
                let etag = sent.await.map_err(|e| StoreError::Io(io::Error::other(e)))??;
                session.parts.last_mut().expect("the part sent is listed").0 = etag.content_id;
            } else {
                let name = format!("staged-{:020}-{}", session.size(), unique());
                let payload: PutPayload = pending.into_iter().collect();
                self.s3.put(&self.in_session(id, &name)?, payload).await.map_err(store_error)?;
                session.staged.push((name, pending_len));
            }
        }
        Ok((session.size(), session.state()))
    }

    async fn upload_read(&self, id: &str, offset: u64, state: &UploadState) -> Result<ByteStream> {
        let session = Session::parse(state)?;
        if session.multipart.is_some() {
            return Err(StoreError::Unsupported(
                "the parts of an S3 multipart upload cannot be read before it completes".into(),
            ));
        }
        let staged = self.read_staged(id, &session.staged).await?;
        let mut left = offset;
        let chunks: Vec<io::Result<Bytes>> = staged
            .into_iter()
            .map(|mut b| {
                b.truncate(left.min(b.len() as u64) as usize);
                left -= b.len() as u64;
                Ok(b)
            })
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }

    async fn upload_commit(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64> {
        self.publish(id, offset, state, digest, false).await
    }

    async fn upload_replace(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64> {
        self.publish(id, offset, state, digest, true).await
    }

    async fn upload_delete(&self, id: &str, state: Option<&UploadState>) -> Result<()> {
        let session = state.map(Session::parse).transpose().unwrap_or(None);
        self.drop_session(id, session.as_ref()).await
    }

    fn upload_list(&self) -> Listing<(String, u64)> {
        let (s3, root) = (self.s3.clone(), self.root.clone());
        listing(move |tx| async move {
            let prefix = Path::from(format!("{root}uploads"));
            let mut newest: std::collections::BTreeMap<String, SystemTime> = Default::default();
            let mut objects = s3.list(Some(&prefix));
            while let Some(object) = objects.next().await {
                match object {
                    Ok(meta) => {
                        let key = meta.location.as_ref();
                        if let Some(id) = key[root.len()..].split('/').nth(1) {
                            let at: SystemTime = meta.last_modified.into();
                            let entry = newest.entry(id.to_string()).or_insert(at);
                            *entry = (*entry).max(at);
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(store_error(e))).await;
                        return;
                    }
                }
            }
            let now = SystemTime::now();
            for (id, at) in newest {
                let age = now.duration_since(at).map_or(0, |d| d.as_secs());
                if tx.send(Ok((id, age))).await.is_err() {
                    return;
                }
            }
        })
    }

    async fn check(&self) -> Result<()> {
        let root = Path::from(self.root.trim_end_matches('/'));
        let root = if self.root.is_empty() { None } else { Some(&root) };
        self.s3.list_with_delimiter(root).await.map(|_| ()).map_err(store_error)
    }

    fn encrypts_at_rest(&self) -> bool {
        self.server_side_encryption
    }

    async fn presigned_read_url(&self, digest: &Digest, expires_at: i64) -> Result<Option<String>> {
        if !self.presigned_reads {
            return Ok(None);
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let expires_in = Duration::from_secs((expires_at - now).max(1) as u64);
        let url =
            self.s3.signed_url(http::Method::GET, &self.blob_key(digest), expires_in).await.map_err(store_error)?;
        Ok(Some(url.to_string()))
    }
}

impl S3BlobStore {
    /// Lists the next part in the session (its ETag filled in when it is sent) and sends it
    /// in a task of its own. Every part sent here is followed by another or by the staged
    /// bytes, so it must meet S3's minimum.
    async fn spawn_part(
        &self,
        id: &str,
        session: &mut Session,
        part: Vec<Bytes>,
    ) -> Result<tokio::task::JoinHandle<Result<PartId>>> {
        let len: u64 = part.iter().map(|b| b.len() as u64).sum();
        assert!(len >= MIN_PART, "a part of {len} bytes is under S3's minimum");
        let multipart = match &session.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.start_multipart(id).await?;
                session.multipart = Some(m.clone());
                m
            }
        };
        let index = session.parts.len();
        session.parts.push((String::new(), len));
        let (s3, path) = (self.s3.clone(), self.in_session(id, "data")?);
        Ok(tokio::spawn(async move {
            let payload: PutPayload = part.into_iter().collect();
            s3.put_part(&path, &multipart, index, payload).await.map_err(store_error)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix of its own in the bucket `BERTH_TEST_S3` names (`s3://bucket?endpoint=…`, with
    /// credentials in it or in `BERTH_S3_*`; `scripts/test` starts an S3 server): every test
    /// sees an empty store. Left behind afterwards, as the server is thrown away.
    struct Scratch(S3Config);

    fn test_config() -> S3Config {
        let url =
            std::env::var("BERTH_TEST_S3").expect("BERTH_TEST_S3 must name an S3 bucket (scripts/test starts one)");
        let mut config = S3Config::from_url(&url, |n| std::env::var(n).ok()).unwrap();
        // Short: s3s-fs names a sidecar file after the whole key, and a sha512 key is long.
        config.prefix = format!("t{}", &unique()[..12]);
        config
    }

    async fn fixture() -> (Scratch, Arc<dyn BlobStore>) {
        let config = test_config();
        let store = S3BlobStore::open(&config).unwrap();
        (Scratch(config), Arc::new(store))
    }

    async fn reopen(scratch: &Scratch) -> Arc<dyn BlobStore> {
        Arc::new(S3BlobStore::open(&scratch.0).unwrap())
    }

    crate::blob_store_conformance!(fixture, reopen);

    #[test]
    fn reads_its_url() {
        let env = |n: &str| (n == "BERTH_S3_SECRET_ACCESS_KEY").then(|| "from-env".to_string());
        let c = S3Config::from_url(
            "s3://berth/team/blobs?endpoint=http://127.0.0.1:3900/&region=garage&access_key_id=GK1",
            env,
        )
        .unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("berth", "team/blobs"));
        assert_eq!((c.endpoint.as_deref(), c.region.as_str()), (Some("http://127.0.0.1:3900"), "garage"));
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("GK1", "from-env"));
        assert!(!c.presigned_reads, "off unless asked for");
        assert!(!format!("{c:?}").contains("from-env"), "the secret is never printed");
        assert_eq!(c.display(), "s3://berth/team/blobs?endpoint=http://127.0.0.1:3900&region=garage");
        let secret = S3Config::from_url("s3://b?access_key_id=k&secret_access_key=a%2Fb%2Bc", |_| None).unwrap();
        assert_eq!(secret.secret_access_key, "a/b+c");
        for (url, why) in [
            ("s3://b", "no access key"),
            ("s3://b?access_key_id=k", "no secret key"),
            ("http://b?access_key_id=k&secret_access_key=s", "not s3"),
            ("s3://b?access_key_id=k&secret_access_key=s&presigned_reads=yes", "true or false"),
            ("s3://b?access_key_id=k&secret_access_key=s&bucket_style=virtual", "unknown parameter"),
        ] {
            let err = S3Config::from_url(url, |_| None).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn takes_bytes_off_the_front() {
        let mut chunks = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        assert_eq!(take_front(&mut chunks, 5), [Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        assert_eq!(chunks, [Bytes::from_static(b"fg")]);
        assert_eq!(take_front(&mut chunks, 9), [Bytes::from_static(b"fg")]);
        assert!(chunks.is_empty());
    }
}
