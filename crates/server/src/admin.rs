//! `berth admin`: identities and keys of an account, written straight to the metadata store,
//! and the operations the running server carries out itself (over its admin socket).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_meta::MetaStore;
use clap::Subcommand;

use crate::admin_socket;
use crate::config::Config;
use crate::stores::{master_key_path, master_keys, open_stores};

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Create another account with its root user and root access key (the secret is printed
    /// once). Its principals authenticate to this Berth; repository and registry policies
    /// decide what they may do with this registry's repositories (cross-account access).
    /// Manage its users with `--account-id ACCOUNT`.
    CreateAccount {
        account_id: String,
    },
    /// Set a repository's pull policy: pulls of images whose scan found vulnerabilities at or
    /// above SEVERITY (CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL) are refused; NONE turns it
    /// off, DEFAULT falls back to the configured default (scan_pull_block_severity). With
    /// `--account-id`, a repository of that account.
    SetPullPolicy {
        repository: String,
        severity: String,
    },
    /// Set how long a pull-through cache rule's cached tags are served before they are checked
    /// upstream again, in seconds (1 to a year), or DEFAULT for ECR's 24 hours. Other nodes
    /// see it within two seconds. With `--account-id`, a rule of that account.
    SetPullThroughRefresh {
        ecr_repository_prefix: String,
        seconds: String,
    },
    /// Check a cached tag against its upstream now, whatever its refresh interval, and fill it
    /// anew if it moved (the running server does it; answers once the image is stored).
    RefreshCachedImage {
        repository: String,
        tag: String,
    },
    /// Create a user. A user may do nothing until a policy allows it (identity policies, or a
    /// repository policy naming it).
    CreateUser {
        name: String,
    },
    /// Create or replace a user's inline policy from a JSON file (`-` for standard input).
    PutUserPolicy {
        user: String,
        policy_name: String,
        file: PathBuf,
    },
    DeleteUserPolicy {
        user: String,
        policy_name: String,
    },
    /// Attach a managed policy (an ARN: the account's own, or
    /// `arn:aws:iam::aws:policy/AmazonEC2ContainerRegistry{ReadOnly,PowerUser,FullAccess}`).
    AttachUserPolicy {
        user: String,
        policy_arn: String,
    },
    DetachUserPolicy {
        user: String,
        policy_arn: String,
    },
    /// Create a customer-managed policy from a JSON file.
    CreatePolicy {
        policy_name: String,
        file: PathBuf,
    },
    CreateGroup {
        name: String,
    },
    AddUserToGroup {
        group: String,
        user: String,
    },
    PutGroupPolicy {
        group: String,
        policy_name: String,
        file: PathBuf,
    },
    AttachGroupPolicy {
        group: String,
        policy_arn: String,
    },
    /// A user's inline policy names, attached policies and groups.
    ShowUser {
        user: String,
    },
    ListUsers,
    /// Create an access key for a user (or `root`); the secret is printed once.
    CreateAccessKey {
        user: String,
    },
    /// List a user's access keys (never their secrets).
    ListAccessKeys {
        user: String,
    },
    /// Activate or deactivate an access key of a user (or `root`). The account root's last
    /// active key is kept unless `--force`.
    UpdateAccessKey {
        user: String,
        access_key_id: String,
        /// Active or Inactive.
        #[arg(long)]
        status: String,
        #[arg(long)]
        force: bool,
    },
    /// Delete an access key of a user (or `root`) for good. The account root's last active key
    /// is kept unless `--force`.
    DeleteAccessKey {
        user: String,
        access_key_id: String,
        #[arg(long)]
        force: bool,
    },
    /// When, for which service and in which region an access key was last used.
    GetAccessKeyLastUsed {
        access_key_id: String,
    },
    /// Re-seal every stored secret under a new master key version, done by the running server,
    /// online and resumably. With the embedded keyring (`<data-dir>/master.key`) a new version
    /// is added to it first; with `--master-key-file`, add the version to every node's file and
    /// reload them (SIGHUP), then name it with `--to`.
    RotateMasterKey {
        #[arg(long)]
        to: Option<u32>,
        /// Wait until every secret is sealed under the new version.
        #[arg(long)]
        wait: bool,
    },
    /// How many stored secrets each master key version seals, and which versions seal nothing
    /// any more (they may be removed from the keyring file).
    MasterKeyStatus,
    /// Add (or update) the replication peer of another region: the deployment replication
    /// rules naming that region send to. Run it on one side with `--endpoint`; it prints a peer
    /// token holding the credential both sides share, to give to the other side's
    /// `add-replication-peer --token` (which prints that side's token: give it back the same
    /// way so that each side knows the accounts the other holds). The token is a secret.
    ///
    /// Here `--region` names the peer's region (required); this deployment's own comes from
    /// `BERTH_REGION` or the config file.
    AddReplicationPeer {
        /// The peer's region: given as `--region` (see above).
        #[arg(skip)]
        region: String,
        /// Where the peer is reached (`https://host[:port]`); leave it out on a side that only
        /// accepts replicas.
        #[arg(long)]
        endpoint: Option<String>,
        /// PEM certificates to trust for the endpoint (a private CA).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The other side's peer token.
        #[arg(long)]
        token: Option<String>,
        /// The accounts the peer holds (comma-separated), instead of those its token names.
        #[arg(long, value_delimiter = ',')]
        accounts: Option<Vec<String>>,
    },
    /// The replication peers, without their secrets.
    ListReplicationPeers,
    /// Create a signing profile NAME (`[a-zA-Z0-9_]{2,64}`): an ECDSA P-256 key pair of the
    /// account, its private key sealed under the master key, named by an AWS Signer-form ARN
    /// for `PutSigningConfiguration` rules. A pusher needs `signer:SignPayload` on it.
    CreateSigningProfile {
        name: String,
    },
    /// The account's signing profiles (never their private keys).
    ListSigningProfiles,
    /// A signing profile's public key as PEM (to verify its signatures with skopeo, podman or
    /// cosign), printed in the JSON or written to `--output`.
    GetSigningProfilePublicKey {
        name: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Refuse pulls of REPOSITORY's images that are not signed (in the tag scheme) by one of
    /// the given signing profiles or public keys — beyond ECR. Signatures, attestations,
    /// referrers and children of a signed index stay pullable. `--off` removes it.
    SetPullVerification {
        repository: String,
        /// A signing profile of the account, by name (repeatable).
        #[arg(long = "trust-profile")]
        trust_profiles: Vec<String>,
        /// A PEM public key file (ECDSA P-256, e.g. cosign's or skopeo's; repeatable).
        #[arg(long = "trust-key-file")]
        trust_key_files: Vec<PathBuf>,
        #[arg(long, conflicts_with_all = ["trust_profiles", "trust_key_files"])]
        off: bool,
    },
    /// Set the account's public registry alias (ECR Public: pull URIs are
    /// `<public host>/<alias>/<repository>`); refused if another account holds it. The API has
    /// no operation for it.
    SetRegistryAlias {
        alias: String,
    },
    /// Revoke a signing profile: it signs nothing from now on (pushes it would sign get a
    /// `FAILED` status with `PROFILE_REVOKED`); its signatures stay verifiable.
    RevokeSigningProfile {
        name: String,
    },
    /// Write the account's users, groups, policies and access keys to FILE, for
    /// `import-identities` on the deployment of another region, so that the same keys work
    /// there. Secrets are sealed under a transport key printed here: carry it apart from the file.
    ExportIdentities {
        #[arg(long)]
        output: PathBuf,
    },
    /// Make this deployment hold the identities of an `export-identities` file (adds and
    /// updates, never deletes; a key deleted here is not brought back).
    ImportIdentities {
        #[arg(long)]
        input: PathBuf,
        /// The transport key `export-identities` printed.
        #[arg(long)]
        transport_key: String,
    },
    /// Remove the replication peer of the region `--region` names (this deployment's own comes
    /// from `BERTH_REGION` or the config file): its credential stops working here at once.
    RemoveReplicationPeer {
        #[arg(skip)]
        region: String,
    },
}

/// `--region` is the deployment's own region, except for the peer commands, where it names the
/// peer's (as `berth admin add-replication-peer --region eu-west-1` reads): taken out of the
/// global option into the command. Returns an error if such a command lacks it.
pub(crate) fn take_peer_region(command: &mut AdminCommand, region: &mut Option<String>) -> anyhow::Result<()> {
    if let AdminCommand::AddReplicationPeer { region: peer, .. }
    | AdminCommand::RemoveReplicationPeer { region: peer } = command
    {
        *peer = region.take().ok_or_else(|| anyhow::anyhow!("give the peer's region with --region"))?;
    }
    Ok(())
}

/// A registry on the stores, for the admin commands its services carry out.
fn registry(
    config: &Config,
    meta: &Arc<dyn MetaStore>,
    blobs: &Arc<dyn berth_store::BlobStore>,
    keys: &Arc<berth_registry::secrets::MasterKeys>,
) -> berth_registry::Registry {
    berth_registry::Registry::new(meta.clone(), blobs.clone(), String::new(), keys.clone()).with_region(&config.region)
}

/// A replication peer as the admin commands show it (never its secret).
fn peer_json(p: &berth_meta::ReplicationPeer) -> serde_json::Value {
    serde_json::json!({
        "Region": p.region,
        "Endpoint": p.endpoint,
        "TrustsExtraCertificates": p.ca_pem.is_some(),
        "AccessKeyId": p.access_key_id,
        "Accounts": p.accounts,
        "CreatedAt": berth_iam::format_iso8601(p.created_at / 1000),
    })
}

/// A signing profile as the admin commands show it (never its private key).
fn signing_profile_json(p: &berth_meta::SigningProfile) -> serde_json::Value {
    serde_json::json!({
        "ProfileName": p.name,
        "ProfileArn": p.arn,
        "Status": if p.revoked_at.is_some() { "Revoked" } else { "Active" },
        "CreatedAt": berth_iam::format_iso8601(p.created_at / 1000),
        "RevokedAt": p.revoked_at.map(|t| berth_iam::format_iso8601(t / 1000)),
        "PublicKeyPem": p.public_key_pem,
    })
}

/// The account the admin commands act on: the configured one, or the one created first.
pub(crate) async fn admin_account(config: &Config, meta: &Arc<dyn MetaStore>) -> anyhow::Result<String> {
    if let Some(a) = &config.account_id {
        return Ok(a.clone());
    }
    meta.first_account().await?.ok_or_else(|| anyhow::anyhow!("no account yet: start `berth serve` once first"))
}

/// The admin commands the running server carries out (over its admin socket).
pub(crate) async fn admin_of_server(
    config: &Config,
    command: &AdminCommand,
) -> anyhow::Result<Option<serde_json::Value>> {
    use serde_json::json;
    let out = match command {
        AdminCommand::RotateMasterKey { to, wait } => {
            let target = match (to, &config.master_key_file) {
                (Some(v), _) => *v,
                (None, None) => {
                    // Ask first, so that a server that is not running leaves the file alone.
                    admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?;
                    let (_, v) = berth_keyring::append_new_version(&master_key_path(config))
                        .map_err(|e| anyhow::anyhow!("master keyring: {e}"))?;
                    v
                }
                (None, Some(file)) => {
                    berth_keyring::load(file).map_err(|e| anyhow::anyhow!("master keyring: {e}"))?.current_version()
                }
            };
            let mut report =
                admin_socket::request(&config.data_dir, json!({ "op": "rotate-master-key", "to": target })).await?;
            while *wait && (report["running"] == json!(true) || report["rotationTarget"] == json!(target)) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                report = admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?;
            }
            report
        }
        AdminCommand::MasterKeyStatus => {
            admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?
        }
        AdminCommand::RefreshCachedImage { repository, tag } => {
            let meta = crate::stores::open_meta(config).await?;
            let account = admin_account(config, &meta).await?;
            let default = meta.first_account().await?.unwrap_or_else(|| account.clone());
            let key = berth_registry::repositories::repository_key(&default, &account, repository);
            let request = json!({ "op": "refresh-cached-image", "repository": key, "tag": tag });
            let mut out = admin_socket::request(&config.data_dir, request).await?;
            out["repositoryName"] = json!(repository);
            out["imageTag"] = json!(tag);
            out
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

pub(crate) async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    use berth_meta::PrincipalKind;
    use berth_registry::iam::{IamAdmin, IamError, KeyStatus, Owner};
    use berth_registry::identity::principal_arn;
    if let Some(out) = admin_of_server(&config, &command).await? {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let keys = master_keys(&config)?;
    let (meta, blobs) = open_stores(&config).await?;
    let account = admin_account(&config, &meta).await?;
    let user = |name: &str| {
        let (meta, account, name) = (meta.clone(), account.clone(), name.to_string());
        async move {
            meta.principal_by_name(&account, &name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {name:?} in account {account}"))
        }
    };
    let iam = IamAdmin::new(meta.clone(), meta.clone(), keys.clone(), account.clone());
    let read = |file: &std::path::Path| -> anyhow::Result<String> {
        if file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            Ok(s)
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
        }
    };
    let iam_err = |e: IamError| anyhow::anyhow!("{}: {e}", e.code());
    let out = match command {
        AdminCommand::CreateAccount { account_id } => {
            let created = berth_registry::identity::ensure_account_root(meta.as_ref(), &keys, &account_id, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match created {
                Some(key) => serde_json::json!({
                    "Account": account_id,
                    "Arn": format!("arn:aws:iam::{account_id}:root"),
                    "AccessKey": { "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key },
                }),
                None => anyhow::bail!("account {account_id} already exists with a root key"),
            }
        }
        AdminCommand::SetPullPolicy { repository, severity } => {
            // `--account-id` names the account whose repository it is.
            let default = meta.first_account().await?.unwrap_or_else(|| account.clone());
            let key = berth_registry::repositories::repository_key(&default, &account, &repository);
            let mut repo =
                meta.repository(&key).await?.ok_or_else(|| anyhow::anyhow!("no repository {repository:?}"))?;
            repo.settings.pull_block_severity = if severity.eq_ignore_ascii_case("DEFAULT") {
                None
            } else {
                Some(berth_meta::PullBlock::parse(&severity).map_err(|e| anyhow::anyhow!("{e}"))?)
            };
            let repo = meta.update_repository_settings(&key, &repo.settings).await?;
            let shown = repo.settings.pull_block_severity.map(berth_meta::PullBlock::as_str);
            serde_json::json!({ "repositoryName": repository, "berthPullBlockSeverity": shown })
        }
        AdminCommand::SetPullThroughRefresh { ecr_repository_prefix, seconds } => {
            let seconds = if seconds.eq_ignore_ascii_case("DEFAULT") {
                None
            } else {
                Some(seconds.parse::<i64>().map_err(|_| anyhow::anyhow!("{seconds:?}: give seconds, or DEFAULT"))?)
            };
            let rule = registry(&config, &meta, &blobs, &keys)
                .set_pull_through_refresh(&account, &ecr_repository_prefix, seconds)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let effective = rule.refresh_seconds.unwrap_or(berth_registry::pull_through::DEFAULT_REFRESH_SECONDS);
            serde_json::json!({ "ecrRepositoryPrefix": rule.prefix, "refreshIntervalSeconds": effective })
        }
        AdminCommand::AddReplicationPeer { region, endpoint, ca_file, token, accounts } => {
            let ca_pem = match &ca_file {
                Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?),
                None => None,
            };
            let setup = berth_registry::replication::peers::PeerSetup { region, endpoint, ca_pem, token, accounts };
            let (peer, token) = registry(&config, &meta, &blobs, &keys)
                .add_replication_peer(&setup)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            serde_json::json!({
                "Peer": peer_json(&peer),
                "PeerToken": token,
                "Next": format!(
                    "on the {} deployment: berth admin add-replication-peer --region {} --token <PeerToken> \
                     [--endpoint <this deployment's URL>, to replicate back]",
                    peer.region, config.region
                ),
            })
        }
        AdminCommand::CreateSigningProfile { name } => {
            let profile = registry(&config, &meta, &blobs, &keys)
                .create_signing_profile(&account, &config.region, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            signing_profile_json(&profile)
        }
        AdminCommand::ListSigningProfiles => {
            let profiles = registry(&config, &meta, &blobs, &keys)
                .signing_profiles(&account)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            serde_json::json!({ "Profiles": profiles.iter().map(signing_profile_json).collect::<Vec<_>>() })
        }
        AdminCommand::GetSigningProfilePublicKey { name, output } => {
            let profile = registry(&config, &meta, &blobs, &keys)
                .signing_profile_named(&account, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(path) = &output {
                std::fs::write(path, &profile.public_key_pem).with_context(|| format!("writing {}", path.display()))?;
            }
            serde_json::json!({ "ProfileArn": profile.arn, "PublicKeyPem": profile.public_key_pem })
        }
        AdminCommand::SetPullVerification { repository, trust_profiles, trust_key_files, off } => {
            let registry = registry(&config, &meta, &blobs, &keys);
            let default = meta.first_account().await?.unwrap_or_else(|| account.clone());
            let key = berth_registry::repositories::repository_key(&default, &account, &repository);
            let config = if off {
                None
            } else {
                let mut arns = Vec::new();
                for name in &trust_profiles {
                    arns.push(
                        registry.signing_profile_named(&account, name).await.map_err(|e| anyhow::anyhow!("{e}"))?.arn,
                    );
                }
                let mut pems = Vec::new();
                for file in &trust_key_files {
                    pems.push(std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?);
                }
                Some(berth_registry::signing::verify::PullVerification {
                    trusted_signing_profile_arns: arns,
                    trusted_public_keys: pems,
                })
            };
            registry
                .set_pull_verification(&account, &key, config.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            serde_json::json!({ "repositoryName": repository, "pullVerification": config })
        }
        AdminCommand::SetRegistryAlias { alias } => {
            let r = registry(&config, &meta, &blobs, &keys)
                .set_registry_alias(&account, &alias)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            serde_json::json!({ "registryId": r.account, "alias": r.alias })
        }
        AdminCommand::RevokeSigningProfile { name } => {
            let profile = registry(&config, &meta, &blobs, &keys)
                .revoke_signing_profile(&account, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            signing_profile_json(&profile)
        }
        AdminCommand::ListReplicationPeers => {
            let peers = registry(&config, &meta, &blobs, &keys)
                .replication_peers()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            serde_json::json!({ "Peers": peers.iter().map(peer_json).collect::<Vec<_>>() })
        }
        AdminCommand::RemoveReplicationPeer { region } => {
            let removed = registry(&config, &meta, &blobs, &keys)
                .remove_replication_peer(&region)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !removed {
                anyhow::bail!("there is no replication peer of {region}");
            }
            serde_json::json!({})
        }
        AdminCommand::ExportIdentities { output } => {
            let transport = berth_registry::iam_transfer::TransportKey::generate();
            let doc = iam.export_identities(&transport).await.map_err(iam_err)?;
            let text = serde_json::to_vec_pretty(&doc)?;
            crate::stores::write_private_file(&output, &text)?;
            serde_json::json!({
                "File": output,
                "Account": doc.account,
                "Users": doc.users.len(),
                "Groups": doc.groups.len(),
                "Policies": doc.policies.len(),
                "AccessKeys": doc.access_keys.len(),
                "TransportKey": transport.to_text(),
            })
        }
        AdminCommand::ImportIdentities { input, transport_key } => {
            let doc: berth_registry::iam_transfer::IdentitiesDocument = serde_json::from_str(&read(&input)?)
                .with_context(|| format!("{} is not an identities file", input.display()))?;
            let transport = berth_registry::iam_transfer::TransportKey::parse(&transport_key).map_err(iam_err)?;
            let report = iam.import_identities(&doc, &transport).await.map_err(iam_err)?;
            serde_json::to_value(report)?
        }
        AdminCommand::CreateUser { name } => {
            let p = iam.create_user(&name).await.map_err(iam_err)?;
            serde_json::json!({ "User": { "UserName": p.name, "UserId": p.id, "Arn": principal_arn(&p) } })
        }
        AdminCommand::PutUserPolicy { user, policy_name, file } => {
            iam.put_inline_policy(Owner::User(&user), &policy_name, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DeleteUserPolicy { user, policy_name } => {
            iam.delete_inline_policy(Owner::User(&user), &policy_name).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::AttachUserPolicy { user, policy_arn } => {
            iam.attach_policy(Owner::User(&user), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DetachUserPolicy { user, policy_arn } => {
            iam.detach_policy(Owner::User(&user), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::CreatePolicy { policy_name, file } => {
            let p = iam.create_policy(&policy_name, None, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({ "Policy": { "PolicyName": p.name, "PolicyId": p.id, "Arn": p.arn } })
        }
        AdminCommand::CreateGroup { name } => {
            let g = iam.create_group(&name).await.map_err(iam_err)?;
            serde_json::json!({ "Group": { "GroupName": g.name, "GroupId": g.id,
                "Arn": format!("arn:aws:iam::{account}:group/{}", g.name) } })
        }
        AdminCommand::AddUserToGroup { group, user } => {
            iam.add_user_to_group(&group, &user).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::PutGroupPolicy { group, policy_name, file } => {
            iam.put_inline_policy(Owner::Group(&group), &policy_name, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::AttachGroupPolicy { group, policy_arn } => {
            iam.attach_policy(Owner::Group(&group), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::ShowUser { user } => {
            let p = iam.user(&user).await.map_err(iam_err)?;
            let groups: Vec<String> = meta.groups_of(&p.id).await?.into_iter().map(|g| g.name).collect();
            serde_json::json!({
                "User": { "UserName": p.name, "UserId": p.id, "Arn": principal_arn(&p) },
                "PolicyNames": iam.list_inline_policies(Owner::User(&user)).await.map_err(iam_err)?,
                "AttachedPolicies": iam.attached_policies(Owner::User(&user)).await.map_err(iam_err)?,
                "Groups": groups,
            })
        }
        AdminCommand::ListUsers => {
            let users: Vec<_> = meta
                .list_principals(&account)
                .await?
                .iter()
                .filter(|p| p.kind == PrincipalKind::User)
                .map(|p| serde_json::json!({ "UserName": p.name, "UserId": p.id, "Arn": principal_arn(p) }))
                .collect();
            serde_json::json!({ "Users": users })
        }
        AdminCommand::CreateAccessKey { user: name } => {
            let p = user(&name).await?;
            let new = iam.create_access_key(&p).await.map_err(iam_err)?;
            serde_json::json!({ "AccessKey": {
                "UserName": p.name, "AccessKeyId": new.key.access_key_id, "SecretAccessKey": new.secret, "Status": "Active",
            }})
        }
        AdminCommand::UpdateAccessKey { user: name, access_key_id, status, force } => {
            let p = user(&name).await?;
            let status = KeyStatus::parse(&status).map_err(iam_err)?;
            iam.update_access_key(&p, &access_key_id, status, force).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DeleteAccessKey { user: name, access_key_id, force } => {
            let p = user(&name).await?;
            iam.delete_access_key(&p, &access_key_id, force).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::GetAccessKeyLastUsed { access_key_id } => {
            let (owner, key) = iam.access_key_last_used(&access_key_id).await.map_err(iam_err)?;
            let used = match &key.last_used {
                Some(u) => serde_json::json!({
                    "LastUsedDate": berth_iam::format_iso8601(u.at / 1000), "ServiceName": u.service, "Region": u.region,
                }),
                None => serde_json::json!({ "ServiceName": "N/A", "Region": "N/A" }),
            };
            serde_json::json!({ "UserName": owner.name, "AccessKeyLastUsed": used })
        }
        AdminCommand::RotateMasterKey { .. }
        | AdminCommand::MasterKeyStatus
        | AdminCommand::RefreshCachedImage { .. } => {
            unreachable!("carried out by the running server")
        }
        AdminCommand::ListAccessKeys { user: name } => {
            let p = user(&name).await?;
            let keys: Vec<_> = meta
                .list_access_keys(&p.id)
                .await?
                .iter()
                .map(|k| serde_json::json!({
                    "UserName": p.name, "AccessKeyId": k.access_key_id, "Status": if k.active { "Active" } else { "Inactive" },
                }))
                .collect();
            serde_json::json!({ "AccessKeyMetadata": keys })
        }
    };
    // Running nodes sharing the store drop the policies and keys they cached (a read
    // announces nothing of interest, and costs one notice).
    if let Err(e) = meta.announce_change(berth_registry::authz::AUTHZ_TOPIC).await {
        tracing::warn!(error = %e, "could not tell the running nodes about the change");
    }
    meta.close().await;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
