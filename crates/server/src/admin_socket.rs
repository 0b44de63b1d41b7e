//! The running server's admin channel: a Unix socket in the data directory (mode 0600, so only
//! the operator's account reaches it), for operations that must run inside the server rather
//! than in a second process writing the database — reloading the master keyring and rotating
//! it. One JSON request per line, one JSON answer per line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_registry::Registry;
use berth_registry::secrets::{ResealPace, SecretsReport};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// What the admin channel acts on.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    pace: ResealPace,
    /// The rotation this process runs, if one is running.
    rotation: Arc<Mutex<Option<u32>>>,
}

impl Admin {
    pub fn new(registry: Arc<Registry>, pace: ResealPace) -> Self {
        Admin { registry, pace, rotation: Arc::new(Mutex::new(None)) }
    }

    /// Re-reads the keyring file (also what `SIGHUP` does).
    pub fn reload_keyring(&self) -> anyhow::Result<Vec<u32>> {
        let versions = self.registry.master_keys().reload().map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(?versions, "reloaded the master keyring");
        Ok(versions)
    }

    /// Records a rotation to `target` and runs it in the background (unless this process runs
    /// it already).
    pub async fn start_rotation(&self, target: u32) -> anyhow::Result<()> {
        self.registry.begin_master_key_rotation(target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        {
            let mut running = self.rotation.lock().expect("rotation state");
            match *running {
                Some(t) if t == target => return Ok(()),
                Some(t) => anyhow::bail!("a rotation to version {t} is running; wait for it to finish"),
                None => *running = Some(target),
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            tracing::info!(target, "master key rotation started");
            let result = this.registry.rotate_master_key(target, this.pace).await;
            *this.rotation.lock().expect("rotation state") = None;
            match result {
                Ok(report) => tracing::info!(
                    target,
                    removable = ?report.removable,
                    "master key rotation done: every secret is sealed under version {target}"
                ),
                // Recorded in the store: the next start (or the next request) resumes it.
                Err(e) => tracing::error!(target, error = %e, "master key rotation stopped"),
            }
        });
        Ok(())
    }

    /// Resumes a rotation a previous run recorded and did not finish.
    pub async fn resume_rotation(&self) {
        match self.registry.unfinished_master_key_rotation().await {
            Ok(Some(target)) => {
                tracing::info!(target, "resuming an unfinished master key rotation");
                if let Err(e) = self.start_rotation(target).await {
                    tracing::error!(target, error = %e, "could not resume the master key rotation");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not read the master key rotation state"),
        }
    }

    async fn report(&self) -> anyhow::Result<Value> {
        let report = self.registry.secrets_report().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let running = *self.rotation.lock().expect("rotation state");
        Ok(report_json(&report, running.is_some(), &self.registry.master_keys().keyring().versions()))
    }

    /// `berth encrypt`: seals what is stored as sent, writing a progress line (`{"progress":
    /// …}`) at most every half second while it runs; its report.
    async fn encrypt(&self, out: &mut tokio::net::unix::OwnedWriteHalf) -> anyhow::Result<Value> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let registry = self.registry.clone();
        let run = tokio::spawn(async move {
            let last = Mutex::new(std::time::Instant::now() - std::time::Duration::from_secs(1));
            let progress = move |r: &berth_registry::encrypt::EncryptReport| {
                let mut last = last.lock().expect("progress clock");
                if last.elapsed() >= std::time::Duration::from_millis(500) {
                    *last = std::time::Instant::now();
                    let _ = tx.send(json!({ "progress": r }));
                }
            };
            // How long to rest after each blob sealed (BERTH_ENCRYPT_PAUSE_MS, default none): to
            // spare a store that serves pulls meanwhile.
            let pause = std::env::var("BERTH_ENCRYPT_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            registry.encrypt_at_rest(std::time::Duration::from_millis(pause), &progress).await
        });
        while let Some(line) = rx.recv().await {
            // A client gone away does not stop the run: it is resumable, and finishes.
            let _ = out.write_all(format!("{line}\n").as_bytes()).await;
        }
        let report = run.await.context("the encrypt run panicked")?.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(?report, "berth encrypt done");
        Ok(serde_json::to_value(&report)?)
    }

    async fn answer(&self, request: &Value) -> anyhow::Result<Value> {
        match request.get("op").and_then(Value::as_str) {
            Some("reload-keyring") => Ok(json!({ "keyringVersions": self.reload_keyring()? })),
            Some("rotate-master-key") => {
                let target = request
                    .get("to")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .context("rotate-master-key needs a version (\"to\")")?;
                // The file may have gained the version since the last reload.
                self.reload_keyring()?;
                self.start_rotation(target).await?;
                self.report().await
            }
            Some("master-key-status") => self.report().await,
            Some("refresh-cached-image") => {
                let field = |name: &str| {
                    request
                        .get(name)
                        .and_then(Value::as_str)
                        .with_context(|| format!("refresh-cached-image needs \"{name}\""))
                };
                let (repository, tag) = (field("repository")?, field("tag")?);
                let refresh =
                    self.registry.refresh_cached_tag(repository, tag).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(json!({
                    "imageDigest": refresh.digest.as_str(),
                    "previousImageDigest": refresh.previous.as_ref().map(|d| d.as_str()),
                    "changed": refresh.previous.as_ref() != Some(&refresh.digest),
                }))
            }
            other => anyhow::bail!("unknown admin operation {other:?}"),
        }
    }
}

fn report_json(report: &SecretsReport, running: bool, keyring: &[u32]) -> Value {
    let by_version: serde_json::Map<String, Value> =
        report.by_version.iter().map(|(v, n)| (v.to_string(), json!(n))).collect();
    json!({
        "rotationTarget": report.rotation_target,
        "running": running,
        "sealedByVersion": by_version,
        "unsealed": report.unsealed,
        "unknownVersion": report.unknown_version,
        "keyringVersions": keyring,
        "removableVersions": report.removable,
    })
}

/// Serves the admin channel at `path` until the process ends.
pub fn serve(path: PathBuf, admin: Admin) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The data-directory lock is held: a socket file left here is a killed process's.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let admin = admin.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match serde_json::from_str::<Value>(&line) {
                        // A long run: progress lines, then its answer.
                        Ok(request) if request.get("op").and_then(Value::as_str) == Some("encrypt") => {
                            match admin.encrypt(&mut write).await {
                                Ok(v) => json!({ "ok": true, "result": v }),
                                Err(e) => json!({ "ok": false, "error": format!("{e:#}") }),
                            }
                        }
                        Ok(request) => match admin.answer(&request).await {
                            Ok(v) => json!({ "ok": true, "result": v }),
                            Err(e) => json!({ "ok": false, "error": format!("{e:#}") }),
                        },
                        Err(e) => json!({ "ok": false, "error": format!("not JSON: {e}") }),
                    };
                    if write.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Sends one request to the running server's admin channel; its result, or its error.
pub async fn request(data_dir: &Path, request: Value) -> anyhow::Result<Value> {
    request_with_progress(data_dir, request, |_| {}).await
}

/// As [`request`], handing each progress line the server sends before its answer to `progress`.
pub async fn request_with_progress(
    data_dir: &Path,
    request: Value,
    mut progress: impl FnMut(&Value),
) -> anyhow::Result<Value> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no berth server is running on {} (its admin channel {} does not answer)",
            data_dir.display(),
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let answer = loop {
        let line = lines.next_line().await?.context("the server closed the admin channel")?;
        let v: Value = serde_json::from_str(&line)?;
        match v.get("progress") {
            Some(p) => progress(p),
            None => break v,
        }
    };
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    } else {
        anyhow::bail!("{}", answer.get("error").and_then(Value::as_str).unwrap_or("the server refused"))
    }
}
