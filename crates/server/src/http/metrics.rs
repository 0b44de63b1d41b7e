//! `/metrics` in the Prometheus text format: request counts and latencies per route and status,
//! bytes moved, GC and lifecycle runs (recorded where they happen), and per-repository image
//! counts and stored bytes (ECR's `ImageCount` and `StorageBytes`, labelled by account and
//! repository name) and the replication queue per destination, read at scrape time;
//! replications finished and their lag are recorded by the worker. Served on the internal `--metrics-listen` address only.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::{V2Route, parse_v2_path};
use berth_registry::repositories::split_repository_key;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Installs the process-wide recorder; returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    PrometheusBuilder::new()
        .set_buckets(&buckets)
        .expect("valid buckets")
        .install_recorder()
        .expect("the metrics recorder is installed once")
}

/// A low-cardinality name for a request's route: never repository names or digests.
pub fn route_label(path: &str, ecr_target: Option<&str>) -> &'static str {
    if path == "/" {
        return if ecr_target.is_some() { "ecr_api" } else { "root" };
    }
    let Some(tail) = path.strip_prefix("/v2/").or_else(|| path.strip_prefix("/v2")) else {
        return match path {
            "/metrics" => "metrics",
            "/healthz" => "healthz",
            _ => "other",
        };
    };
    match parse_v2_path(tail) {
        Ok(V2Route::Base) => "v2_base",
        Ok(V2Route::Catalog) => "v2_catalog",
        Ok(V2Route::Tags { .. }) => "v2_tags",
        Ok(V2Route::Manifest { .. }) => "v2_manifest",
        Ok(V2Route::Blob { .. }) => "v2_blob",
        Ok(V2Route::UploadStart { .. }) | Ok(V2Route::Upload { .. }) => "v2_upload",
        Ok(V2Route::Referrers { .. }) => "v2_referrers",
        Err(_) => "v2_invalid",
    }
}

pub async fn render(State(app): State<AppState>) -> Response {
    match app.registry.storage_usage().await {
        Ok(usage) => {
            let default_account = app.identity.account_id();
            for (key, images, bytes) in usage.repositories {
                // Labelled as users know a repository, by account and name; never by its key.
                let (account, name) = split_repository_key(default_account, &key);
                let labels = [("account", account.to_string()), ("repository", name.to_string())];
                metrics::gauge!("berth_repository_images", &labels).set(images as f64);
                metrics::gauge!("berth_repository_storage_bytes", &labels).set(bytes as f64);
            }
            // Each blob once, however many repositories link it.
            metrics::gauge!("berth_registry_storage_bytes").set(usage.blob_bytes as f64);
            metrics::gauge!("berth_registry_blobs").set(usage.blobs as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: storage figures unavailable"),
    }
    // The replication queue, per destination (`region/registryId`) and state.
    match app.registry.replication_queue().await {
        Ok(queue) => {
            for (target, c) in queue {
                let destination = format!("{}/{}", target.region, target.registry_id);
                for (state, n) in
                    [("waiting", c.waiting), ("running", c.running), ("complete", c.complete), ("failed", c.failed)]
                {
                    let labels = [("destination", destination.clone()), ("state", state.to_string())];
                    metrics::gauge!("berth_replication_jobs", &labels).set(n as f64);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: replication queue unavailable"),
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn labels_never_carry_names() {
        assert_eq!(route_label("/v2/team/app/manifests/v1", None), "v2_manifest");
        assert_eq!(route_label("/v2/a/blobs/uploads/x", None), "v2_upload");
        assert_eq!(route_label("/", Some("AmazonEC2ContainerRegistry_V20150921.ListImages")), "ecr_api");
        assert_eq!(route_label("/v2/", None), "v2_base");
        assert_eq!(route_label("/anything/else", None), "other");
    }
}
