//! Python distribution metadata: `*.dist-info/METADATA` (wheels) and `PKG-INFO` (eggs,
//! sdists), RFC 822 headers followed by a free-form body.

use super::{Package, field, rfc822_paragraphs};

/// Reads `Name` and `Version` from the header block. The name is kept as written;
/// matching normalizes it (PEP 503).
pub fn parse_metadata(text: &str) -> Option<Package> {
    let headers = rfc822_paragraphs(text).into_iter().next()?;
    let name = field(&headers, "Name")?;
    let version = field(&headers, "Version")?;
    Some(Package::new("PyPI", name, version))
}
