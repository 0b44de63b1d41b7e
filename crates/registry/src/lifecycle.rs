//! Lifecycle policies applied to a repository's images: the images as the pure evaluator sees
//! them, and what a policy would do to them now (the preview; the runner comes next).

use std::collections::HashSet;

use berth_meta::{ImageRecord, TagFilter};
use berth_policy::lifecycle::{self, Decision, Image, LifecyclePolicy};

use crate::{Registry, RegistryError};

impl Registry {
    /// Every image of a repository with its record, children of an index marked as such.
    pub async fn lifecycle_images(&self, repository: &str) -> Result<Vec<(Image, ImageRecord)>, RegistryError> {
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.meta().list_images(repository, after.as_deref(), 1000, TagFilter::Any).await?;
            let done = page.len() < 1000;
            after = page.last().map(|r| r.digest.clone());
            records.extend(page);
            if done {
                break;
            }
        }
        let children: HashSet<String> = records.iter().flat_map(|r| r.children.iter().cloned()).collect();
        Ok(records
            .into_iter()
            .map(|r| {
                let image = Image {
                    digest: r.digest.clone(),
                    tags: r.tags.clone(),
                    pushed_at_ms: r.pushed_at,
                    in_index: children.contains(&r.digest),
                };
                (image, r)
            })
            .collect())
    }

    /// What `policy` would do to the repository's images at `now_ms`.
    pub async fn lifecycle_preview(
        &self,
        repository: &str,
        policy: &LifecyclePolicy,
        now_ms: i64,
    ) -> Result<Vec<(Decision, ImageRecord)>, RegistryError> {
        let images = self.lifecycle_images(repository).await?;
        let list: Vec<Image> = images.iter().map(|(i, _)| i.clone()).collect();
        let decisions = lifecycle::evaluate(policy, &list, now_ms);
        Ok(decisions
            .into_iter()
            .filter_map(|d| images.iter().find(|(i, _)| i.digest == d.digest).map(|(_, r)| (d, r.clone())))
            .collect())
    }
}
