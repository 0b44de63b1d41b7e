//! Work that must run on one node at a time — scheduled GC and lifecycle runs — is done by the
//! node holding its lease in the metadata store; a lease another node does not renew expires, so
//! when its holder dies another node takes the work over within the lease's lifetime.

use std::time::Duration;

use crate::{Registry, RegistryError};

impl Registry {
    /// Takes or renews the lease `name` for `holder` for `ttl`; whether `holder` holds it.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, RegistryError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(self.meta().try_lease(name, holder, berth_meta::now_ms(), ttl_ms).await?)
    }

    /// Gives the lease up (at shutdown, so that another node takes it at once).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), RegistryError> {
        Ok(self.meta().release_lease(name, holder).await?)
    }
}
