//! The metadata store's roles: one trait per part of the registry's data, so that each service
//! asks for the roles it uses and a second backend can be checked role by role
//! (`testing`'s conformance macros). `MetaStore` is all of them, for wiring. Each method says
//! what it must guarantee when calls race (the concurrency contract, restated in
//! ARCHITECTURE.md), where that is more than "one transaction".

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};

use crate::*;

/// Repositories and what is configured on them and on accounts: settings, resource tags,
/// resource policies, account settings and repository creation templates.
#[async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    async fn repository(&self, name: &str) -> Result<Option<Repository>>;

    /// Creates a repository; `RepositoryAlreadyExists` if the name is taken.
    /// Concurrency: the name is a unique key; of racing creates exactly one succeeds.
    async fn create_repository(
        &self,
        name: &str,
        settings: &RepositorySettings,
        tags: &[(String, String)],
    ) -> Result<Repository>;

    /// Repository names in order, after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;

    /// Repositories with their settings in name order, after `last`, at most `limit`.
    async fn describe_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<Repository>>;

    /// Replaces a repository's settings; returns the repository as it now is.
    async fn update_repository_settings(&self, name: &str, settings: &RepositorySettings) -> Result<Repository>;

    /// Deletes a repository with everything in it; without `force`, only an empty one
    /// (`RepositoryNotEmpty` otherwise).
    async fn delete_repository(&self, name: &str, force: bool) -> Result<Repository>;

    async fn repository_resource_tags(&self, name: &str) -> Result<Vec<(String, String)>>;

    /// What authorization reads of every repository named `first` to `last` (inclusive, in
    /// name order): its policy text and resource tags — two reads for a whole listing's page,
    /// where one repository at a time would take two each.
    async fn repository_facts_between(&self, first: &str, last: &str) -> Result<Vec<RepositoryFactsRow>>;

    /// Adds or replaces resource tags; `RepositoryNotFound` if there is no such repository.
    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<()>;

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<()>;

    /// Per repository: (name, image count, bytes of the blobs it links), for `/metrics`.
    async fn repository_usage(&self) -> Result<Vec<(String, i64, i64)>>;

    async fn account_setting(&self, account_id: &str, name: &str) -> Result<Option<String>>;

    async fn put_account_setting(&self, account_id: &str, name: &str, value: &str) -> Result<()>;

    /// A repository's policy text. `RepositoryNotFound` if there is no repository.
    async fn repository_policy(&self, repository: &str) -> Result<Option<String>>;

    /// Sets (`Some`) or removes (`None`) a repository's policy; returns the previous text.
    async fn set_repository_policy(&self, repository: &str, text: Option<&str>) -> Result<Option<String>>;

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>>;

    /// Sets or removes an account's registry policy; returns the previous text.
    async fn set_registry_policy(&self, account_id: &str, text: Option<&str>) -> Result<Option<String>>;

    /// Creates a template; `AlreadyExists` if one has that prefix.
    async fn create_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate>;

    /// Replaces a template's body; `NotFound` if there is none with that prefix.
    async fn update_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate>;

    async fn delete_creation_template(&self, prefix: &str) -> Result<CreationTemplate>;

    async fn creation_templates(&self) -> Result<Vec<CreationTemplate>>;

    /// Adds a principal to an account's pull-time update exclusions, unless it is there
    /// (`Taken`) or the account has `limit` already (`LimitReached`).
    /// Concurrency: the count and the insert are one transaction holding the account's list
    /// lock, so racing registrations never make an account's list longer than `limit`.
    async fn add_pull_time_exclusion(
        &self,
        account_id: &str,
        principal_arn: &str,
        at: i64,
        limit: usize,
    ) -> Result<CappedInsert>;

    /// Whether there was such an exclusion to remove.
    async fn remove_pull_time_exclusion(&self, account_id: &str, principal_arn: &str) -> Result<bool>;

    /// Sets (`Some`) or removes a repository's verification on pull (JSON); `RepositoryNotFound`
    /// if there is no such repository.
    async fn set_pull_verification(&self, repository: &str, config: Option<&str>) -> Result<()>;

    /// A repository's verification on pull; `RepositoryNotFound` if there is no such repository.
    async fn pull_verification(&self, repository: &str) -> Result<Option<String>>;

    /// An account's exclusions, (principal ARN, registered at), in ARN order.
    async fn pull_time_exclusions(&self, account_id: &str) -> Result<Vec<(String, i64)>>;
}

/// What repositories hold: blob links, manifests with their references, tags, image records,
/// and upload sessions.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Records a durable blob and links it into a repository (idempotent); `finished_upload`,
    /// the session that delivered it, ends in the same transaction (one commit, not two).
    /// Returns whether the repository held the blob already, decided in that transaction.
    /// Concurrency: insert-if-absent on (repository, digest) in that transaction; of racing
    /// links exactly one is told the blob is new.
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&str>,
    ) -> Result<bool>;

    /// Links a blob already linked in `from` into `to`; false if `from` does not hold it.
    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool>;

    /// The size of a blob if `repository` may serve it.
    async fn linked_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>>;

    /// Stores a manifest (idempotent for identical content) and points `tags` at it, in one
    /// transaction that first checks every referenced blob and child manifest is present and
    /// that no tag in `immutable_tags` would move to another manifest (`TagImmutable`).
    /// Concurrency: the immutable tags' current targets and the referenced links and child
    /// manifests are read with locking reads in that transaction, so racing pushes of an
    /// immutable tag have one winner, and a GC unlink or child delete is ordered before (the
    /// put is refused) or after (the reference protects what it names).
    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tags: &[String],
        immutable_tags: &[String],
    ) -> Result<()>;

    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<StoredManifest>>;

    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>>;

    /// The manifest a tag names, in one read: what `resolve_tag` and then `manifest` answer
    /// (a pull by tag, the hot path, is one round trip to a server database).
    async fn tagged_manifest(&self, repository: &str, tag: &str) -> Result<Option<StoredManifest>>;

    /// Deletes a manifest and the tags pointing at it; false if it was not there. A manifest
    /// an index of the repository lists is not deleted: `ReferencedByIndex`, decided in the
    /// same transaction, so an index put meanwhile cannot be left pointing at nothing.
    /// Concurrency: the index references to it are read under lock in the deleting transaction.
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool>;

    /// Deletes a tag only; false if it was not there.
    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool>;

    async fn list_tags(&self, repository: &str, last: Option<&str>, limit: u32) -> Result<Vec<String>>;

    /// Manifests whose subject is `digest`, optionally only those of one artifact type.
    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestSummary>>;

    /// (digest, tag) pairs, one per tag and one tagless pair per untagged image, ordered by
    /// digest then tag, after `after`, at most `limit`.
    async fn list_image_ids(
        &self,
        repository: &str,
        after: Option<(&str, &str)>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<(String, Option<String>)>>;

    /// Images in digest order after `after`, at most `limit`.
    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<ImageRecord>>;

    async fn image(&self, repository: &str, digest: &str) -> Result<Option<ImageRecord>>;

    /// `blob_bytes` of each of `digests` the repository holds, in one query (for the sizes of
    /// a page of indexes' children).
    async fn image_blob_bytes(&self, repository: &str, digests: &[String]) -> Result<Vec<(String, i64)>>;

    /// Index manifests in the repository that list `digest` as a child.
    async fn manifest_parents(&self, repository: &str, digest: &str) -> Result<Vec<String>>;

    /// Records that a manifest was pulled at `at` (epoch ms).
    async fn record_pull(&self, repository: &str, digest: &str, at: i64) -> Result<()>;

    /// Moves an image to the archive storage class (`archived`) or back to standard, at `at`.
    /// `None` if there is no such image, else whether its class changed. Pushing an archived
    /// image's manifest again (`put_manifest`) also restores it.
    async fn set_image_archived(&self, repository: &str, digest: &str, archived: bool, at: i64)
    -> Result<Option<bool>>;

    /// Records a new upload session with the blob store's state for it, and how it is sealed
    /// if its repository's blobs are (no staged chunk yet).
    async fn create_upload(
        &self,
        repository: &str,
        id: &str,
        algorithm: Algorithm,
        store_state: &str,
        cipher: Option<&UploadCipher>,
    ) -> Result<()>;

    async fn upload(&self, id: &str) -> Result<Option<Upload>>;

    async fn delete_upload(&self, id: &str) -> Result<()>;

    /// Records an upload's progress after a chunk: it now holds `to` bytes hashed to
    /// `hash_state`, stored as the blob store's `store_state` says, with the sealed upload's
    /// new `staged_chunk` (the plaintext past its last whole chunk, sealed; `None` for an
    /// upload stored as sent). Only if it held `from` bytes (a compare-and-set on
    /// `acknowledged_bytes`, so of two writers continuing from one offset at most one
    /// records); false otherwise, or if there is no such upload.
    async fn record_upload_progress(
        &self,
        id: &str,
        from: u64,
        to: u64,
        hash_state: &[u8],
        store_state: &str,
        staged_chunk: Option<&[u8]>,
    ) -> Result<bool>;

    /// A sealed blob's data keys, one wrapping per key that protects it; none for a blob
    /// stored as sent.
    async fn blob_keys(&self, digest: &Digest) -> Result<Vec<BlobKeyWrapping>>;

    /// Records the keys a blob's bytes are about to be published under, replacing whatever was
    /// recorded for the digest before (keys of a commit that was interrupted before its blob
    /// record was made, whose bytes the caller has removed). Call under the blob's commit lock
    /// (`GcStore::lock_blob_bytes`), before publishing the bytes.
    async fn claim_blob_keys(&self, digest: &Digest, keys: &BlobKeyWrapping) -> Result<()>;

    /// Adds a wrapping of a sealed blob's keys under another key; one already recorded for
    /// that key stays as it is.
    async fn add_blob_key_wrapping(&self, digest: &Digest, keys: &BlobKeyWrapping) -> Result<()>;

    /// The repositories (keys) that link a blob.
    async fn repositories_linking(&self, digest: &Digest) -> Result<Vec<String>>;

    /// Manifests stored as sent, in (repository, digest) order after `after`, at most `limit`:
    /// what `berth encrypt` seals.
    async fn unsealed_manifests(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<UnsealedManifest>>;

    /// Stores a manifest's sealed form (content, annotations, keys) in place of the one stored
    /// as sent; false if it is gone or sealed already.
    async fn seal_stored_manifest(
        &self,
        repository: &str,
        digest: &str,
        content: &[u8],
        annotations: Option<&str>,
        keys: &ManifestKeys,
    ) -> Result<bool>;

    /// Notes that an ECR API part was received and whether it was under the minimum size; a
    /// small part followed by another marks the upload `part_too_small`.
    async fn note_upload_part(&self, id: &str, small: bool) -> Result<()>;
}

/// The vulnerability database and the scan queue with its results.
#[async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Inserts or replaces records (a record whose stored `modified` is the same is left
    /// alone); returns how many were added or changed. One transaction per call.
    async fn vulndb_put(&self, records: &[VulnRecord]) -> Result<u64>;

    /// Bumps the database version after an import that changed `changed` records.
    async fn vulndb_finish_import(&self, changed: u64) -> Result<VulnDbState>;

    async fn vulndb_state(&self) -> Result<VulnDbState>;

    /// The records filed under any of `keys`, each once: (id, JSON).
    async fn vulndb_lookup(&self, keys: &[(String, String)]) -> Result<Vec<(String, String)>>;

    /// Requests a scan of an image (`PENDING`, a new generation). With `only_if_new`, an image
    /// that has a scan row already is left alone. Returns whether a scan was queued.
    async fn request_scan(
        &self,
        repository: &str,
        digest: &str,
        scan_type: ScanType,
        only_if_new: bool,
    ) -> Result<bool>;

    /// Claims up to `limit` pending scans for `worker`, oldest first.
    /// Concurrency: a claim skips rows another claim holds (SQLite: one `UPDATE … RETURNING`
    /// in the single writer; PostgreSQL: `FOR UPDATE SKIP LOCKED`); no row goes to two workers.
    async fn claim_scans(&self, worker: &str, limit: u32) -> Result<Vec<ScanJob>>;

    /// Records a claimed scan's outcome, unless a newer request came meanwhile (then the scan
    /// stays pending for its next run). An outcome without findings (a failure) keeps the last
    /// complete scan's findings and counts, which the pull policy goes on reading. Returns
    /// whether it was recorded.
    /// Concurrency: conditional on the generation in the same statement, so a request that
    /// bumped it first always wins over the stale result.
    async fn finish_scan(&self, job: &ScanJob, outcome: &ScanOutcome) -> Result<bool>;

    /// Puts scans claimed by `worker` (or by anyone, claimed before `before`) back in the queue,
    /// as a new request (so a released scan still running cannot record its result): how a
    /// restarted node resumes the scans it was running, and how a dead node's are taken over.
    async fn release_scans(&self, worker: Option<&str>, before: i64) -> Result<u64>;

    async fn image_scan(&self, repository: &str, digest: &str) -> Result<Option<ImageScan>>;

    /// The scans of several images of one repository, without their findings.
    async fn image_scan_summaries(&self, repository: &str, digests: &[String]) -> Result<Vec<ImageScan>>;

    /// Queues again, in one statement, every complete scan of `repository` computed against a
    /// database version older than `version`; returns how many.
    async fn request_rescans(&self, repository: &str, version: i64) -> Result<u64>;
}

/// The replication queue: one job per image and destination, queued by `put_manifest`
/// (`NewManifest::replicate_to`) in the transaction that stores the image.
#[async_trait]
pub trait ReplicationStore: Send + Sync + 'static {
    /// Claims up to `limit` replications due by `now` for `worker`, the longest due first.
    /// Concurrency: a claim skips rows another claim holds (SQLite: one `UPDATE … RETURNING`
    /// in the single writer; PostgreSQL: `FOR UPDATE SKIP LOCKED`); no job goes to two workers.
    async fn claim_replications(&self, worker: &str, now: i64, limit: u32) -> Result<Vec<ReplicationJob>>;

    /// Records a claimed job's outcome, unless the image was pushed (or removed) again
    /// meanwhile — the job then stays queued for its next run, and `worker`'s claim on it is
    /// released so that the next run can start — or the claim was released. Returns whether it
    /// was recorded. Concurrency: conditional on the generation and the claim in one statement.
    async fn finish_replication(
        &self,
        job: &ReplicationJob,
        worker: &str,
        outcome: &ReplicationOutcome,
    ) -> Result<bool>;

    /// Puts jobs claimed by `worker` (or by anyone, claimed before `before`) back in the
    /// queue, due at once: how a restarted node resumes its jobs and how a dead node's are
    /// taken over. A released run still going cannot record its outcome.
    async fn release_replications(&self, worker: Option<&str>, before: i64) -> Result<u64>;

    /// Queues `targets` for an image the repository holds, as a push of it with `tags` would
    /// (a backfill of images pushed before the rules existed). `NotFound` if it
    /// holds no such image.
    async fn queue_replications(
        &self,
        repository: &str,
        digest: &str,
        tags: &[String],
        targets: &[ReplicationTarget],
    ) -> Result<()>;

    /// Queues the removal of an image (`tag` none: it was deleted) or of one of its tags at
    /// `targets`, as the source is about to do it (write-ahead: the job checks the source when
    /// it runs, and removes nothing the source still has). Per destination the latest change
    /// decides: a removal replaces a finished job; a tag removal while the image is still to
    /// be sent takes the tag out of what is sent (the job runs again); tag removals waiting
    /// together are merged; a delete waiting is left as it is.
    /// The job is due at `due_at`: a moment after the removal should be done, in case the
    /// removal never happens or is not seen (the caller makes it due at once once the source
    /// removed it: `hasten_replications`).
    async fn queue_replication_removal(
        &self,
        repository: &str,
        digest: &str,
        tag: Option<&str>,
        targets: &[ReplicationTarget],
        due_at: i64,
    ) -> Result<()>;

    /// Makes the image's queued jobs that have not run yet due now; how many.
    async fn hasten_replications(&self, repository: &str, digest: &str, now: i64) -> Result<u64>;

    /// Marks `jobs`, which `worker` is running, as still being run at `now` (the claims'
    /// heartbeat, so that `release_replications(None, …)` takes over only a dead node's
    /// jobs, and a claim left behind by a run that ended without recording is not kept alive);
    /// how many claims it renewed.
    async fn renew_replication_claims(&self, worker: &str, jobs: &[ReplicationJob], now: i64) -> Result<u64>;

    /// Where an image's replications stand, one per destination, in destination order.
    async fn image_replications(&self, repository: &str, digest: &str) -> Result<Vec<ImageReplication>>;

    /// Jobs per destination and status (`IN_PROGRESS` split into waiting and running), in
    /// destination order: for `/metrics` and `berth replication status`.
    async fn replication_queue(&self) -> Result<Vec<(ReplicationTarget, ReplicationQueueCounts)>>;

    /// The replications that ended (`finish_replication` records one event per `COMPLETE` or
    /// `FAILED` outcome), oldest first, with ids above `after`; of one source repository if
    /// `repository` is given.
    async fn replication_events(
        &self,
        repository: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplicationEvent>>;

    /// Adds or replaces the peer of `peer.region`. `AlreadyExists` if another region's peer
    /// holds the same access key id.
    async fn put_replication_peer(&self, peer: &ReplicationPeer) -> Result<()>;

    async fn replication_peer(&self, region: &str) -> Result<Option<ReplicationPeer>>;

    /// The peer whose credential has this access key id.
    async fn replication_peer_by_key(&self, access_key_id: &str) -> Result<Option<ReplicationPeer>>;

    /// Every peer, in region order.
    async fn replication_peers(&self) -> Result<Vec<ReplicationPeer>>;

    /// Whether there was a peer of `region` to remove.
    async fn delete_replication_peer(&self, region: &str) -> Result<bool>;
}

/// Lifecycle policies, their previews and the events of their runs.
#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// Sets (or with `None` removes) a repository's lifecycle policy text; returns the previous
    /// text and when it was last evaluated. `RepositoryNotFound` if there is no repository.
    async fn set_lifecycle_policy(&self, repository: &str, text: Option<&str>)
    -> Result<Option<(String, Option<i64>)>>;

    async fn lifecycle_policy(&self, repository: &str) -> Result<Option<(String, Option<i64>)>>;

    /// Records when the lifecycle policy was last applied (`lastEvaluatedAt`).
    async fn set_lifecycle_evaluated(&self, repository: &str, at: i64) -> Result<()>;

    /// Stores a repository's lifecycle preview (replacing the previous one).
    async fn put_lifecycle_preview(
        &self,
        repository: &str,
        policy_text: &str,
        status: &str,
        results: &str,
    ) -> Result<()>;

    /// The last preview: (policy text, status, results JSON).
    async fn lifecycle_preview(&self, repository: &str) -> Result<Option<(String, String, String)>>;

    async fn record_lifecycle_event(&self, event: &LifecycleEvent) -> Result<()>;

    /// The newest `limit` lifecycle events (of one repository, or all), newest first.
    async fn lifecycle_events(&self, repository: Option<&str>, limit: u32) -> Result<Vec<LifecycleEvent>>;
}

/// What garbage collection and fsck read and remove: every blob and reference, unreferenced
/// links, unlinked blobs, stale uploads.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Every blob the registry has recorded, with its size.
    async fn all_blobs(&self) -> Result<Vec<(String, i64)>>;

    async fn all_manifest_references(&self) -> Result<Vec<ManifestReferences>>;

    /// What a collection with this cutoff (epoch ms) would remove: the number of blob links no
    /// manifest of their repository references and that are older than the cutoff, and the
    /// blobs (digest, size) that would then have no link left and were recorded before it.
    async fn gc_preview(&self, before: i64) -> Result<(u64, Vec<(String, i64)>)>;

    /// Removes the unreferenced links older than `before`; returns how many.
    /// Concurrency: one statement whose "no manifest references it" test is ordered against
    /// `put_manifest`'s locking reads of the same link rows.
    async fn gc_unlink_unreferenced(&self, before: i64) -> Result<u64>;

    /// Removes the records of blobs no repository links any more that were recorded before
    /// `before`; returns them (digest, size). Their bytes are the caller's to delete.
    async fn gc_remove_unlinked_blobs(&self, before: i64) -> Result<Vec<(String, i64)>>;

    /// Which of `digests` have a blob record (one query for a batch of GC's candidates).
    async fn blobs_recorded(&self, digests: &[String]) -> Result<Vec<String>>;

    /// Forgets the data keys of blobs whose bytes GC deleted (under their commit locks).
    async fn delete_blob_keys(&self, digests: &[String]) -> Result<()>;

    /// Digests with recorded data keys but no blob record: commits interrupted between the
    /// two, or blobs whose keys outlived their bytes. GC removes them under the commit lock.
    async fn unrecorded_blob_keys(&self) -> Result<Vec<String>>;

    /// Upload sessions started before `before`.
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>>;

    /// Holds, until the guard is dropped, the lock on publishing and deleting the bytes of
    /// `digests` that an upload's commit and GC's deletion take — across every node sharing
    /// this store (on a store only one node opens, the caller's own lock suffices and this one
    /// holds nothing). Taken in digest order, so two holders of several cannot deadlock.
    async fn lock_blob_bytes(&self, digests: &[String]) -> Result<BlobBytesLock>;
}

/// Accounts, their principals and access keys, and the registry secrets.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Deletes a user with its keys, memberships, inline policies and attachments.
    async fn delete_principal(&self, principal_id: &str) -> Result<bool>;

    async fn ensure_account(&self, account_id: &str) -> Result<()>;

    /// The account created first (the default registry), if any.
    async fn first_account(&self) -> Result<Option<String>>;

    /// Every account, in id order.
    async fn accounts(&self) -> Result<Vec<String>>;

    /// The account created first; when there is none, `candidate` is created as it. Returns the
    /// account and whether this call created it.
    /// Concurrency: nodes starting together on an empty store agree on one account: the
    /// emptiness test and the insert are serialized (a table lock on a server database).
    async fn first_account_or_create(&self, candidate: &str) -> Result<(String, bool)>;

    /// Creates a principal; `AlreadyExists` if the account has one of that name.
    async fn create_principal(&self, principal: &Principal) -> Result<()>;

    async fn principal_by_name(&self, account_id: &str, name: &str) -> Result<Option<Principal>>;

    async fn list_principals(&self, account_id: &str) -> Result<Vec<Principal>>;

    /// Stores an access key; `AlreadyExists` if the id is taken.
    async fn create_access_key(&self, key: &AccessKey) -> Result<()>;

    /// Stores `key` only if its principal has no key yet (an account root's first key);
    /// whether it was stored.
    /// Concurrency: the no-key test and the insert are serialized per principal (its row locked
    /// on a server database), so of nodes starting together exactly one stores a first key.
    async fn create_first_access_key(&self, key: &AccessKey) -> Result<bool>;

    /// An access key with the principal it belongs to.
    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Principal)>>;

    async fn list_access_keys(&self, principal_id: &str) -> Result<Vec<AccessKey>>;

    /// Makes a key active or inactive. With `keep_another_active`, deactivating an active key
    /// is refused (`LastActiveKey`) unless its principal has another active key.
    /// Concurrency: the other-key test and the change are one statement (one transaction on a
    /// server database, locking the principal's key rows), so two deactivations racing for the
    /// last two keys cannot both succeed.
    async fn update_access_key_status(
        &self,
        access_key_id: &str,
        active: bool,
        keep_another_active: bool,
    ) -> Result<KeyChange>;

    /// Deletes a key, with the same `keep_another_active` guard for an active key, and records
    /// its id as deleted (so a later start never brings it back).
    async fn delete_access_key(&self, access_key_id: &str, keep_another_active: bool) -> Result<KeyChange>;

    /// Whether a key of this id was deleted.
    async fn access_key_deleted(&self, access_key_id: &str) -> Result<bool>;

    /// Records a use of the key (a no-op for a key that no longer exists).
    async fn record_access_key_use(&self, access_key_id: &str, used: &KeyUse) -> Result<()>;

    /// The named registry secret, stored first as `initial` if there is none yet. Every node
    /// ends up with the same value whichever stored it.
    /// Concurrency: insert-if-absent, then read what is stored.
    async fn registry_secret(&self, name: &str, initial: &[u8]) -> Result<Vec<u8>>;
}

/// Every secret the store keeps sealed, seen as values to re-seal: the master keyring's
/// rotation and the upgrade of a data directory that held them in plain text.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Up to `limit` stored values of `kind` with an id above `after`, in id order.
    async fn stored_secrets(&self, kind: SealedKind, after: &str, limit: usize) -> Result<Vec<StoredSecret>>;

    /// Replaces a stored value if it is still `expected`; whether it was.
    /// Concurrency: compare-and-set in one statement, so a value changed meanwhile (a deleted
    /// key, a concurrent rotation) is left alone for the next pass.
    async fn replace_stored_secret(&self, kind: SealedKind, id: &str, expected: &[u8], new: &[u8]) -> Result<bool>;

    /// The master-key version a rotation in progress re-seals to, if one is.
    async fn rotation_target(&self) -> Result<Option<u32>>;

    async fn set_rotation_target(&self, version: Option<u32>) -> Result<()>;

    /// Overwrites the space deleted and replaced values occupied (free pages, journal), so no
    /// old bytes of a secret stay readable in the store's files.
    async fn erase_freed_space(&self) -> Result<()>;
}

/// Secrets Manager's secrets: metadata and versions whose values arrive and leave sealed (the
/// registry seals and opens them).
#[async_trait]
pub trait ManagedSecretStore: Send + Sync + 'static {
    /// Creates a secret, with its first version if one is given. A secret of the same name
    /// whose scheduled deletion has passed is removed first.
    /// Concurrency: the `(account, name)` uniqueness decides between racing creators.
    async fn create_managed_secret(
        &self,
        secret: &ManagedSecret,
        first: Option<&NewSecretVersion>,
    ) -> Result<SecretCreated>;

    async fn managed_secret_by_name(&self, account_id: &str, name: &str) -> Result<Option<ManagedSecret>>;

    async fn managed_secret_by_arn(&self, arn: &str) -> Result<Option<ManagedSecret>>;

    /// Every secret of an account, in name order.
    async fn managed_secrets(&self, account_id: &str) -> Result<Vec<ManagedSecret>>;

    /// The version with this id and/or staging label (both optional; none matches the first).
    async fn secret_version(
        &self,
        arn: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<SecretVersion>>;

    /// Adds a version and moves its staging labels to it (`restage`); versions left without
    /// labels are removed.
    /// Concurrency: the secret's row is locked, so racing puts apply one after the other and
    /// exactly one version holds `AWSCURRENT` afterwards.
    async fn put_secret_version(&self, arn: &str, version: &NewSecretVersion) -> Result<VersionPut>;

    /// Sets the description and/or KMS key id given; whether the secret exists.
    async fn update_managed_secret(
        &self,
        arn: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<bool>;

    /// Schedules (`Some(when)`) or cancels (`None`) a deletion; whether the secret exists.
    async fn set_secret_deletion(&self, arn: &str, deletion_date: Option<i64>) -> Result<bool>;

    /// Deletes a secret and its versions now; whether it existed.
    async fn delete_managed_secret(&self, arn: &str) -> Result<bool>;

    /// Records a read of the secret's value at `at` (ms; kept only if later than the last).
    async fn record_secret_access(&self, arn: &str, at: i64) -> Result<()>;
}

/// Leases: work that must run on one node at a time (scheduled GC and lifecycle runs).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease `name` for `holder` until `now + ttl_ms` if it is free, expired, or
    /// already `holder`'s (a renewal); whether `holder` holds it now.
    /// Concurrency: one conditional upsert; of nodes taking a free lease at once, one gets it.
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool>;

    /// Gives the lease up, if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Announcements between the nodes sharing a store, so each drops what it cached of data
/// another changed (policies, settings) at once instead of when its cache expires.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Tells every node sharing this store, this one included, that what it cached of `topic`
    /// changed (PostgreSQL: `NOTIFY`). A store only one node opens announces nothing.
    async fn announce_change(&self, topic: &str) -> Result<()>;

    /// The topics announced from now on, as they arrive; [`ANY_CHANGE`] when announcements
    /// may have been missed (the connection was lost), so that everything cached is dropped.
    /// `None` for a store only one node opens.
    async fn watch_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>>;
}

/// The topic that stands for every topic (see [`ChangeFeed::watch_changes`]).
pub const ANY_CHANGE: &str = "*";

/// IAM groups and identity policies (inline and managed, with their attachments).
#[async_trait]
pub trait IamPolicyStore: Send + Sync + 'static {
    async fn create_group(&self, group: &Group) -> Result<()>;

    async fn group_by_name(&self, account_id: &str, name: &str) -> Result<Option<Group>>;

    async fn list_groups(&self, account_id: &str) -> Result<Vec<Group>>;

    /// Deletes a group with its memberships, inline policies and attachments.
    async fn delete_group(&self, group_id: &str) -> Result<bool>;

    async fn add_group_member(&self, group_id: &str, principal_id: &str) -> Result<()>;

    async fn remove_group_member(&self, group_id: &str, principal_id: &str) -> Result<bool>;

    async fn groups_of(&self, principal_id: &str) -> Result<Vec<Group>>;

    async fn group_members(&self, group_id: &str) -> Result<Vec<Principal>>;

    /// Creates or replaces an inline policy of a user or group (`owner_id`).
    async fn put_inline_policy(&self, owner_id: &str, name: &str, document: &str) -> Result<()>;

    async fn inline_policy(&self, owner_id: &str, name: &str) -> Result<Option<String>>;

    async fn list_inline_policies(&self, owner_id: &str) -> Result<Vec<String>>;

    async fn delete_inline_policy(&self, owner_id: &str, name: &str) -> Result<bool>;

    /// `AlreadyExists` if the account has a policy of that name.
    async fn create_managed_policy(&self, policy: &ManagedPolicy) -> Result<()>;

    async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>>;

    async fn list_managed_policies(&self, account_id: &str) -> Result<Vec<ManagedPolicy>>;

    /// Replaces a managed policy's document.
    async fn update_managed_policy(&self, arn: &str, document: &str) -> Result<bool>;

    async fn delete_managed_policy(&self, arn: &str) -> Result<bool>;

    async fn attach_policy(&self, owner_id: &str, arn: &str) -> Result<()>;

    async fn detach_policy(&self, owner_id: &str, arn: &str) -> Result<bool>;

    async fn attached_policies(&self, owner_id: &str) -> Result<Vec<String>>;

    /// How many users and groups a managed policy is attached to.
    async fn policy_attachment_count(&self, arn: &str) -> Result<u64>;

    /// Every identity policy that applies to a principal: its own inline and attached policies
    /// and those of its groups.
    async fn identity_policies(&self, principal_id: &str) -> Result<Vec<IdentityPolicySource>>;
}

/// Image signing: the signing profiles of each account and each image's signing status.
#[async_trait]
pub trait SigningStore: Send + Sync + 'static {
    /// Stores a new profile; `AlreadyExists` if its account has one of that name.
    async fn create_signing_profile(&self, profile: &SigningProfile) -> Result<()>;

    async fn signing_profile(&self, arn: &str) -> Result<Option<SigningProfile>>;

    /// An account's profiles in name order.
    async fn signing_profiles(&self, account_id: &str) -> Result<Vec<SigningProfile>>;

    /// Marks a profile revoked (once: a second revocation keeps the first time); `NotFound` if
    /// there is no such profile. Returns the profile as it now is.
    async fn revoke_signing_profile(&self, arn: &str, at: i64) -> Result<SigningProfile>;

    /// Records an image's signing status for one profile (replacing an earlier one); a no-op
    /// when the image is gone.
    async fn put_image_signing(&self, repository: &str, digest: &str, signing: &ImageSigning) -> Result<()>;

    /// An image's signing statuses in profile ARN order.
    async fn image_signings(&self, repository: &str, digest: &str) -> Result<Vec<ImageSigning>>;

    /// Forgets an image's signing status by one profile (its signatures were removed).
    async fn delete_image_signing(&self, repository: &str, digest: &str, profile_arn: &str) -> Result<()>;
}

/// ECR Public: each account's public registry alias.
#[async_trait]
pub trait PublicRegistryStore: Send + Sync + 'static {
    async fn registry_alias(&self, account_id: &str) -> Result<Option<String>>;

    /// Gives `account_id` the alias `alias` (replacing its own); `AlreadyExists` if another
    /// account holds it. Concurrency: the alias is a unique key; of accounts racing for one,
    /// one gets it.
    async fn set_registry_alias(&self, account_id: &str, alias: &str, at: i64) -> Result<()>;

    /// The account's alias; `candidate` stored as it first if it has none (`AlreadyExists` if
    /// another account holds `candidate`: the caller picks another).
    async fn ensure_registry_alias(&self, account_id: &str, candidate: &str, at: i64) -> Result<String>;

    /// The account holding `alias`, if any.
    async fn account_of_registry_alias(&self, alias: &str) -> Result<Option<String>>;

    /// Every account's (account, alias), in alias order.
    async fn registry_aliases(&self) -> Result<Vec<(String, String)>>;

    /// The bytes `source` pulled anonymously in `month` (`YYYY-MM`).
    async fn anonymous_pull_bytes(&self, source: &str, month: &str) -> Result<u64>;

    /// Adds `bytes` to what `source` pulled anonymously in `month`. Concurrency: one atomic
    /// increment, so concurrent additions from any node all count.
    async fn add_anonymous_pull_bytes(&self, source: &str, month: &str, bytes: u64) -> Result<()>;
}

/// The web console's sessions and failed sign-ins.
#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    async fn create_console_session(&self, session: &ConsoleSession) -> Result<()>;

    async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSession>>;

    /// Ends a session (sign-out); whether there was one.
    async fn delete_console_session(&self, id_hash: &str) -> Result<bool>;

    /// Ends every session signed in with `access_key_id` (the key was deactivated or deleted).
    async fn delete_console_sessions(&self, access_key_id: &str) -> Result<u64>;

    async fn delete_expired_console_sessions(&self, now: i64) -> Result<u64>;

    /// Records one failed sign-in against each subject, at `at`, and forgets failures before
    /// `forget_before`. Concurrency: each failure is its own row, so racing failures all count.
    async fn record_console_sign_in_failure(&self, subjects: &[String], at: i64, forget_before: i64) -> Result<()>;

    /// When `subject`'s failed sign-ins since `since` happened, oldest first.
    async fn console_sign_in_failures(&self, subject: &str, since: i64) -> Result<Vec<i64>>;
}

/// Pull-through cache rules, per account.
#[async_trait]
pub trait PullThroughStore: Send + Sync + 'static {
    /// Creates a rule unless its account has one with that prefix, or `limit` rules already.
    /// Concurrency: the count and the insert are one transaction holding the account's rule
    /// lock, so of racing creates in one account no more than `limit` rules ever exist.
    async fn create_pull_through_rule(&self, rule: &PullThroughRule, limit: usize) -> Result<CappedInsert>;

    /// Replaces what may change of a rule (its credential, its refresh interval and
    /// `updated_at`); `NotFound` if the account has no rule with that prefix.
    async fn update_pull_through_rule(&self, rule: &PullThroughRule) -> Result<()>;

    /// Deletes a rule, returning it; `NotFound` if there is none.
    async fn delete_pull_through_rule(&self, account_id: &str, prefix: &str) -> Result<PullThroughRule>;

    /// An account's rules in prefix order.
    async fn pull_through_rules(&self, account_id: &str) -> Result<Vec<PullThroughRule>>;

    /// Claims the check of a cache repository's tag against its upstream: records `now` as
    /// its last check if it has none, or if its last was at or before `due`. True if claimed
    /// (false also when there is no such repository).
    /// Concurrency: one conditional upsert, so of nodes racing for one due check one claims it.
    async fn claim_tag_check(&self, repository: &str, tag: &str, now: i64, due: i64) -> Result<bool>;
}

/// KMS keys: their records, sealed material versions, aliases and grants. The registry seals
/// and opens the material; nothing here sees a key in clear.
#[async_trait]
pub trait KmsStore: Send + Sync + 'static {
    /// Stores a new key with its first material, in one transaction.
    async fn create_kms_key(&self, key: &KmsKey, material: &KmsKeyMaterial) -> Result<()>;

    async fn kms_key(&self, key_id: &str) -> Result<Option<KmsKey>>;

    /// Up to `limit` keys of an account with an id above `after`, in id order.
    async fn kms_keys(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<KmsKey>>;

    /// Replaces what may change of a key (state, deletion schedule, policy, rotation) if it is
    /// still as `expected` (what the caller read; a rotation changes it too): whether it was
    /// replaced. Concurrency: a compare-and-set, so racing changes never undo each other.
    async fn update_kms_key(&self, key: &KmsKey, expected: &KmsKey) -> Result<bool>;

    /// Adds a material version and makes it the key's current one, in one transaction;
    /// whether the key exists.
    async fn rotate_kms_key(&self, material: &KmsKeyMaterial, next_rotation_at: Option<i64>) -> Result<bool>;

    /// A key's material versions, oldest first.
    async fn kms_key_materials(&self, key_id: &str) -> Result<Vec<KmsKeyMaterial>>;

    /// Removes a key with its materials, aliases and grants (its deletion date has passed).
    async fn delete_kms_key(&self, key_id: &str) -> Result<bool>;

    /// Creates an alias unless the account has one of that name; whether it was created.
    /// Concurrency: the primary key decides between racing creators.
    async fn create_kms_alias(&self, alias: &KmsAlias) -> Result<bool>;

    async fn kms_alias(&self, account_id: &str, alias_name: &str) -> Result<Option<KmsAlias>>;

    /// An account's aliases in name order.
    async fn kms_aliases(&self, account_id: &str) -> Result<Vec<KmsAlias>>;

    async fn delete_kms_alias(&self, account_id: &str, alias_name: &str) -> Result<bool>;

    async fn create_kms_grant(&self, grant: &KmsGrant) -> Result<()>;

    /// A key's grants in id order.
    async fn kms_grants(&self, key_id: &str) -> Result<Vec<KmsGrant>>;

    async fn delete_kms_grant(&self, grant_id: &str) -> Result<bool>;
}

/// Every role, for the composition root and the registry that serves them all.
#[async_trait]
pub trait MetaStore:
    RepositoryStore
    + ContentStore
    + ScanStore
    + ReplicationStore
    + LifecycleStore
    + GcStore
    + AccountStore
    + IamPolicyStore
    + SecretStore
    + ManagedSecretStore
    + PullThroughStore
    + SigningStore
    + PublicRegistryStore
    + ConsoleStore
    + KmsStore
    + LeaseStore
    + ChangeFeed
{
    async fn close(&self);
}
