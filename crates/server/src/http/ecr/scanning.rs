//! The scan operations: `StartImageScan` and `DescribeImageScanFindings`, and the scan status
//! and severity counts `DescribeImages` shows. Findings are stored once per scan (see
//! `berth_registry::scan::ScanReport`) and rendered here in ECR's two shapes: basic
//! `findings` for BASIC scans, `enhancedFindings` (Inspector's finding format) for ENHANCED.

use std::collections::BTreeMap;

use berth_meta::ImageScan;
use berth_registry::RegistryError;
use berth_registry::scan::ScanReport;
use berth_vuln::findings::Finding;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::images::{ImageId, image_not_found};
use super::{Ctx, EcrError, EcrResult, page_size};

/// ECR's status of a stored scan: a queued scan shows as `IN_PROGRESS`, as ECR shows it.
pub(super) fn status_json(scan: &ImageScan) -> Value {
    let (status, description) = match scan.status.as_str() {
        "PENDING" => ("IN_PROGRESS", "The scan is queued.".to_string()),
        "IN_PROGRESS" => ("IN_PROGRESS", "The scan is in progress.".to_string()),
        other => (other, scan.description.clone().unwrap_or_default()),
    };
    json!({ "status": status, "description": description })
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `imageScanFindingsSummary` of `DescribeImages`, for a complete scan.
pub(super) fn summary_json(scan: &ImageScan) -> Option<Value> {
    if scan.status != "COMPLETE" {
        return None;
    }
    let counts: BTreeMap<String, u64> =
        scan.counts.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
    let mut v = json!({ "findingSeverityCounts": counts });
    if let Some(t) = scan.completed_at {
        v["imageScanCompletedAt"] = seconds(t).into();
    }
    if let Some(t) = scan.vulndb_updated_at {
        v["vulnerabilitySourceUpdatedAt"] = seconds(t).into();
    }
    Some(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartImageScanInput {
    repository_name: String,
    image_id: ImageId,
}

pub(super) async fn start_image_scan(ctx: &Ctx<'_>, input: StartImageScanInput) -> EcrResult {
    let repo_name = &input.repository_name;
    ctx.existing_repository(repo_name).await?;
    let digest = ctx.resolve_one(repo_name, &input.image_id).await?;
    ctx.app.registry.start_image_scan(repo_name, &digest).await.map_err(|e| match e {
        RegistryError::ManifestNotFound { .. } => image_not_found(ctx, repo_name, &input.image_id),
        other => other.into(),
    })?;
    Ok(json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo_name,
        "imageId": ctx.image_id_json(&digest, &input.image_id),
        "imageScanStatus": { "status": "IN_PROGRESS", "description": "The scan is queued." },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageScanFindingsInput {
    repository_name: String,
    image_id: ImageId,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn describe_image_scan_findings(ctx: &Ctx<'_>, input: DescribeImageScanFindingsInput) -> EcrResult {
    let repo_name = &input.repository_name;
    ctx.existing_repository(repo_name).await?;
    let limit = page_size(input.max_results, 100)? as usize;
    let offset: usize = match ctx.decode_token(&input.next_token)? {
        Some(t) => t
            .parse()
            .map_err(|_| EcrError::invalid("Invalid parameter at 'nextToken': not a token this registry issued"))?,
        None => 0,
    };
    let digest = ctx.resolve_one(repo_name, &input.image_id).await?;
    let scan = ctx.app.registry.image_scan(repo_name, &digest).await.map_err(|e| match e {
        RegistryError::ScanNotFound { .. } => EcrError::new(
            "ScanNotFoundException",
            format!(
                "Image scan does not exist for the image with '{{imageDigest:'{digest}', imageTag:'{}'}}' in the repository with name '{repo_name}' in the registry with id '{}'",
                input.image_id.image_tag.as_deref().unwrap_or("null"),
                ctx.registry_id()
            ),
        ),
        other => other.into(),
    })?;
    let mut out = json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo_name,
        "imageId": ctx.image_id_json(&digest, &input.image_id),
        "imageScanStatus": status_json(&scan),
    });
    let Some(mut findings_json) = summary_json(&scan) else { return Ok(out) };
    let report: ScanReport = match scan.findings.as_deref() {
        Some(text) => serde_json::from_str(text).map_err(EcrError::server)?,
        None => ScanReport::default(),
    };
    let page: Vec<&Finding> = report.findings.iter().skip(offset).take(limit).collect();
    if scan.scan_type == "ENHANCED" {
        let image = ctx.app.registry.image(repo_name, &digest).await?;
        let tags = image.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
        let pushed_at = image.as_ref().map(|i| seconds(i.pushed_at));
        let rendered: Vec<Value> = page
            .iter()
            .map(|f| ctx.enhanced_finding(repo_name, digest.as_str(), &tags, pushed_at, &scan, &report, f))
            .collect();
        findings_json["enhancedFindings"] = rendered.into();
    } else {
        findings_json["findings"] = page.iter().map(|f| basic_finding(f)).collect::<Vec<_>>().into();
    }
    out["imageScanFindings"] = findings_json;
    let next = offset.saturating_add(limit);
    if next < report.findings.len() {
        out["nextToken"] = ctx.encode_token(&next.to_string()).into();
    }
    Ok(out)
}

/// The CVSS version a vector is written in: `3.1`, `4.0`, or `2.0` for a bare v2 vector.
fn cvss_version(vector: &str) -> String {
    vector
        .strip_prefix("CVSS:")
        .and_then(|rest| rest.split('/').next())
        .map_or_else(|| "2.0".to_string(), str::to_string)
}

fn basic_finding(f: &Finding) -> Value {
    let mut attributes = vec![
        json!({ "key": "package_version", "value": f.package_version }),
        json!({ "key": "package_name", "value": f.package_name }),
    ];
    if let Some(v) = &f.cvss_vector {
        let prefix = format!("CVSS{}", cvss_version(v).split('.').next().unwrap_or("3"));
        attributes.push(json!({ "key": format!("{prefix}_VECTOR"), "value": v }));
        if let Some(s) = f.cvss_score {
            attributes.push(json!({ "key": format!("{prefix}_SCORE"), "value": format!("{s:.1}") }));
        }
    }
    if let Some(fix) = &f.fixed_in {
        attributes.push(json!({ "key": "fixed_in_version", "value": fix }));
    }
    json!({
        "name": f.name,
        "description": f.description,
        "uri": f.uri,
        "severity": f.severity.as_str(),
        "attributes": attributes,
    })
}

/// Splits an rpm-style `epoch:version-release` for `vulnerablePackages` (dpkg versions keep
/// their revision in `version`, as Inspector reports them).
fn epoch_version(version: &str) -> (Option<i64>, &str) {
    match version.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().ok(), rest),
        _ => (None, version),
    }
}

fn date_seconds(s: &Option<String>) -> Option<f64> {
    s.as_deref().and_then(berth_iam::parse_date).map(|ns| (ns / 1_000_000) as f64 / 1000.0)
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn enhanced_finding(
        &self,
        repo: &str,
        digest: &str,
        tags: &[String],
        pushed_at: Option<f64>,
        scan: &ImageScan,
        report: &ScanReport,
        f: &Finding,
    ) -> Value {
        let region = self.app.identity.region();
        let account = self.registry_id();
        let observed = scan.completed_at.map(seconds);
        let id = hex::encode(
            &Sha256::digest(format!("{repo}\n{digest}\n{}\n{}\n{}", f.name, f.package_name, f.file_path))[..16],
        );
        let (epoch, version) = epoch_version(&f.package_version);
        // rpm packages report `version` and `release` apart, as Inspector does.
        let rpm = matches!(f.ecosystem.split(':').next(), Some("Rocky Linux" | "AlmaLinux" | "Red Hat"));
        let (version, release) = match version.rsplit_once('-') {
            Some((v, r)) if rpm => (v, Some(r)),
            _ => (version, None),
        };
        let mut package = json!({
            "name": f.package_name,
            "version": version,
            "packageManager": f.package_manager,
            "filePath": f.file_path,
        });
        if let Some(e) = epoch {
            package["epoch"] = e.into();
        }
        if let Some(r) = release {
            package["release"] = r.into();
        }
        if let Some(a) = &f.arch {
            package["arch"] = a.clone().into();
        }
        if let Some(layer) = report.layers.get(f.layer) {
            package["sourceLayerHash"] = layer.clone().into();
        }
        if let Some(fix) = &f.fixed_in {
            package["fixedInVersion"] = fix.clone().into();
        }
        let mut details = json!({
            "vulnerabilityId": f.name,
            "source": f.ecosystem.split(':').next().unwrap_or("OSV"),
            "sourceUrl": f.uri,
            "vendorSeverity": f.severity.as_str(),
            "referenceUrls": f.references,
            "relatedVulnerabilities": f.aliases.iter().chain(std::iter::once(&f.record_id)).filter(|a| **a != f.name).collect::<Vec<_>>(),
            "vulnerablePackages": [package],
        });
        if let Some(t) = date_seconds(&f.published) {
            details["vendorCreatedAt"] = t.into();
        }
        if let Some(t) = date_seconds(&f.modified) {
            details["vendorUpdatedAt"] = t.into();
        }
        let mut image = json!({
            "imageHash": digest,
            "imageTags": tags,
            "registry": account,
            "repositoryName": repo,
        });
        if let Some(a) = &report.architecture {
            image["architecture"] = a.clone().into();
        }
        if let Some(a) = &report.author {
            image["author"] = a.clone().into();
        }
        if let Some(p) = report.distribution.as_ref().or(report.os.as_ref()) {
            image["platform"] = p.clone().into();
        }
        if let Some(t) = pushed_at {
            image["pushedAt"] = t.into();
        }
        let recommendation = match &f.fixed_in {
            Some(fix) => format!("Upgrade {} to {fix} or later.", f.package_name),
            None => "None Provided".to_string(),
        };
        let mut v = json!({
            "awsAccountId": account,
            "findingArn": format!("arn:aws:inspector2:{region}:{account}:finding/{id}"),
            "description": f.description,
            "title": format!("{} - {}", f.name, f.package_name),
            "type": "PACKAGE_VULNERABILITY",
            "status": "ACTIVE",
            "severity": f.severity.as_str(),
            "fixAvailable": if f.fixed_in.is_some() { "YES" } else { "NO" },
            "exploitAvailable": "NO",
            "packageVulnerabilityDetails": details,
            "remediation": { "recommendation": { "text": recommendation } },
            "resources": [{
                "id": format!("arn:aws:ecr:{region}:{account}:repository/{repo}/{digest}"),
                "type": "AWS_ECR_CONTAINER_IMAGE",
                "details": { "awsEcrContainerImage": image },
            }],
        });
        if let Some(t) = observed {
            v["firstObservedAt"] = t.into();
            v["lastObservedAt"] = t.into();
            v["updatedAt"] = t.into();
        }
        if let (Some(score), Some(vector)) = (f.cvss_score, &f.cvss_vector) {
            let version = cvss_version(vector);
            v["score"] = score.into();
            v["scoreDetails"] = json!({ "cvss": { "score": score, "scoringVector": vector, "scoreSource": "OSV", "version": version, "adjustments": [] } });
            v["packageVulnerabilityDetails"]["cvss"] =
                json!([{ "baseScore": score, "scoringVector": vector, "source": "OSV", "version": version }]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_cvss_names() {
        assert_eq!(epoch_version("1:1.2.13.dfsg-1"), (Some(1), "1.2.13.dfsg-1"));
        assert_eq!(epoch_version("3.0.11-1~deb12u1"), (None, "3.0.11-1~deb12u1"));
        assert_eq!(cvss_version("CVSS:3.1/AV:N"), "3.1");
        assert_eq!(cvss_version("CVSS:4.0/AV:N"), "4.0");
        assert_eq!(cvss_version("AV:N/AC:L/Au:N/C:P/I:P/A:P"), "2.0");
    }
}
