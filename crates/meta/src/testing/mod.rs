//! The contract every metadata backend must keep, role by role, as named clauses. Each role
//! has a conformance macro that expands, for a fixture (an async fn returning a guard and a
//! fresh, empty `Arc<dyn MetaStore>`), into one `#[tokio::test]` per clause:
//!
//! ```ignore
//! async fn fixture() -> (tempfile::TempDir, Arc<dyn MetaStore>) { … }
//! berth_meta::meta_store_conformance!(fixture);
//! ```
//!
//! The clauses named `concurrent_…` race several tasks against one store. On SQLite the single
//! writer makes them hold by construction; on a backend with concurrent writers they are the
//! test of the isolation each method's contract names (see `roles`).

use std::sync::Arc;

use berth_oci::{Algorithm, Digest};

use crate::{
    AccessKey, ActionKind, BlobKeyWrapping, CappedInsert, ConsoleSession, EncryptionType, Group, IdentityPolicySource,
    ImageFilter, KeyChange, KeyUse, LifecycleEvent, ManagedPolicy, ManifestKeys, MetaError, MetaStore, NewManifest,
    Principal, PrincipalKind, PullBlock, RepositoryFactsRow, RepositorySettings, ScanJob, ScanOutcome, ScanStatus,
    ScanType, SealedKind, Severity, StatusFilter, StoredSecret, TagFilter, TagMutabilityMode, UploadCipher,
    VulnDbState, VulnRecord, now_ms,
};

/// The store a clause runs against.
pub type Store = Arc<dyn MetaStore>;

/// How many tasks a concurrent clause races, and how many rounds it runs.
const RACERS: usize = 8;
const ROUNDS: usize = 10;

pub fn digest(s: &str) -> Digest {
    Digest::from_bytes(Algorithm::Sha256, s.as_bytes())
}

pub fn manifest(content: &str, blobs: &[&Digest], manifests: &[&Digest], subject: Option<&Digest>) -> NewManifest {
    NewManifest {
        digest: digest(content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: Some("application/x-test".into()),
        subject: subject.cloned(),
        annotations: None,
        content: content.as_bytes().to_vec(),
        size: content.len() as u64,
        keys: None,
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: manifests.iter().map(|d| (*d).clone()).collect(),
        replicate_to: Vec::new(),
    }
}

async fn repository(meta: &dyn MetaStore, name: &str) {
    meta.create_repository(name, &RepositorySettings::default(), &[]).await.unwrap();
}

/// A repository holding an image `m1` (config + layer, tags `v1` and `latest`), an index
/// `idx` of it (tag `multi`) and a referrer `sig` of it (untagged).
async fn populated(meta: &dyn MetaStore) -> (NewManifest, NewManifest, NewManifest) {
    repository(meta, "team/app").await;
    let (config, layer) = (digest("config"), digest("layer"));
    meta.link_blob("team/app", &config, 6, None).await.unwrap();
    meta.link_blob("team/app", &layer, 5, None).await.unwrap();
    let m = manifest("m1", &[&config, &layer], &[], None);
    meta.put_manifest("team/app", &m, &["v1".into(), "latest".into()], &[]).await.unwrap();
    let idx = manifest("idx", &[], &[&m.digest], None);
    meta.put_manifest("team/app", &idx, &["multi".into()], &[]).await.unwrap();
    let sig = manifest("sig", &[&config], &[], Some(&m.digest));
    meta.put_manifest("team/app", &sig, &[], &[]).await.unwrap();
    (m, idx, sig)
}

/// The root of account 123456789012.
fn root_principal() -> Principal {
    Principal {
        id: "123456789012".into(),
        account_id: "123456789012".into(),
        name: "root".into(),
        kind: PrincipalKind::Root,
        created_at: 1,
    }
}

/// Account 123456789012 with its root holding active keys `ids`, stored as `<prefix>-<id>`.
pub async fn root_with_keys(meta: &Store, ids: &[&str], prefix: &str) -> Principal {
    meta.ensure_account("123456789012").await.unwrap();
    let root = root_principal();
    meta.create_principal(&root).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let key = AccessKey {
            access_key_id: id.to_string(),
            principal_id: root.id.clone(),
            sealed_secret: format!("{prefix}-{id}"),
            active: true,
            created_at: i as i64,
            last_used: None,
        };
        meta.create_access_key(&key).await.unwrap();
    }
    root
}

/// Runs `f` on `RACERS` tasks at once and returns their results.
async fn race<T, F, Fut>(store: &Store, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Store, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (barrier, fut) = (barrier.clone(), f(store.clone(), i));
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("racing task"));
    }
    out
}

/// Expands to one `#[tokio::test]` per named clause of `$module`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_clauses {
    ($fixture:path, $module:ident, [$($clause:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $clause() {
                let (_guard, store) = $fixture().await;
                $crate::testing::$module::$clause(store).await;
            }
        )*
    };
}

/// `RepositoryStore`'s clauses for a fixture.
#[macro_export]
macro_rules! repository_store_conformance {
    ($fixture:path) => {
        mod repository_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                repositories,
                [
                    creates_a_repository_once_and_lists_in_order,
                    keeps_settings_and_resource_tags,
                    deletes_a_repository_with_images_only_by_force,
                    keeps_resource_policies,
                    reads_the_facts_of_a_name_range,
                    keeps_account_settings,
                    keeps_creation_templates,
                    reports_usage_per_repository,
                    concurrent_creates_of_one_repository_exactly_one_wins,
                    keeps_pull_time_exclusions_per_account,
                    concurrent_exclusions_never_pass_the_limit,
                ]
            );
        }
    };
}

/// `ContentStore`'s clauses for a fixture.
#[macro_export]
macro_rules! content_store_conformance {
    ($fixture:path) => {
        mod content_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                content,
                [
                    links_blobs_per_repository_and_mounts_them,
                    refuses_a_manifest_with_missing_references_whole,
                    stores_manifests_and_their_tags,
                    an_index_needs_its_children_and_referrers_are_found,
                    lists_image_ids_and_images_in_pages,
                    records_the_latest_pull,
                    keeps_a_manifest_an_index_lists,
                    archives_and_restores_images,
                    moves_and_deletes_tags,
                    never_moves_an_immutable_tag,
                    keeps_upload_sessions,
                    records_upload_progress_from_where_it_was,
                    keeps_a_sealed_upload_and_its_staged_chunk,
                    claims_a_blobs_keys_and_adds_wrappings,
                    keeps_a_sealed_manifests_keys_and_its_plaintext_size,
                    linking_a_blob_ends_its_upload_session,
                    concurrent_progress_from_one_offset_exactly_one_records,
                    concurrent_pushes_of_an_immutable_tag_exactly_one_wins,
                    concurrent_links_of_one_blob_exactly_one_is_new,
                    concurrent_index_put_and_child_delete_never_leave_an_index_dangling,
                ]
            );
        }
    };
}

/// `ScanStore`'s clauses for a fixture.
#[macro_export]
macro_rules! scan_store_conformance {
    ($fixture:path) => {
        mod scan_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                scans,
                [
                    imports_and_looks_up_vulnerability_records,
                    queues_claims_and_finishes_scans,
                    a_newer_request_wins_over_a_running_scan,
                    a_failure_keeps_the_last_complete_findings,
                    a_released_claim_is_a_new_request,
                    rescans_what_an_older_database_found,
                    an_image_deleted_takes_its_scan,
                    concurrent_workers_never_claim_a_scan_twice,
                    concurrent_stale_results_are_refused,
                ]
            );
        }
    };
}

/// `ReplicationStore`'s clauses for a fixture.
#[macro_export]
macro_rules! replication_store_conformance {
    ($fixture:path) => {
        mod replication_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                replication,
                [
                    a_push_queues_a_job_per_destination_in_its_transaction,
                    claims_retries_and_finishes_jobs,
                    a_push_again_queues_the_image_again_with_its_tags,
                    released_claims_run_again,
                    concurrent_workers_never_claim_a_job_twice,
                    an_ended_replication_is_recorded_as_an_event,
                    an_image_already_stored_is_queued_by_a_backfill,
                    removals_are_queued_as_the_latest_change_decides,
                    peers_are_kept_per_region_and_found_by_their_key,
                ]
            );
        }
    };
}

/// `LifecycleStore`'s clauses for a fixture.
#[macro_export]
macro_rules! lifecycle_store_conformance {
    ($fixture:path) => {
        mod lifecycle_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                lifecycle,
                [keeps_policies_and_when_they_were_applied, keeps_the_latest_preview, records_events_newest_first,]
            );
        }
    };
}

/// `GcStore`'s clauses for a fixture.
#[macro_export]
macro_rules! gc_store_conformance {
    ($fixture:path) => {
        mod gc_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                gc,
                [
                    lists_every_blob_and_reference,
                    collects_old_unreferenced_links_and_then_their_blobs,
                    finds_stale_uploads,
                    finds_and_forgets_keys_without_a_blob,
                    concurrent_unlink_and_manifest_put_never_lose_a_referenced_blob,
                    blob_bytes_locks_exclude_holders_of_one_digest,
                ]
            );
        }
    };
}

/// `AccountStore`'s clauses for a fixture.
#[macro_export]
macro_rules! account_store_conformance {
    ($fixture:path) => {
        mod account_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                accounts,
                [
                    keeps_accounts_principals_and_keys,
                    the_first_secret_stored_wins,
                    concurrent_secrets_agree,
                    keys_are_deactivated_and_deleted_keeping_one_active,
                    concurrent_deactivations_leave_one_active_key,
                    records_the_latest_use_of_a_key,
                    concurrent_first_starts_agree_on_one_account,
                    concurrent_first_keys_store_one,
                ]
            );
        }
    };
}

/// `IamPolicyStore`'s clauses for a fixture.
#[macro_export]
macro_rules! iam_policy_store_conformance {
    ($fixture:path) => {
        mod iam_policy_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                iam,
                [
                    keeps_groups_and_memberships,
                    gathers_every_identity_policy_of_a_principal,
                    deletes_principals_and_groups_with_what_they_own,
                ]
            );
        }
    };
}

/// `SecretStore`'s clauses for a fixture.
#[macro_export]
macro_rules! secret_store_conformance {
    ($fixture:path) => {
        mod secret_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                secrets,
                [pages_through_stored_secrets_and_replaces_them_only_if_unchanged, keeps_the_rotation_target,]
            );
        }
    };
}

/// `ManagedSecretStore`'s clauses for a fixture.
#[macro_export]
macro_rules! managed_secret_store_conformance {
    ($fixture:path) => {
        mod managed_secret_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                managed_secrets,
                [
                    a_secret_is_created_once_per_account_and_name,
                    versions_move_their_labels_and_repeat_ids_are_reported,
                    deletion_is_scheduled_restored_or_immediate,
                    updates_and_reads_are_recorded,
                    sealed_values_page_for_rotation,
                    concurrent_puts_leave_one_current_version,
                ]
            );
        }
    };
}

/// `SigningStore`'s clauses for a fixture.
#[macro_export]
macro_rules! signing_store_conformance {
    ($fixture:path) => {
        mod signing_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                signing,
                [
                    keeps_profiles_per_account_and_revokes_once,
                    keeps_an_images_signing_status_per_profile_until_it_goes,
                    keeps_a_repositorys_verification_on_pull_and_reads_it_with_the_manifest,
                ]
            );
        }
    };
}

/// `PublicRegistryStore`'s clauses for a fixture.
#[macro_export]
macro_rules! public_registry_store_conformance {
    ($fixture:path) => {
        mod public_registry_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                public,
                [keeps_one_alias_per_account_each_held_once, counts_anonymous_pulls_per_source_and_month]
            );
        }
    };
}

/// `ConsoleStore`'s clauses for a fixture.
#[macro_export]
macro_rules! console_store_conformance {
    ($fixture:path) => {
        mod console_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                console,
                [sessions_are_kept_until_signed_out_expired_or_their_key_goes, failed_sign_ins_are_counted_per_subject]
            );
        }
    };
}

/// `PullThroughStore`'s clauses for a fixture.
#[macro_export]
macro_rules! pull_through_store_conformance {
    ($fixture:path) => {
        mod pull_through_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                pull_through,
                [
                    rules_are_kept_per_account_and_prefix,
                    only_the_credential_and_refresh_interval_change,
                    a_deleted_rule_is_returned_once,
                    concurrent_creates_never_pass_the_limit,
                    a_due_tag_check_is_claimed_once,
                ]
            );
        }
    };
}

/// `KmsStore`'s clauses for a fixture.
#[macro_export]
macro_rules! kms_store_conformance {
    ($fixture:path) => {
        mod kms_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                kms,
                [
                    keys_are_stored_with_their_first_material_and_listed_per_account,
                    rotation_adds_material_and_keeps_the_old,
                    aliases_are_unique_per_account_and_go_with_their_key,
                    grants_are_kept_per_key,
                    sealed_material_pages_for_master_key_rotation,
                ]
            );
        }
    };
}

/// `LeaseStore`'s clauses for a fixture.
#[macro_export]
macro_rules! lease_store_conformance {
    ($fixture:path) => {
        mod lease_store {
            use super::*;
            $crate::__conformance_clauses!(
                $fixture,
                leases,
                [
                    a_lease_has_one_holder_until_it_expires,
                    concurrent_takers_of_a_lease_one_holds_it,
                    announced_changes_reach_every_watcher,
                ]
            );
        }
    };
}

/// Every role's clauses for a fixture.
#[macro_export]
macro_rules! meta_store_conformance {
    ($fixture:path) => {
        $crate::repository_store_conformance!($fixture);
        $crate::content_store_conformance!($fixture);
        $crate::scan_store_conformance!($fixture);
        $crate::replication_store_conformance!($fixture);
        $crate::lifecycle_store_conformance!($fixture);
        $crate::gc_store_conformance!($fixture);
        $crate::account_store_conformance!($fixture);
        $crate::iam_policy_store_conformance!($fixture);
        $crate::secret_store_conformance!($fixture);
        $crate::managed_secret_store_conformance!($fixture);
        $crate::pull_through_store_conformance!($fixture);
        $crate::signing_store_conformance!($fixture);
        $crate::public_registry_store_conformance!($fixture);
        $crate::console_store_conformance!($fixture);
        $crate::kms_store_conformance!($fixture);
        $crate::lease_store_conformance!($fixture);
    };
}

pub mod repositories;

pub mod content;

pub mod scans;

pub mod replication;

pub mod lifecycle;

pub mod gc;

pub mod accounts;

pub mod iam;

pub mod secrets;

pub mod managed_secrets;

pub mod public;

pub mod console;
pub mod pull_through;
pub mod signing;

pub mod leases;

pub mod kms;
