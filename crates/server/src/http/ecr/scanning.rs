//! The scan operations: `StartImageScan` and `DescribeImageScanFindings`. Findings are stored
//! once per scan (see `berth_registry::scan::ScanReport`) and rendered here in ECR's two
//! shapes: basic `findings` for BASIC scans, `enhancedFindings` (Inspector's finding format)
//! for ENHANCED.

use berth_meta::{ImageScan, ScanType};
use berth_registry::RegistryError;
use berth_registry::scan::ScanReport;
use berth_vuln::findings::Finding;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::shapes::{FindingsSummary, ImageId, ImageScanStatus, image_not_found, seconds};
use super::{Ctx, EcrError, page_size};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartImageScanInput {
    repository_name: String,
    image_id: ImageId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartImageScanOutput {
    registry_id: String,
    repository_name: String,
    image_id: ImageId,
    image_scan_status: ImageScanStatus,
}

pub(super) async fn start_image_scan(
    ctx: &Ctx<'_>,
    input: StartImageScanInput,
) -> Result<StartImageScanOutput, EcrError> {
    let repo_name = &input.repository_name;
    ctx.existing_repository(repo_name).await?;
    let digest = ctx.resolve_one(repo_name, &input.image_id).await?;
    ctx.app.registry.start_image_scan(repo_name, &digest).await.map_err(|e| match e {
        RegistryError::ManifestNotFound { .. } => image_not_found(ctx, repo_name, &input.image_id),
        other => other.into(),
    })?;
    Ok(StartImageScanOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: repo_name.clone(),
        image_id: ImageId::resolved(&digest, &input.image_id),
        image_scan_status: ImageScanStatus { status: "IN_PROGRESS".into(), description: "The scan is queued.".into() },
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageScanFindingsInput {
    repository_name: String,
    image_id: ImageId,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// `ImageScanFindings`: the summary, and one page of findings in the scan type's shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageScanFindings {
    #[serde(flatten)]
    summary: FindingsSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    findings: Option<Vec<BasicFinding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enhanced_findings: Option<Vec<EnhancedFinding>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageScanFindingsOutput {
    registry_id: String,
    repository_name: String,
    image_id: ImageId,
    image_scan_status: ImageScanStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_scan_findings: Option<ImageScanFindings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn describe_image_scan_findings(
    ctx: &Ctx<'_>,
    input: DescribeImageScanFindingsInput,
) -> Result<DescribeImageScanFindingsOutput, EcrError> {
    let repo_name = &input.repository_name;
    ctx.existing_repository(repo_name).await?;
    let limit = page_size(input.max_results, 100) as usize;
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
    let mut out = DescribeImageScanFindingsOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: repo_name.clone(),
        image_id: ImageId::resolved(&digest, &input.image_id),
        image_scan_status: ImageScanStatus::of(&scan),
        image_scan_findings: None,
        next_token: None,
    };
    let Some(summary) = FindingsSummary::of(&scan) else { return Ok(out) };
    let report: ScanReport = match scan.findings.as_deref() {
        Some(text) => serde_json::from_str(text).map_err(EcrError::server)?,
        None => ScanReport::default(),
    };
    let page: Vec<&Finding> = report.findings.iter().skip(offset).take(limit).collect();
    let mut findings = ImageScanFindings { summary, findings: None, enhanced_findings: None };
    if scan.scan_type == ScanType::Enhanced {
        let image = ctx.app.registry.image(repo_name, &digest).await?;
        let image = ImageFacts {
            repository: repo_name,
            digest: digest.as_str(),
            tags: image.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
            pushed_at: image.as_ref().map(|i| seconds(i.pushed_at)),
        };
        findings.enhanced_findings =
            Some(page.iter().map(|f| ctx.enhanced_finding(&image, &scan, &report, f)).collect());
    } else {
        findings.findings = Some(page.iter().map(|f| BasicFinding::of(f)).collect());
    }
    out.image_scan_findings = Some(findings);
    let next = offset.saturating_add(limit);
    if next < report.findings.len() {
        out.next_token = Some(ctx.encode_token(&next.to_string()));
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

/// `Attribute`: a key and its value.
#[derive(Serialize)]
pub(super) struct Attribute {
    key: String,
    value: String,
}

/// `ImageScanFinding`, the basic scan's shape.
#[derive(Serialize)]
pub(super) struct BasicFinding {
    name: String,
    description: String,
    uri: String,
    severity: &'static str,
    attributes: Vec<Attribute>,
}

impl BasicFinding {
    fn of(f: &Finding) -> Self {
        let attribute = |key: &str, value: &str| Attribute { key: key.to_string(), value: value.to_string() };
        let mut attributes =
            vec![attribute("package_version", &f.package_version), attribute("package_name", &f.package_name)];
        if let Some(v) = &f.cvss_vector {
            let prefix = format!("CVSS{}", cvss_version(v).split('.').next().unwrap_or("3"));
            attributes.push(attribute(&format!("{prefix}_VECTOR"), v));
            if let Some(s) = f.cvss_score {
                attributes.push(attribute(&format!("{prefix}_SCORE"), &format!("{s:.1}")));
            }
        }
        if let Some(fix) = &f.fixed_in {
            attributes.push(attribute("fixed_in_version", fix));
        }
        BasicFinding {
            name: f.name.clone(),
            description: f.description.clone(),
            uri: f.uri.clone(),
            severity: f.severity.as_str(),
            attributes,
        }
    }
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

/// What an enhanced finding says about the image it was found in.
struct ImageFacts<'a> {
    repository: &'a str,
    digest: &'a str,
    tags: Vec<String>,
    pushed_at: Option<f64>,
}

/// `VulnerablePackage`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VulnerablePackage {
    name: String,
    version: String,
    package_manager: String,
    file_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_layer_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed_in_version: Option<String>,
}

/// `CvssScore` of `packageVulnerabilityDetails`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CvssScore {
    base_score: f64,
    scoring_vector: String,
    source: &'static str,
    version: String,
}

/// `PackageVulnerabilityDetails`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PackageVulnerabilityDetails {
    vulnerability_id: String,
    source: String,
    source_url: String,
    vendor_severity: &'static str,
    reference_urls: Vec<String>,
    related_vulnerabilities: Vec<String>,
    vulnerable_packages: Vec<VulnerablePackage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_created_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_updated_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cvss: Option<Vec<CvssScore>>,
}

/// `AwsEcrContainerImageDetails`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerImageDetails {
    image_hash: String,
    image_tags: Vec<String>,
    registry: String,
    repository_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pushed_at: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceDetails {
    aws_ecr_container_image: ContainerImageDetails,
}

/// `Resource`.
#[derive(Serialize)]
pub(super) struct Resource {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    details: ResourceDetails,
}

#[derive(Serialize)]
pub(super) struct RecommendationText {
    text: String,
}

#[derive(Serialize)]
pub(super) struct Remediation {
    recommendation: RecommendationText,
}

/// `CvssScoreDetails` under `scoreDetails.cvss`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CvssScoreDetails {
    score: f64,
    scoring_vector: String,
    score_source: &'static str,
    version: String,
    adjustments: Vec<()>,
}

#[derive(Serialize)]
pub(super) struct ScoreDetails {
    cvss: CvssScoreDetails,
}

/// `EnhancedImageScanFinding`: Inspector's finding format.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EnhancedFinding {
    aws_account_id: String,
    finding_arn: String,
    description: String,
    title: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    severity: &'static str,
    fix_available: &'static str,
    exploit_available: &'static str,
    package_vulnerability_details: PackageVulnerabilityDetails,
    remediation: Remediation,
    resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_observed_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_observed_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score_details: Option<ScoreDetails>,
}

impl Ctx<'_> {
    fn enhanced_finding(
        &self,
        image: &ImageFacts<'_>,
        scan: &ImageScan,
        report: &ScanReport,
        f: &Finding,
    ) -> EnhancedFinding {
        let region = self.app.identity.region();
        let account = self.registry_id();
        let (repo, digest) = (image.repository, image.digest);
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
        let package = VulnerablePackage {
            name: f.package_name.clone(),
            version: version.to_string(),
            package_manager: f.package_manager.clone(),
            file_path: f.file_path.clone(),
            epoch,
            release: release.map(str::to_string),
            arch: f.arch.clone(),
            source_layer_hash: report.layers.get(f.layer).cloned(),
            fixed_in_version: f.fixed_in.clone(),
        };
        let cvss = match (f.cvss_score, &f.cvss_vector) {
            (Some(score), Some(vector)) => Some((score, vector.clone(), cvss_version(vector))),
            _ => None,
        };
        let details = PackageVulnerabilityDetails {
            vulnerability_id: f.name.clone(),
            source: f.ecosystem.split(':').next().unwrap_or("OSV").to_string(),
            source_url: f.uri.clone(),
            vendor_severity: f.severity.as_str(),
            reference_urls: f.references.clone(),
            related_vulnerabilities: f
                .aliases
                .iter()
                .chain(std::iter::once(&f.record_id))
                .filter(|a| **a != f.name)
                .cloned()
                .collect(),
            vulnerable_packages: vec![package],
            vendor_created_at: date_seconds(&f.published),
            vendor_updated_at: date_seconds(&f.modified),
            cvss: cvss.as_ref().map(|(score, vector, version)| {
                vec![CvssScore {
                    base_score: *score,
                    scoring_vector: vector.clone(),
                    source: "OSV",
                    version: version.clone(),
                }]
            }),
        };
        let container = ContainerImageDetails {
            image_hash: digest.to_string(),
            image_tags: image.tags.clone(),
            registry: account.to_string(),
            repository_name: repo.to_string(),
            architecture: report.architecture.clone(),
            author: report.author.clone(),
            platform: report.distribution.as_ref().or(report.os.as_ref()).cloned(),
            pushed_at: image.pushed_at,
        };
        let recommendation = match &f.fixed_in {
            Some(fix) => format!("Upgrade {} to {fix} or later.", f.package_name),
            None => "None Provided".to_string(),
        };
        EnhancedFinding {
            aws_account_id: account.to_string(),
            finding_arn: format!("arn:aws:inspector2:{region}:{account}:finding/{id}"),
            description: f.description.clone(),
            title: format!("{} - {}", f.name, f.package_name),
            kind: "PACKAGE_VULNERABILITY",
            status: "ACTIVE",
            severity: f.severity.as_str(),
            fix_available: if f.fixed_in.is_some() { "YES" } else { "NO" },
            exploit_available: "NO",
            package_vulnerability_details: details,
            remediation: Remediation { recommendation: RecommendationText { text: recommendation } },
            resources: vec![Resource {
                id: format!("arn:aws:ecr:{region}:{account}:repository/{repo}/{digest}"),
                kind: "AWS_ECR_CONTAINER_IMAGE",
                details: ResourceDetails { aws_ecr_container_image: container },
            }],
            first_observed_at: observed,
            last_observed_at: observed,
            updated_at: observed,
            score: cvss.as_ref().map(|(score, _, _)| *score),
            score_details: cvss.map(|(score, vector, version)| ScoreDetails {
                cvss: CvssScoreDetails {
                    score,
                    scoring_vector: vector,
                    score_source: "OSV",
                    version,
                    adjustments: Vec::new(),
                },
            }),
        }
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
