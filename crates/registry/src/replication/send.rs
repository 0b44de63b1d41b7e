//! Replication to a peer deployment of another region: the source's side of the replication
//! route (`receive` is the destination's). For each image: the destination repository is made
//! ready (authorized and created there), every blob the repository there lacks is streamed in
//! parts from this side's store (opened, if sealed here: the destination seals it under its own
//! settings), each part acknowledged before the next, so that a run after an interruption goes
//! on from the last acknowledged part; the manifests go last (an index's children before it,
//! the referrers after the image), verified against their digests there.

use std::time::{Duration, Instant};

use berth_auth::sigv4;
use berth_meta::{ReplicationJob, ReplicationPeer};
use berth_oci::{ByteRange, Digest};
use berth_store::ByteStream;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::peers::PEER_SERVICE;
use super::{Failure, failure};
use crate::repositories::repository_key;
use crate::{Registry, RegistryError};

/// The replication route's path prefix; each operation is a name under it.
pub const ROUTE: &str = "/berth/replication/v1/";

/// How much of a blob one request carries: what a restarted transfer may send again.
const PART_LEN: u64 = 16 * 1024 * 1024;

/// Most uploads at peers this node remembers, to resume them.
const MAX_RESUMABLE: usize = 4096;

/// A peer client is made per (endpoint, trusted certificates).
pub(crate) type ClientKey = (String, Option<String>);

/// A node-wide limit on the bytes replication sends per second (`[replication]
/// max_bytes_per_second`): each chunk waits for its turn on one shared timeline.
pub(crate) struct Pacer {
    bytes_per_second: u64,
    next_free: std::sync::Mutex<Instant>,
}

impl Pacer {
    pub(crate) fn new(bytes_per_second: u64) -> Self {
        Pacer { bytes_per_second: bytes_per_second.max(1), next_free: std::sync::Mutex::new(Instant::now()) }
    }

    /// When `len` bytes may go: the timeline moves on by their share of a second.
    fn reserve(&self, len: usize, now: Instant) -> Instant {
        let mut next = self.next_free.lock().expect("pacer");
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(len as f64 / self.bytes_per_second as f64);
        start
    }
}

/// A failure answered by the replication route: `{"failureCode", "retry", "message"}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refusal {
    failure_code: String,
    retry: bool,
    #[serde(default)]
    message: String,
}

/// Which repository of which registry a request is about, on whose behalf.
struct Address<'a> {
    source_account: &'a str,
    registry_id: &'a str,
    repository: &'a str,
}

/// Signed requests to one peer.
struct PeerConnection<'a> {
    client: reqwest::Client,
    endpoint: String,
    peer: &'a ReplicationPeer,
    secret: String,
    destination: String,
}

/// The body of a request: small ones are hashed into the signature, a blob part is sent as a
/// stream (`UNSIGNED-PAYLOAD`: the blob's digest is checked when the upload is committed).
enum Payload {
    Empty,
    Bytes(Bytes, &'static str),
    Stream(ByteStream),
}

impl PeerConnection<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        op: &str,
        at: &Address<'_>,
        extra: &[(&str, &str)],
        payload: Payload,
    ) -> Result<reqwest::Response, Failure> {
        let mut params: Vec<(&str, &str)> =
            vec![("source", at.source_account), ("registry", at.registry_id), ("repository", at.repository)];
        params.extend_from_slice(extra);
        let query = params
            .iter()
            .map(|(k, v)| format!("{}={}", sigv4::uri_encode(k, false), sigv4::uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!("{ROUTE}{op}");
        let url = reqwest::Url::parse(&format!("{}{}?{query}", self.endpoint.trim_end_matches('/'), path))
            .map_err(|_| Failure::Retry(failure::DESTINATION_UNREACHABLE))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(Failure::Retry(failure::DESTINATION_UNREACHABLE)),
        };
        let payload_hash = match &payload {
            Payload::Empty => sigv4::sha256_hex(b""),
            Payload::Bytes(b, _) => sigv4::sha256_hex(b),
            Payload::Stream(_) => "UNSIGNED-PAYLOAD".to_string(),
        };
        let headers = vec![("host".to_string(), host), ("x-amz-content-sha256".to_string(), payload_hash.clone())];
        let (amz_date, authorization) = sigv4::sign_hashed(
            method.as_str(),
            &path,
            &query,
            &headers,
            &payload_hash,
            &self.peer.access_key_id,
            &self.secret,
            &self.peer.region,
            PEER_SERVICE,
            now_seconds(),
        );
        let mut request = self
            .client
            .request(method, url)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", amz_date)
            .header("authorization", authorization);
        request = match payload {
            Payload::Empty => request,
            Payload::Bytes(b, content_type) => request.header("content-type", content_type).body(b),
            Payload::Stream(s) => request.body(reqwest::Body::wrap_stream(s)),
        };
        let response = request.send().await.map_err(|e| {
            tracing::warn!(region = %self.peer.region, error = %e, "replication peer unreachable");
            Failure::Retry(failure::DESTINATION_UNREACHABLE)
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<Refusal>(&body) {
            Ok(r) => {
                tracing::info!(region = %self.peer.region, code = %r.failure_code, message = %r.message, "{op}: refused by the peer");
                let code = failure::known(&r.failure_code);
                Err(if r.retry { Failure::Retry(code) } else { Failure::Final(code) })
            }
            Err(_) => {
                tracing::warn!(region = %self.peer.region, %status, "{op}: the peer answered without a reason");
                Err(Failure::Retry(if status.as_u16() == 401 || status.as_u16() == 403 {
                    failure::PEER_REFUSED
                } else {
                    failure::DESTINATION_UNREACHABLE
                }))
            }
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(response: reqwest::Response) -> Result<T, Failure> {
        response.json().await.map_err(|e| {
            tracing::warn!(error = %e, "a replication peer's answer does not parse");
            Failure::Retry(failure::DESTINATION_UNREACHABLE)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobState {
    present: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadState {
    upload_id: String,
    offset: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestStored {
    dropped_tags: Vec<String>,
}

impl Registry {
    /// Sets the node's replication bandwidth limit (bytes per second; none by default).
    pub fn with_replication_bandwidth(mut self, bytes_per_second: Option<u64>) -> Self {
        self.replication.pacer = bytes_per_second.map(|b| std::sync::Arc::new(Pacer::new(b)));
        self
    }

    fn peer_client(&self, peer: &ReplicationPeer) -> Result<(reqwest::Client, String), Failure> {
        let Some(endpoint) = peer.endpoint.clone() else {
            return Err(Failure::Retry(failure::DESTINATION_UNREACHABLE));
        };
        let key: ClientKey = (endpoint.clone(), peer.ca_pem.clone());
        let mut clients = self.replication.peer_clients.lock().expect("peer clients");
        if let Some(c) = clients.get(&key) {
            return Ok((c.clone(), endpoint));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION"), " (replication)"))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &peer.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                tracing::error!(region = %peer.region, error = %e, "the peer's CA certificates do not parse");
                Failure::Retry(failure::DESTINATION_UNREACHABLE)
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            tracing::error!(error = %e, "the replication HTTP client");
            Failure::Retry(failure::INTERNAL_ERROR)
        })?;
        clients.insert(key, client.clone());
        Ok((client, endpoint))
    }

    /// The peer of the job's region: its record, client, endpoint and opened secret.
    async fn peer_of(
        &self,
        job: &ReplicationJob,
    ) -> Result<(ReplicationPeer, reqwest::Client, String, String), Failure> {
        let Some(peer) = self.meta().replication_peer(&job.target.region).await? else {
            return Err(Failure::Retry(failure::DESTINATION_UNREACHABLE));
        };
        let (client, endpoint) = self.peer_client(&peer)?;
        let secret = self.peer_secret(&peer)?;
        Ok((peer, client, endpoint, secret))
    }

    /// Removes the image (`tags` none) or `tags` of it at the peer of the job's region, as the
    /// source removed them (see `remove_replica`, which the peer runs).
    pub(super) async fn remove_at_peer(
        &self,
        job: &ReplicationJob,
        source_account: &str,
        name: &str,
        digest: &Digest,
        tags: Option<&[String]>,
    ) -> Result<(), Failure> {
        let (peer, client, endpoint, secret) = self.peer_of(job).await?;
        let destination = format!("{}/{}", job.target.region, job.target.registry_id);
        let connection = PeerConnection { client, endpoint, peer: &peer, secret, destination };
        let at = Address { source_account, registry_id: &job.target.registry_id, repository: name };
        let mut params = vec![("digest", digest.as_str())];
        let op = match tags {
            None => "image",
            Some(tags) => {
                params.extend(tags.iter().map(|t| ("tag", t.as_str())));
                "tags"
            }
        };
        connection.call(reqwest::Method::DELETE, op, &at, &params, Payload::Empty).await.map(|_| ())
    }

    /// Sends the job's image to the peer of its region (see the module's comment).
    pub(super) async fn replicate_to_peer(
        &self,
        job: &ReplicationJob,
        tags: &[String],
    ) -> Result<Vec<String>, Failure> {
        let (peer, client, endpoint, secret) = self.peer_of(job).await?;
        let (source_account, name, digest) = self.job_image(job)?;
        let destination = format!("{}/{}", job.target.region, job.target.registry_id);
        let connection = PeerConnection { client, endpoint, peer: &peer, secret, destination };
        let at = Address { source_account: &source_account, registry_id: &job.target.registry_id, repository: &name };
        connection.call(reqwest::Method::POST, "repository", &at, &[], Payload::Empty).await?;
        let dropped = self.send_image(&connection, &at, &job.repository, &digest, tags).await?;
        for referrer in self.meta().referrers(&job.repository, &digest, None).await? {
            let Ok(d) = Digest::parse(&referrer.digest) else { continue };
            self.send_image(&connection, &at, &job.repository, &d, &[]).await?;
        }
        Ok(dropped)
    }

    /// Sends one manifest of `source` (an index's children first) with its blobs and `tags`;
    /// returns the tags the destination left out. (Boxed: an index sends its children
    /// through it.)
    fn send_image<'a>(
        &'a self,
        connection: &'a PeerConnection<'a>,
        at: &'a Address<'a>,
        source: &'a str,
        digest: &'a Digest,
        tags: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<String>, Failure>> {
        Box::pin(async move {
            let (parsed, content) = self.source_manifest(source, digest).await?;
            for child in &parsed.manifests {
                self.send_image(connection, at, source, child, &[]).await?;
            }
            for blob in &parsed.blobs {
                self.send_blob(connection, at, source, blob).await?;
            }
            let mut extra = vec![("digest", digest.as_str())];
            extra.extend(tags.iter().map(|t| ("tag", t.as_str())));
            let media_type: &'static str = parsed.kind.media_type();
            let body = Payload::Bytes(Bytes::from(content), media_type);
            let response = connection.call(reqwest::Method::PUT, "manifest", at, &extra, body).await?;
            Ok(PeerConnection::json::<ManifestStored>(response).await?.dropped_tags)
        })
    }

    /// Sends a blob the destination repository lacks, in parts, resuming the peer's upload
    /// of it where a run before this one left it.
    async fn send_blob(
        &self,
        connection: &PeerConnection<'_>,
        at: &Address<'_>,
        source: &str,
        digest: &Digest,
    ) -> Result<(), Failure> {
        let digest_param = [("digest", digest.as_str())];
        let resume_key =
            (connection.peer.region.clone(), repository_key("", at.registry_id, at.repository), digest.to_string());
        let response = connection.call(reqwest::Method::GET, "blob", at, &digest_param, Payload::Empty).await?;
        if PeerConnection::json::<BlobState>(response).await?.present {
            self.replication.resumable.lock().expect("resumable").remove(&resume_key);
            return Ok(());
        }
        let Some(size) = self.meta().linked_blob(source, digest).await? else {
            return Err(Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND));
        };
        let known = self.replication.resumable.lock().expect("resumable").get(&resume_key).cloned();
        let resumed = match known {
            Some(id) => {
                match connection.call(reqwest::Method::GET, "upload", at, &[("id", id.as_str())], Payload::Empty).await
                {
                    Ok(r) => Some(PeerConnection::json::<UploadState>(r).await?),
                    Err(Failure::Retry(failure::UPLOAD_UNKNOWN)) => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let mut upload = match resumed {
            Some(u) => {
                tracing::info!(%digest, offset = u.offset, size, "resuming a replication upload");
                u
            }
            None => {
                let r = connection.call(reqwest::Method::POST, "upload", at, &[], Payload::Empty).await?;
                let u = PeerConnection::json::<UploadState>(r).await?;
                let mut resumable = self.replication.resumable.lock().expect("resumable");
                // Entries of jobs that ended for good are never looked up again: a bound keeps
                // them from piling up (what is dropped is only a resumption lost).
                if resumable.len() >= MAX_RESUMABLE {
                    resumable.clear();
                }
                resumable.insert(resume_key.clone(), u.upload_id.clone());
                drop(resumable);
                u
            }
        };
        while upload.offset < size {
            let end = (upload.offset + PART_LEN).min(size) - 1;
            let part = self
                .read_blob(source, digest.as_str(), Some(ByteRange { start: upload.offset, end }))
                .await
                .map_err(|e| match e {
                    RegistryError::BlobNotFound { .. } => Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND),
                    other => other.into(),
                })?;
            let body = self.metered(part.body, &connection.destination);
            let (offset, length) = (upload.offset.to_string(), (end + 1 - upload.offset).to_string());
            let params = [("id", upload.upload_id.as_str()), ("offset", offset.as_str()), ("length", length.as_str())];
            let r = connection.call(reqwest::Method::PATCH, "upload", at, &params, Payload::Stream(body)).await?;
            upload = PeerConnection::json::<UploadState>(r).await?;
        }
        let params = [("id", upload.upload_id.as_str()), ("digest", digest.as_str())];
        let done = connection.call(reqwest::Method::PUT, "upload", at, &params, Payload::Empty).await;
        if !matches!(done, Err(Failure::Retry(failure::DESTINATION_UNREACHABLE))) {
            // Committed, or refused (a digest mismatch drops the upload there): not resumed.
            self.replication.resumable.lock().expect("resumable").remove(&resume_key);
        }
        done.map(|_| ())
    }

    /// A blob part on its way out: counted in `berth_replication_bytes_sent_total`, and paced
    /// by the node's bandwidth limit if there is one.
    fn metered(&self, body: ByteStream, destination: &str) -> ByteStream {
        let counter = metrics::counter!("berth_replication_bytes_sent_total", "destination" => destination.to_string());
        let pacer = self.replication.pacer.clone();
        Box::pin(body.then(move |chunk: std::io::Result<Bytes>| {
            let (counter, pacer) = (counter.clone(), pacer.clone());
            async move {
                let chunk = chunk?;
                if let Some(p) = pacer {
                    tokio::time::sleep_until(p.reserve(chunk.len(), Instant::now()).into()).await;
                }
                counter.increment(chunk.len() as u64);
                Ok(chunk)
            }
        }))
    }
}

/// Seconds since the Unix epoch, for the signatures.
fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_chunks_by_their_share_of_a_second() {
        let pacer = Pacer::new(1_000_000);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(500_000, t0), t0, "the first chunk goes at once");
        assert_eq!(pacer.reserve(250_000, t0), t0 + Duration::from_millis(500));
        assert_eq!(pacer.reserve(1, t0), t0 + Duration::from_millis(750));
        // After an idle while, the timeline starts again from now: no burst is saved up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(pacer.reserve(1_000, later), later);
    }
}
