//! Managing identities and their policies: users, groups, inline and managed policies. Both
//! `berth admin` and (next) the IAM Query API call these, so the rules live in one place: names
//! as IAM allows them, every policy document validated before it is stored, errors named as IAM
//! names them.

use std::sync::Arc;

use berth_iam::{PolicyDocument, PolicyKind};
use berth_meta::{
    AccessKey, AccountStore, Group, IamPolicyStore, KeyChange, ManagedPolicy, MetaError, Principal, PrincipalKind,
    SealedKind, now_ms,
};

use crate::authz::aws_managed_policy;
use crate::secrets::MasterKeys;

/// IAM's errors, by the code the IAM API gives them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("{0}")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    DeleteConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    ValidationError(String),
    #[error("{0}")]
    ServiceFailure(String),
}

impl IamError {
    pub fn code(&self) -> &'static str {
        match self {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            IamError::InvalidInput(_) => "InvalidInput",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::ValidationError(_) => "ValidationError",
            IamError::ServiceFailure(_) => "ServiceFailure",
        }
    }
}

impl From<MetaError> for IamError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::StorageFull(detail) => {
                crate::storage_full(&detail);
                IamError::ServiceFailure("insufficient storage".into())
            }
            other => IamError::ServiceFailure(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, IamError>;

/// IAM's name grammar for users, groups and policies: 1 to `max` of letters, digits and `+=,.@_-`.
pub fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max || !name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(IamError::InvalidInput(format!(
            "The specified value for {kind} is invalid. It must be 1 to {max} characters of letters, digits and +=,.@_-"
        )));
    }
    Ok(())
}

/// Validates an identity policy document as IAM does before storing it.
pub fn check_identity_policy(document: &str) -> Result<()> {
    PolicyDocument::parse(document, PolicyKind::Identity)
        .map(|_| ())
        .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))
}

fn new_id(prefix: &str) -> String {
    // Same shape as user ids: a prefix and 17 upper-case alphanumerics.
    let user = berth_auth::keys::new_user_id();
    format!("{prefix}{}", &user[4..])
}

pub struct IamAdmin {
    accounts: Arc<dyn AccountStore>,
    policies: Arc<dyn IamPolicyStore>,
    keys: Arc<MasterKeys>,
    account_id: String,
}

/// A new access key with its secret, which is shown once and stored only sealed.
pub struct NewAccessKey {
    pub key: AccessKey,
    pub secret: String,
}

/// The status `UpdateAccessKey` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    /// IAM's `statusType`; `Expired` is a status IAM reports for other credentials, never one a
    /// caller may set.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "Active" => Ok(KeyStatus::Active),
            "Inactive" => Ok(KeyStatus::Inactive),
            other => Err(IamError::ValidationError(format!(
                "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: \
                 Member must satisfy enum value set: [Active, Inactive]"
            ))),
        }
    }
}

const ROOT_KEEPS_A_KEY: &str =
    "The account root must keep one active access key: create or activate another one first.";

impl IamAdmin {
    pub fn new(
        accounts: Arc<dyn AccountStore>,
        policies: Arc<dyn IamPolicyStore>,
        keys: Arc<MasterKeys>,
        account_id: String,
    ) -> Self {
        IamAdmin { accounts, policies, keys, account_id }
    }

    pub async fn user(&self, name: &str) -> Result<Principal> {
        match self.accounts.principal_by_name(&self.account_id, name).await? {
            Some(p) if p.kind == PrincipalKind::User => Ok(p),
            _ => Err(IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))),
        }
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub(crate) fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    pub(crate) fn master_keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// The principal an access key belongs to: how a request without `UserName` names its
    /// caller.
    pub async fn key_owner(&self, access_key_id: &str) -> Result<Principal> {
        self.accounts
            .access_key(access_key_id)
            .await?
            .map(|(_, principal)| principal)
            .ok_or_else(|| IamError::NoSuchEntity("The caller cannot be found.".into()))
    }

    pub async fn access_keys(&self, principal: &Principal) -> Result<Vec<AccessKey>> {
        Ok(self.accounts.list_access_keys(&principal.id).await?)
    }

    /// A managed policy of this account with the number of users and groups it is attached to.
    pub async fn managed_policy(&self, arn: &str) -> Result<(ManagedPolicy, u64)> {
        let policy = self
            .policies
            .managed_policy(arn)
            .await?
            .filter(|p| p.account_id == self.account_id)
            .ok_or_else(|| IamError::NoSuchEntity(format!("Policy {arn} was not found.")))?;
        let attachments = self.policies.policy_attachment_count(arn).await?;
        Ok((policy, attachments))
    }

    /// The account's managed policies, each with its attachment count.
    pub async fn managed_policies(&self) -> Result<Vec<(ManagedPolicy, u64)>> {
        let mut out = Vec::new();
        for policy in self.policies.list_managed_policies(&self.account_id).await? {
            let n = self.policies.policy_attachment_count(&policy.arn).await?;
            out.push((policy, n));
        }
        Ok(out)
    }

    pub async fn list_groups(&self) -> Result<Vec<Group>> {
        Ok(self.policies.list_groups(&self.account_id).await?)
    }

    pub async fn group_members(&self, group: &Group) -> Result<Vec<Principal>> {
        Ok(self.policies.group_members(&group.id).await?)
    }

    pub async fn remove_user_from_group(&self, group: &str, user: &str) -> Result<()> {
        let (g, u) = (self.group(group).await?, self.user(user).await?);
        if !self.policies.remove_group_member(&g.id, &u.id).await? {
            return Err(IamError::NoSuchEntity("The user is not in the group.".into()));
        }
        Ok(())
    }

    pub async fn group(&self, name: &str) -> Result<Group> {
        self.policies
            .group_by_name(&self.account_id, name)
            .await?
            .ok_or_else(|| IamError::NoSuchEntity(format!("The group with name {name} cannot be found.")))
    }

    pub async fn create_user(&self, name: &str) -> Result<Principal> {
        check_name("userName", name, 64)?;
        if name == "root" {
            return Err(IamError::InvalidInput("root is the account's root user".into()));
        }
        let p = Principal {
            id: berth_auth::keys::new_user_id(),
            account_id: self.account_id.clone(),
            name: name.to_string(),
            kind: PrincipalKind::User,
            created_at: now_ms(),
        };
        self.accounts.create_principal(&p).await.map_err(|e| match e {
            MetaError::AlreadyExists => IamError::EntityAlreadyExists(format!("User with name {name} already exists.")),
            other => other.into(),
        })?;
        Ok(p)
    }

    /// Deletes a user that has no access keys, policies or group memberships left (IAM's
    /// `DeleteConflict` otherwise).
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let u = self.user(name).await?;
        let attached = !self.accounts.list_access_keys(&u.id).await?.is_empty()
            || !self.policies.list_inline_policies(&u.id).await?.is_empty()
            || !self.policies.attached_policies(&u.id).await?.is_empty()
            || !self.policies.groups_of(&u.id).await?.is_empty();
        if attached {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must remove access keys, policies and group memberships first.".into(),
            ));
        }
        self.accounts.delete_principal(&u.id).await?;
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<Principal>> {
        Ok(self
            .accounts
            .list_principals(&self.account_id)
            .await?
            .into_iter()
            .filter(|p| p.kind == PrincipalKind::User)
            .collect())
    }

    /// A new access key for `principal` (a user, or the root); the secret is returned once.
    /// IAM's quota of two keys per user is the IAM API's to apply ([`IamAdmin::check_key_quota`]);
    /// `berth admin` is the operator's tool and does not.
    pub async fn create_access_key(&self, principal: &Principal) -> Result<NewAccessKey> {
        let access_key_id = berth_auth::keys::new_access_key_id();
        let secret = berth_auth::keys::new_secret_access_key();
        let key = AccessKey {
            sealed_secret: self.keys.seal(SealedKind::AccessKeySecret, &access_key_id, secret.as_bytes()),
            access_key_id,
            principal_id: principal.id.clone(),
            active: true,
            created_at: now_ms(),
            last_used: None,
        };
        self.accounts.create_access_key(&key).await?;
        Ok(NewAccessKey { key, secret })
    }

    fn no_such_key(access_key_id: &str) -> IamError {
        IamError::NoSuchEntity(format!("The Access Key with id {access_key_id} cannot be found."))
    }

    /// `access_key_id` if it is `owner`'s key; IAM's `NoSuchEntity` for a key of anyone else
    /// (another user, another account) as for one that does not exist.
    async fn owned_key(&self, owner: &Principal, access_key_id: &str) -> Result<AccessKey> {
        match self.accounts.access_key(access_key_id).await? {
            Some((key, p)) if p.id == owner.id && p.account_id == self.account_id => Ok(key),
            _ => Err(Self::no_such_key(access_key_id)),
        }
    }

    fn key_change(change: KeyChange, access_key_id: &str) -> Result<()> {
        match change {
            KeyChange::Done => Ok(()),
            KeyChange::NotFound => Err(Self::no_such_key(access_key_id)),
            KeyChange::LastActiveKey => Err(IamError::DeleteConflict(ROOT_KEEPS_A_KEY.into())),
        }
    }

    /// Activates or deactivates `owner`'s key. The account root's last active key cannot be
    /// deactivated (`DeleteConflict`) unless `force` (only `berth admin` passes it).
    pub async fn update_access_key(
        &self,
        owner: &Principal,
        access_key_id: &str,
        status: KeyStatus,
        force: bool,
    ) -> Result<()> {
        self.owned_key(owner, access_key_id).await?;
        let guard = owner.kind == PrincipalKind::Root && !force;
        let change = self.accounts.update_access_key_status(access_key_id, status == KeyStatus::Active, guard).await?;
        Self::key_change(change, access_key_id)
    }

    /// Deletes `owner`'s key for good, with the same guard for the root's last active key.
    pub async fn delete_access_key(&self, owner: &Principal, access_key_id: &str, force: bool) -> Result<()> {
        self.owned_key(owner, access_key_id).await?;
        let guard = owner.kind == PrincipalKind::Root && !force;
        let change = self.accounts.delete_access_key(access_key_id, guard).await?;
        Self::key_change(change, access_key_id)
    }

    /// A key of this account with its owner, for `GetAccessKeyLastUsed` (any key of the
    /// caller's account; `NoSuchEntity` for another account's).
    pub async fn access_key_last_used(&self, access_key_id: &str) -> Result<(Principal, AccessKey)> {
        match self.accounts.access_key(access_key_id).await? {
            Some((key, p)) if p.account_id == self.account_id => Ok((p, key)),
            _ => Err(Self::no_such_key(access_key_id)),
        }
    }

    /// IAM's quota: at most two access keys per user.
    pub async fn check_key_quota(&self, principal: &Principal) -> Result<()> {
        if self.accounts.list_access_keys(&principal.id).await?.len() >= 2 {
            return Err(IamError::LimitExceeded("Cannot exceed quota for AccessKeysPerUser: 2".into()));
        }
        Ok(())
    }

    pub async fn create_group(&self, name: &str) -> Result<Group> {
        let g = Group {
            id: new_id("AGPA"),
            account_id: self.account_id.clone(),
            name: name.to_string(),
            created_at: now_ms(),
        };
        self.create_group_as(&g).await?;
        Ok(g)
    }

    /// Creates the group `g` with the id it has (a new one, or one imported from another
    /// deployment).
    pub(crate) async fn create_group_as(&self, g: &Group) -> Result<()> {
        check_name("groupName", &g.name, 128)?;
        self.policies.create_group(g).await.map_err(|e| match e {
            MetaError::AlreadyExists => {
                IamError::EntityAlreadyExists(format!("Group with name {} already exists.", g.name))
            }
            other => other.into(),
        })
    }

    /// Replaces a managed policy's document (checked as a new one is).
    pub(crate) async fn update_policy_document(&self, arn: &str, document: &str) -> Result<()> {
        check_identity_policy(document)?;
        if !self.policies.update_managed_policy(arn, document).await? {
            return Err(IamError::NoSuchEntity(format!("Policy {arn} was not found.")));
        }
        Ok(())
    }

    pub async fn add_user_to_group(&self, group: &str, user: &str) -> Result<()> {
        let (g, u) = (self.group(group).await?, self.user(user).await?);
        Ok(self.policies.add_group_member(&g.id, &u.id).await?)
    }

    /// The id that owns inline policies and attachments: a user's or a group's.
    async fn owner(&self, owner: Owner<'_>) -> Result<String> {
        Ok(match owner {
            Owner::User(n) => self.user(n).await?.id,
            Owner::Group(n) => self.group(n).await?.id,
        })
    }

    pub async fn put_inline_policy(&self, owner: Owner<'_>, name: &str, document: &str) -> Result<()> {
        check_name("policyName", name, 128)?;
        check_identity_policy(document)?;
        let id = self.owner(owner).await?;
        Ok(self.policies.put_inline_policy(&id, name, document).await?)
    }

    pub async fn inline_policy(&self, owner: Owner<'_>, name: &str) -> Result<String> {
        let id = self.owner(owner).await?;
        self.policies
            .inline_policy(&id, name)
            .await?
            .ok_or_else(|| IamError::NoSuchEntity(format!("The policy with name {name} cannot be found.")))
    }

    pub async fn list_inline_policies(&self, owner: Owner<'_>) -> Result<Vec<String>> {
        let id = self.owner(owner).await?;
        Ok(self.policies.list_inline_policies(&id).await?)
    }

    pub async fn delete_inline_policy(&self, owner: Owner<'_>, name: &str) -> Result<()> {
        let id = self.owner(owner).await?;
        if !self.policies.delete_inline_policy(&id, name).await? {
            return Err(IamError::NoSuchEntity(format!("The policy with name {name} cannot be found.")));
        }
        Ok(())
    }

    pub async fn create_policy(&self, name: &str, path: Option<&str>, document: &str) -> Result<ManagedPolicy> {
        check_name("policyName", name, 128)?;
        check_identity_policy(document)?;
        let path = path.unwrap_or("/");
        if !path.starts_with('/') || !path.ends_with('/') {
            return Err(IamError::InvalidInput("A path must begin and end with /".into()));
        }
        let now = now_ms();
        let p = ManagedPolicy {
            arn: format!("arn:aws:iam::{}:policy{path}{name}", self.account_id),
            id: new_id("ANPA"),
            account_id: self.account_id.clone(),
            name: name.to_string(),
            path: path.to_string(),
            document: document.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.policies.create_managed_policy(&p).await.map_err(|e| match e {
            MetaError::AlreadyExists => IamError::EntityAlreadyExists(format!(
                "A policy called {name} already exists. Duplicate names are not allowed."
            )),
            other => other.into(),
        })?;
        Ok(p)
    }

    /// Whether `arn` names a policy that can be attached: one of this account's, or a built-in
    /// AWS-managed one.
    async fn check_attachable(&self, arn: &str) -> Result<()> {
        if aws_managed_policy(arn).is_some() || self.policies.managed_policy(arn).await?.is_some() {
            return Ok(());
        }
        Err(IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable.")))
    }

    pub async fn attach_policy(&self, owner: Owner<'_>, arn: &str) -> Result<()> {
        self.check_attachable(arn).await?;
        let id = self.owner(owner).await?;
        Ok(self.policies.attach_policy(&id, arn).await?)
    }

    pub async fn detach_policy(&self, owner: Owner<'_>, arn: &str) -> Result<()> {
        let id = self.owner(owner).await?;
        if !self.policies.detach_policy(&id, arn).await? {
            return Err(IamError::NoSuchEntity(format!("Policy {arn} was not found.")));
        }
        Ok(())
    }

    pub async fn attached_policies(&self, owner: Owner<'_>) -> Result<Vec<String>> {
        let id = self.owner(owner).await?;
        Ok(self.policies.attached_policies(&id).await?)
    }

    pub async fn delete_policy(&self, arn: &str) -> Result<()> {
        if self.policies.policy_attachment_count(arn).await? > 0 {
            return Err(IamError::DeleteConflict("Cannot delete a policy attached to entities.".into()));
        }
        if !self.policies.delete_managed_policy(arn).await? {
            return Err(IamError::NoSuchEntity(format!("Policy {arn} was not found.")));
        }
        Ok(())
    }
}

/// Whose inline policies or attachments: a user's or a group's, by name.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    User(&'a str),
    Group(&'a str),
}

impl crate::Registry {
    /// Identity administration of one account (the IAM Query API acts on the caller's).
    pub fn iam(&self, account_id: &str) -> IamAdmin {
        IamAdmin::new(self.meta().clone(), self.meta().clone(), self.master_keys.clone(), account_id.to_string())
    }

    /// Whether `account` is one this registry serves (it has a root user).
    pub async fn serves_account(&self, account: &str) -> std::result::Result<bool, crate::RegistryError> {
        Ok(account == self.registry_id() || self.meta().principal_by_name(account, "root").await?.is_some())
    }
}
