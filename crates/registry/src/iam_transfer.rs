//! Moving an account's identities between deployments (regions), so that one access key
//! works in every region of the account, as in AWS: `berth admin export-identities` writes
//! the users, groups, customer-managed policies, inline policies, attachments, memberships and
//! access keys of one account to a document; `import-identities` makes another deployment
//! hold the same. Secrets never travel in the clear: each access key's secret is sealed
//! (AES-256-GCM) under a transport key made for the export, which the operator carries to the
//! other side by another channel; the importing side seals it under its own master keyring.
//! The whole document is authenticated under a key derived from the transport key: a changed
//! owner, policy or membership is refused before anything is written.
//!
//! Import adds and updates, never deletes: a user, group or policy is matched by name (and
//! keeps the id it has here, or gets the exported one when new); a policy document or an
//! inline policy is set to the exported text; a key is added under its own id unless it
//! exists (same owner: its status follows the export) or was deleted here (never brought back).

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use berth_meta::{AccessKey, Group, KeyChange, MetaError, Principal, PrincipalKind, SealedKind, now_ms};
use serde::{Deserialize, Serialize};

use crate::iam::{IamAdmin, IamError, Owner};

const FORMAT: &str = "berth-identities/1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The exported document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitiesDocument {
    pub format: String,
    pub account: String,
    pub users: Vec<UserEntry>,
    pub groups: Vec<GroupEntry>,
    pub policies: Vec<PolicyEntry>,
    pub access_keys: Vec<KeyEntry>,
    /// HMAC-SHA256 (hex) of the document without it, under a key derived from the transport
    /// key: nothing in it (a key's owner, an attachment) can be changed on the way.
    #[serde(default)]
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntry {
    pub name: String,
    pub id: String,
    pub inline_policies: BTreeMap<String, String>,
    pub attached_policies: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupEntry {
    pub name: String,
    pub id: String,
    pub inline_policies: BTreeMap<String, String>,
    pub attached_policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntry {
    pub name: String,
    pub path: String,
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyEntry {
    /// `root`, or a user's name.
    pub user: String,
    pub access_key_id: String,
    pub active: bool,
    pub created_at: i64,
    /// The secret sealed under the transport key (nonce, then ciphertext and tag; base64).
    pub sealed_secret: String,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportReport {
    pub users_created: u32,
    pub groups_created: u32,
    pub policies_created: u32,
    pub policies_updated: u32,
    pub access_keys_added: u32,
    /// Keys this deployment deleted once: never brought back.
    pub access_keys_skipped: Vec<String>,
}

/// The key an export seals secrets under: 32 random bytes, shown as base64.
pub struct TransportKey(Vec<u8>);

impl TransportKey {
    pub fn generate() -> Self {
        let mut k = vec![0u8; 32];
        SystemRandom::new().fill(&mut k).expect("system randomness");
        TransportKey(k)
    }

    pub fn parse(text: &str) -> Result<Self, IamError> {
        match B64.decode(text.trim()) {
            Ok(k) if k.len() == 32 => Ok(TransportKey(k)),
            _ => {
                Err(IamError::InvalidInput("the transport key is 32 bytes in base64, as the export printed it".into()))
            }
        }
    }

    pub fn to_text(&self) -> String {
        B64.encode(&self.0)
    }

    /// The document's MAC: HMAC-SHA256 over its JSON without the MAC, keyed by
    /// HMAC-SHA256(transport key, "berth identities mac").
    fn mac(&self, doc: &IdentitiesDocument) -> String {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.0), b"berth identities mac");
        let body = serde_json::to_vec(&IdentitiesDocument { mac: String::new(), ..doc.clone() }).expect("serializes");
        hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), &body))
    }

    fn verify(&self, doc: &IdentitiesDocument) -> Result<(), IamError> {
        let expected = self.mac(doc);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), doc.mac.as_bytes()).map_err(|_| {
            IamError::InvalidInput(
                "the identities file was changed, or the transport key is not the one its export printed".into(),
            )
        })
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key"))
    }

    fn aad(account: &str, access_key_id: &str) -> Vec<u8> {
        format!("berth identities\n{account}\n{access_key_id}").into_bytes()
    }

    fn seal(&self, account: &str, access_key_id: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness");
        let mut data = secret.to_vec();
        self.cipher()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(account, access_key_id)),
                &mut data,
            )
            .expect("sealing in memory");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        B64.encode(out)
    }

    fn open(&self, account: &str, access_key_id: &str, sealed: &str) -> Result<Vec<u8>, IamError> {
        let wrong =
            || IamError::InvalidInput(format!("the secret of {access_key_id} does not open with this transport key"));
        let raw = B64.decode(sealed).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut body = body.to_vec();
        let plain = self
            .cipher()
            .open_in_place(nonce, Aad::from(Self::aad(account, access_key_id)), &mut body)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

fn backend(e: impl std::fmt::Display) -> IamError {
    IamError::ServiceFailure(e.to_string())
}

impl IamAdmin {
    async fn inline_policies(&self, owner: Owner<'_>) -> Result<BTreeMap<String, String>, IamError> {
        let mut out = BTreeMap::new();
        for name in self.list_inline_policies(owner).await? {
            let doc = self.inline_policy(owner, &name).await?;
            out.insert(name, doc);
        }
        Ok(out)
    }

    /// The account's identities, every key's secret sealed under `transport`.
    pub async fn export_identities(&self, transport: &TransportKey) -> Result<IdentitiesDocument, IamError> {
        let account = self.account_id().to_string();
        let mut doc = IdentitiesDocument {
            format: FORMAT.into(),
            account: account.clone(),
            users: Vec::new(),
            groups: Vec::new(),
            policies: Vec::new(),
            access_keys: Vec::new(),
            mac: String::new(),
        };
        for (p, _) in self.managed_policies().await? {
            doc.policies.push(PolicyEntry { name: p.name, path: p.path, document: p.document });
        }
        let groups = self.list_groups().await?;
        for g in &groups {
            doc.groups.push(GroupEntry {
                name: g.name.clone(),
                id: g.id.clone(),
                inline_policies: self.inline_policies(Owner::Group(&g.name)).await?,
                attached_policies: self.attached_policies(Owner::Group(&g.name)).await?,
            });
        }
        let mut owners: Vec<Principal> =
            self.accounts().principal_by_name(&account, "root").await?.into_iter().collect();
        for u in self.list_users().await? {
            let mut member_of = Vec::new();
            for g in &groups {
                if self.group_members(g).await?.iter().any(|m| m.id == u.id) {
                    member_of.push(g.name.clone());
                }
            }
            doc.users.push(UserEntry {
                name: u.name.clone(),
                id: u.id.clone(),
                inline_policies: self.inline_policies(Owner::User(&u.name)).await?,
                attached_policies: self.attached_policies(Owner::User(&u.name)).await?,
                groups: member_of,
            });
            owners.push(u);
        }
        for owner in &owners {
            for key in self.access_keys(owner).await? {
                let secret = self
                    .master_keys()
                    .open(SealedKind::AccessKeySecret, &key.access_key_id, key.sealed_secret.as_bytes())
                    .map_err(backend)?;
                doc.access_keys.push(KeyEntry {
                    user: owner.name.clone(),
                    sealed_secret: transport.seal(&account, &key.access_key_id, &secret),
                    access_key_id: key.access_key_id,
                    active: key.active,
                    created_at: key.created_at,
                });
            }
        }
        doc.mac = transport.mac(&doc);
        Ok(doc)
    }

    /// Makes this deployment hold the document's identities for this account (see the
    /// module's comment). Every secret is opened before anything is written: a wrong
    /// transport key changes nothing.
    pub async fn import_identities(
        &self,
        doc: &IdentitiesDocument,
        transport: &TransportKey,
    ) -> Result<ImportReport, IamError> {
        let account = self.account_id().to_string();
        if doc.format != FORMAT {
            return Err(IamError::InvalidInput(format!(
                "{:?} is not a format this build reads ({FORMAT})",
                doc.format
            )));
        }
        if doc.account != account {
            return Err(IamError::InvalidInput(format!(
                "the document holds account {}'s identities, not {account}'s",
                doc.account
            )));
        }
        transport.verify(doc)?;
        let mut secrets = Vec::new();
        for k in &doc.access_keys {
            secrets.push(transport.open(&account, &k.access_key_id, &k.sealed_secret)?);
        }
        let mut report = ImportReport::default();
        let accounts = self.accounts();
        accounts.ensure_account(&account).await?;
        crate::identity::ensure_root_principal(accounts.as_ref(), &account).await.map_err(backend)?;
        for p in &doc.policies {
            let arn = format!("arn:aws:iam::{account}:policy{}{}", p.path, p.name);
            match self.managed_policy(&arn).await {
                Ok((existing, _)) if existing.document == p.document => {}
                Ok(_) => {
                    self.update_policy_document(&arn, &p.document).await?;
                    report.policies_updated += 1;
                }
                Err(IamError::NoSuchEntity(_)) => {
                    self.create_policy(&p.name, Some(&p.path), &p.document).await?;
                    report.policies_created += 1;
                }
                Err(e) => return Err(e),
            }
        }
        for g in &doc.groups {
            if matches!(self.group(&g.name).await, Err(IamError::NoSuchEntity(_))) {
                let group =
                    Group { id: g.id.clone(), account_id: account.clone(), name: g.name.clone(), created_at: now_ms() };
                self.create_group_as(&group).await?;
                report.groups_created += 1;
            }
            for (name, document) in &g.inline_policies {
                self.put_inline_policy(Owner::Group(&g.name), name, document).await?;
            }
            for arn in &g.attached_policies {
                self.attach_policy(Owner::Group(&g.name), arn).await?;
            }
        }
        for u in &doc.users {
            if matches!(self.user(&u.name).await, Err(IamError::NoSuchEntity(_))) {
                let p = Principal {
                    id: u.id.clone(),
                    account_id: account.clone(),
                    name: u.name.clone(),
                    kind: PrincipalKind::User,
                    created_at: now_ms(),
                };
                match accounts.create_principal(&p).await {
                    Ok(()) => report.users_created += 1,
                    Err(MetaError::AlreadyExists) => {
                        return Err(IamError::EntityAlreadyExists(format!(
                            "user {} cannot be created with id {}: the id is taken here",
                            u.name, u.id
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for (name, document) in &u.inline_policies {
                self.put_inline_policy(Owner::User(&u.name), name, document).await?;
            }
            for arn in &u.attached_policies {
                self.attach_policy(Owner::User(&u.name), arn).await?;
            }
            for g in &u.groups {
                self.add_user_to_group(g, &u.name).await?;
            }
        }
        for (k, secret) in doc.access_keys.iter().zip(secrets) {
            let owner = match accounts.principal_by_name(&account, &k.user).await? {
                Some(p) => p,
                None => {
                    return Err(IamError::NoSuchEntity(format!(
                        "key {} names user {}, who is not exported",
                        k.access_key_id, k.user
                    )));
                }
            };
            match accounts.access_key(&k.access_key_id).await? {
                Some((existing, holder)) if holder.id == owner.id => {
                    if existing.active != k.active {
                        // (Forced, as `berth admin` does: the export is the operator's.)
                        let _: KeyChange = accounts.update_access_key_status(&k.access_key_id, k.active, false).await?;
                    }
                    continue;
                }
                Some(_) => {
                    return Err(IamError::EntityAlreadyExists(format!(
                        "access key {} belongs to another principal here",
                        k.access_key_id
                    )));
                }
                None => {}
            }
            if accounts.access_key_deleted(&k.access_key_id).await? {
                report.access_keys_skipped.push(k.access_key_id.clone());
                continue;
            }
            let key = AccessKey {
                access_key_id: k.access_key_id.clone(),
                principal_id: owner.id.clone(),
                sealed_secret: self.master_keys().seal(SealedKind::AccessKeySecret, &k.access_key_id, &secret),
                active: k.active,
                created_at: k.created_at,
                last_used: None,
            };
            accounts.create_access_key(&key).await?;
            report.access_keys_added += 1;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_with_its_transport_key_account_and_key_id() {
        let t = TransportKey::generate();
        let sealed = t.seal("123456789012", "AKIAONE", b"secret-1");
        assert_eq!(t.open("123456789012", "AKIAONE", &sealed).unwrap(), b"secret-1");
        assert!(t.open("123456789012", "AKIATWO", &sealed).is_err(), "bound to its key id");
        assert!(t.open("210987654321", "AKIAONE", &sealed).is_err(), "bound to its account");
        assert!(TransportKey::generate().open("123456789012", "AKIAONE", &sealed).is_err());
        assert!(t.open("123456789012", "AKIAONE", "bm9uc2Vuc2U=").is_err());
        let again = TransportKey::parse(&t.to_text()).unwrap();
        assert_eq!(again.open("123456789012", "AKIAONE", &sealed).unwrap(), b"secret-1");
        assert!(TransportKey::parse("c2hvcnQ=").is_err());
    }

    #[test]
    fn a_changed_document_is_refused() {
        let t = TransportKey::generate();
        let mut doc = IdentitiesDocument {
            format: FORMAT.into(),
            account: "123456789012".into(),
            users: vec![],
            groups: vec![],
            policies: vec![],
            access_keys: vec![KeyEntry {
                user: "ci".into(),
                access_key_id: "AKIAONE".into(),
                active: true,
                created_at: 1,
                sealed_secret: t.seal("123456789012", "AKIAONE", b"s"),
            }],
            mac: String::new(),
        };
        doc.mac = t.mac(&doc);
        assert!(t.verify(&doc).is_ok());
        let mut root = doc.clone();
        root.access_keys[0].user = "root".into();
        assert!(t.verify(&root).is_err(), "a key moved to the root");
        assert!(TransportKey::generate().verify(&doc).is_err(), "another transport key");
    }
}
