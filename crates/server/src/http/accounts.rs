//! Which account's registry a request acts on, and the translation between repository names
//! and the store's repository keys at the API edges (see `repositories::repository_key`):
//! requests are turned into keys once, and keys never leave in a response.

use berth_registry::public::public_repository_key;
use berth_registry::repositories::{account_key_prefix, repository_key};

use super::AppState;

/// The account a request names (a `registryId`, a `<account>.<host>` name, or the caller's
/// own), resolved against the default account; or, on the public host, one account's public
/// registry, whose names are `<alias>/<repository>`.
pub struct Namespace {
    pub default_account: String,
    pub account: String,
    /// The public registry's alias, on the public host.
    public_alias: Option<String>,
}

impl Namespace {
    pub fn new(default_account: &str, account: &str) -> Namespace {
        Namespace { default_account: default_account.to_string(), account: account.to_string(), public_alias: None }
    }

    /// `account`'s public registry, named by `alias` on the public host.
    pub fn public(default_account: &str, account: &str, alias: &str) -> Namespace {
        Namespace {
            default_account: default_account.to_string(),
            account: account.to_string(),
            public_alias: Some(alias.to_string()),
        }
    }

    pub fn is_default(&self) -> bool {
        self.account == self.default_account && self.public_alias.is_none()
    }

    /// Whether this is a public registry (the public host's).
    pub fn is_public(&self) -> bool {
        self.public_alias.is_some()
    }

    /// The store's key of a repository of this account (of a public registry: `name` is
    /// `<alias>/<repository>`; `None` when it names another alias).
    pub fn public_key(&self, name: &str) -> Option<String> {
        let alias = self.public_alias.as_deref()?;
        let repository = name.strip_prefix(alias)?.strip_prefix('/')?;
        Some(public_repository_key(&self.account, repository))
    }

    /// The store's key of a repository of this account. On the public host, `name` is
    /// `<alias>/<repository>` of this namespace's alias (the caller resolved it so).
    pub fn key(&self, name: &str) -> String {
        if self.is_public() {
            return self.public_key(name).unwrap_or_else(|| public_repository_key(&self.account, name));
        }
        repository_key(&self.default_account, &self.account, name)
    }

    /// The prefix every key of this account starts with (empty for the default account).
    pub fn prefix(&self) -> String {
        account_key_prefix(&self.default_account, &self.account)
    }

    /// `text` with this account's keys turned back into names.
    pub fn unkey(&self, text: &str) -> String {
        match &self.public_alias {
            Some(alias) => text.replace(&public_repository_key(&self.account, ""), &format!("{alias}/")),
            None if self.is_default() => text.to_string(),
            None => text.replace(&self.prefix(), ""),
        }
    }
}

/// Whether `account` is one this Berth serves (it has a root user).
pub async fn account_exists(app: &AppState, account: &str) -> bool {
    account == app.identity.account_id() || matches!(app.registry.serves_account(account).await, Ok(true))
}

/// The account a `/v2/` host name selects: `<12 digits>.<anything>` an existing account's
/// registry, anything else the default account's.
pub async fn account_of_host(app: &AppState, host: &str) -> String {
    let default = app.identity.account_id().to_string();
    match host.split_once('.') {
        Some((label, _)) if label.len() == 12 && label.bytes().all(|b| b.is_ascii_digit()) => {
            if account_exists(app, label).await { label.to_string() } else { default }
        }
        _ => default,
    }
}
