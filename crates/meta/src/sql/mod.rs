//! What the SQL backends (SQLite, PostgreSQL) share: statement fragments, the stored spellings
//! of enums and filters, and decoding rows into the domain types — written once against
//! [`SqlRow`], which both backends' rows implement.

use berth_oci::Digest;
use sqlx::Row;

use crate::{
    AccessKey, CreationTemplate, EncryptionType, ImageScan, KeyUse, ManagedPolicy, ManifestKeys, MetaError, Principal,
    PrincipalKind, PullBlock, PullGate, Repository, RepositorySettings, Result, ScanStatus, ScanType, StatusFilter,
    StoredManifest, TagFilter, TagMutabilityMode,
};

/// The columns a backend's row yields, by position and type.
pub(crate) trait SqlRow {
    fn text(&self, i: usize) -> String;
    fn opt_text(&self, i: usize) -> Option<String>;
    fn int(&self, i: usize) -> i64;
    fn opt_int(&self, i: usize) -> Option<i64>;
    fn flag(&self, i: usize) -> bool;
}

macro_rules! sql_row {
    ($row:ty) => {
        impl SqlRow for $row {
            fn text(&self, i: usize) -> String {
                self.get(i)
            }
            fn opt_text(&self, i: usize) -> Option<String> {
                self.get(i)
            }
            fn int(&self, i: usize) -> i64 {
                self.get(i)
            }
            fn opt_int(&self, i: usize) -> Option<i64> {
                self.get(i)
            }
            fn flag(&self, i: usize) -> bool {
                self.get(i)
            }
        }
    };
}
sql_row!(sqlx::sqlite::SqliteRow);
sql_row!(sqlx::postgres::PgRow);

/// SQL with `{unreferenced}` standing for "no manifest of its repository references the link
/// `<link>`"; the template and the table name are always literals of ours.
pub(crate) fn unreferenced_sql(template: &str, link: &str) -> sqlx::AssertSqlSafe<String> {
    let cond = format!(
        "NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = {link}.repository_id \
         AND mr.child_digest = {link}.digest AND mr.child_kind = 'blob')"
    );
    sqlx::AssertSqlSafe(template.replace("{unreferenced}", &cond))
}

pub(crate) const REPOSITORY_COLUMNS: &str = "id, name, created_at, tag_mutability, tag_mutability_exclusions, scan_on_push, encryption_type, kms_key, \
     pull_block_severity";

/// SQL naming the repository columns as `{cols}`; the template is always a literal of ours.
pub(crate) fn repo_sql(template: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(template.replace("{cols}", REPOSITORY_COLUMNS))
}

pub(crate) fn repository_from_row(r: &impl SqlRow) -> Result<Repository> {
    let exclusions = r.text(4);
    Ok(Repository {
        id: r.int(0),
        name: r.text(1),
        created_at: r.int(2),
        settings: RepositorySettings {
            tag_mutability: stored("tag mutability", &r.text(3), TagMutabilityMode::parse)?,
            tag_mutability_exclusions: serde_json::from_str(&exclusions)
                .map_err(|e| MetaError::Backend(format!("stored exclusion filters: {e}")))?,
            scan_on_push: r.flag(5),
            encryption_type: stored("encryption type", &r.text(6), EncryptionType::parse)?,
            kms_key: r.opt_text(7),
            pull_block_severity: r
                .opt_text(8)
                .map(|s| stored("pull policy", &s, |s| PullBlock::parse(s).ok()))
                .transpose()?,
        },
    })
}

pub(crate) fn principal_from_row(r: &impl SqlRow, offset: usize) -> Principal {
    Principal {
        id: r.text(offset),
        account_id: r.text(offset + 1),
        name: r.text(offset + 2),
        kind: if r.text(offset + 3) == "root" { PrincipalKind::Root } else { PrincipalKind::User },
        created_at: r.int(offset + 4),
    }
}

pub(crate) fn managed_policy_from_row(r: &impl SqlRow) -> ManagedPolicy {
    ManagedPolicy {
        arn: r.text(0),
        id: r.text(1),
        account_id: r.text(2),
        name: r.text(3),
        path: r.text(4),
        document: r.text(5),
        created_at: r.int(6),
        updated_at: r.int(7),
    }
}

/// The columns `access_key_from_row` reads, in order.
pub(crate) const ACCESS_KEY_COLUMNS: &str = "k.access_key_id, k.principal_id, k.sealed_secret, k.status, k.created_at, k.last_used_at, k.last_used_service, k.last_used_region";

pub(crate) fn access_key_from_row(r: &impl SqlRow) -> AccessKey {
    AccessKey {
        access_key_id: r.text(0),
        principal_id: r.text(1),
        sealed_secret: r.text(2),
        active: r.text(3) == "Active",
        created_at: r.int(4),
        last_used: r.opt_int(5).map(|at| KeyUse {
            at,
            service: r.opt_text(6).unwrap_or_default(),
            region: r.opt_text(7).unwrap_or_default(),
        }),
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(crate) fn template_from_row(r: (String, String, i64, i64)) -> CreationTemplate {
    CreationTemplate { prefix: r.0, body: r.1, created_at: r.2, updated_at: r.3 }
}

/// A stored spelling of an enum, or a backend error naming what could not be read.
pub(crate) fn stored<T>(what: &str, text: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| MetaError::Backend(format!("stored {what} {text:?} is not one Berth knows")))
}

pub(crate) fn image_scan_from_row(r: &impl SqlRow, with_findings: bool) -> Result<ImageScan> {
    Ok(ImageScan {
        digest: r.text(0),
        scan_type: stored("scan type", &r.text(1), ScanType::parse)?,
        status: stored("scan status", &r.text(2), ScanStatus::parse)?,
        description: r.opt_text(3),
        queued_at: r.int(4),
        completed_at: r.opt_int(5),
        vulndb_version: r.opt_int(6),
        vulndb_updated_at: r.opt_int(7),
        findings: if with_findings { r.opt_text(8) } else { None },
        counts: r.opt_text(9),
    })
}

/// A stored manifest as `manifest` and `tagged_manifest` read it: digest, media type, content,
/// storage class, the repository's pull policy, the scan's status and counts, its keys, the
/// repository's verification on pull.
pub(crate) type StoredManifestRow = (
    String,
    String,
    Vec<u8>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

/// A manifest's keys from their two columns (both set, or it is stored as sent).
pub(crate) fn manifest_keys(wrapping: Option<String>, wrapped: Option<Vec<u8>>) -> Option<ManifestKeys> {
    Some(ManifestKeys { wrapping: wrapping?, wrapped: wrapped? })
}

pub(crate) fn stored_manifest_from_row(row: StoredManifestRow) -> Result<StoredManifest> {
    let (digest, media_type, content, class, block_severity, scan_status, scan_counts, wrapping, wrapped, verification) =
        row;
    let block_severity = block_severity.map(|s| stored("pull policy", &s, |s| PullBlock::parse(s).ok())).transpose()?;
    let scan_status = scan_status.map(|s| stored("scan status", &s, ScanStatus::parse)).transpose()?;
    Ok(StoredManifest {
        digest: parse_digest(digest)?,
        media_type,
        content,
        keys: manifest_keys(wrapping, wrapped),
        archived: class == "ARCHIVE",
        pull_gate: PullGate { block_severity, scan_status, scan_counts, verification },
    })
}

pub(crate) fn parse_digest(s: String) -> Result<Digest> {
    Digest::parse(&s).map_err(|e| MetaError::Backend(format!("stored digest {s:?} is invalid: {e}")))
}

pub(crate) fn filter_code(f: TagFilter) -> i64 {
    match f {
        TagFilter::Any => 0,
        TagFilter::Tagged => 1,
        TagFilter::Untagged => 2,
    }
}

pub(crate) fn status_code(f: StatusFilter) -> i64 {
    match f {
        StatusFilter::Any => 0,
        StatusFilter::Active => 1,
        StatusFilter::Archived => 2,
        StatusFilter::Activating => 3,
    }
}

/// SQL condition on `m` (a manifests row) for a `status_code` bound as `$n`.
pub(crate) fn status_condition(n: usize) -> String {
    format!("(${n} = 0 OR (${n} = 1 AND m.storage_class = 'STANDARD') OR (${n} = 2 AND m.storage_class = 'ARCHIVE'))")
}
