//! Which account's registry a request acts on, and the translation between repository names
//! and the store's repository keys at the API edges (see `repositories::repository_key`):
//! requests are turned into keys once, and keys never leave in a response.

use berth_registry::repositories::{account_key_prefix, repository_key};

use super::AppState;

/// The account a request names (a `registryId`, a `<account>.<host>` name, or the caller's
/// own), resolved against the default account.
pub struct Namespace {
    pub default_account: String,
    pub account: String,
}

impl Namespace {
    pub fn new(default_account: &str, account: &str) -> Namespace {
        Namespace { default_account: default_account.to_string(), account: account.to_string() }
    }

    pub fn is_default(&self) -> bool {
        self.account == self.default_account
    }

    /// The store's key of a repository of this account.
    pub fn key(&self, name: &str) -> String {
        repository_key(&self.default_account, &self.account, name)
    }

    /// The prefix every key of this account starts with (empty for the default account).
    pub fn prefix(&self) -> String {
        account_key_prefix(&self.default_account, &self.account)
    }

    /// `text` with this account's keys turned back into names.
    pub fn unkey(&self, text: &str) -> String {
        if self.is_default() { text.to_string() } else { text.replace(&self.prefix(), "") }
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
