//! dpkg's database: `/var/lib/dpkg/status`, and the one-paragraph-per-file
//! `/var/lib/dpkg/status.d/*` of distroless images (same format).

use super::{Package, field, rfc822_paragraphs};

/// Whether a `Status` value (`want flag status`) says the package is installed: the last
/// word is `installed` and the flag is `ok` (`install ok installed`, and also
/// `hold ok installed` for held packages).
fn is_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), [_, "ok", "installed"])
}

/// Parses dpkg status text into installed packages of `ecosystem` (`Debian:12`,
/// `Ubuntu:22.04`, as [`super::os_release`] decided).
///
/// Paragraphs whose `Status` is not installed are skipped; a paragraph without `Status`
/// (as `status.d` files may have) is taken as installed. `Source: name (version)` gives the
/// source package and, when it has one, the source version. Without `Source` the source
/// package has the binary's name, and `source_name` stays `None`.
pub fn parse_status(text: &str, ecosystem: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for paragraph in rfc822_paragraphs(text) {
        if field(&paragraph, "Status").is_some_and(|s| !is_installed(s)) {
            continue;
        }
        let (Some(name), Some(version)) = (field(&paragraph, "Package"), field(&paragraph, "Version")) else {
            continue;
        };
        let mut package = Package::new(ecosystem, name, version);
        package.arch = field(&paragraph, "Architecture").map(str::to_string);
        if let Some(source) = field(&paragraph, "Source") {
            let (source_name, source_version) = match source.split_once('(') {
                Some((n, v)) => (n.trim(), Some(v.trim_end_matches(')').trim())),
                None => (source.trim(), None),
            };
            package.source_name = Some(source_name.to_string());
            package.source_version = source_version.filter(|v| !v.is_empty() && *v != version).map(str::to_string);
        }
        out.push(package);
    }
    out
}
