//! An image's inventory as a CycloneDX 1.5 SBOM (JSON), with package URLs. The document is a
//! function of the image and its packages only (no timestamp, a serial number derived from the
//! image digest), so scanning an image again yields the same bytes and the same referrer.

use serde_json::{Value, json};

use crate::ecosystem::Ecosystem;
use crate::image::{Inventory, InventoryPackage};

/// The media type of the document and of the referrer's `artifactType`.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// Percent-encodes a purl name or version segment (RFC 3986 unreserved characters stay).
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package URL (<https://github.com/package-url/purl-spec>) of an inventoried package.
pub fn purl(p: &InventoryPackage, os: Option<&crate::inventory::os_release::OsRelease>) -> Option<String> {
    let pkg = &p.package;
    let eco = crate::EcosystemId::parse(&pkg.ecosystem);
    let name = purl_escape(&pkg.name);
    let version = purl_escape(&pkg.version);
    let distro = os.map(|o| format!("{}-{}", o.id, o.version_id.clone().unwrap_or_default()));
    let mut qualifiers = Vec::new();
    if let Some(arch) = &pkg.arch {
        qualifiers.push(format!("arch={}", purl_escape(arch)));
    }
    let (kind, namespace) = match eco.ecosystem {
        Ecosystem::Debian | Ecosystem::Ubuntu => ("deb", Some(os.map_or("debian".to_string(), |o| o.id.clone()))),
        Ecosystem::Alpine | Ecosystem::Wolfi | Ecosystem::Chainguard => {
            ("apk", Some(os.map_or("alpine".to_string(), |o| o.id.clone())))
        }
        Ecosystem::RockyLinux | Ecosystem::AlmaLinux | Ecosystem::RedHat => {
            ("rpm", Some(os.map_or("redhat".to_string(), |o| o.id.clone())))
        }
        Ecosystem::CratesIo => ("cargo", None),
        Ecosystem::Npm => ("npm", None),
        Ecosystem::PyPI => ("pypi", None),
        Ecosystem::Go => ("golang", None),
        Ecosystem::Maven => ("maven", None),
        Ecosystem::Other(_) => return None,
    };
    if namespace.is_some() {
        if let Some(d) = distro {
            qualifiers.push(format!("distro={}", purl_escape(&d)));
        }
        if let Some(src) = &pkg.source_name {
            qualifiers.push(format!("upstream={}", purl_escape(src)));
        }
    }
    // npm scopes and Go module paths are namespaces: their `/` stays a separator.
    let name = match eco.ecosystem {
        Ecosystem::Npm | Ecosystem::Go => pkg.name.split('/').map(purl_escape).collect::<Vec<_>>().join("/"),
        _ => name,
    };
    let mut out = match namespace {
        Some(ns) => format!("pkg:{kind}/{}/{name}@{version}", purl_escape(&ns)),
        None => format!("pkg:{kind}/{name}@{version}"),
    };
    if !qualifiers.is_empty() {
        qualifiers.sort();
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    Some(out)
}

/// A UUID-shaped serial number from the image digest's hex (RFC 4122 variant bits set).
fn serial(image_digest: &str) -> String {
    let hex: String =
        image_digest.split(':').next_back().unwrap_or("").chars().filter(char::is_ascii_hexdigit).collect();
    let hex = format!("{hex:0<32}");
    let h = &hex[..32];
    format!("urn:uuid:{}-{}-5{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// The CycloneDX document for an image (`repository@image_digest`).
pub fn cyclonedx(inventory: &Inventory, repository: &str, image_digest: &str) -> Value {
    let os = inventory.os.as_ref();
    let mut components: Vec<Value> = Vec::new();
    if let Some(o) = os {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": "os",
            "name": o.id,
            "version": o.version_id.clone().unwrap_or_default(),
            "description": o.pretty_name.clone().unwrap_or_default(),
        }));
    }
    for (i, p) in inventory.packages.iter().enumerate() {
        let mut c = json!({
            "type": "library",
            "bom-ref": format!("pkg-{i}"),
            "name": p.package.name,
            "version": p.package.version,
            "properties": [
                { "name": "berth:package:manager", "value": p.package_manager },
                { "name": "berth:package:ecosystem", "value": p.package.ecosystem },
                { "name": "berth:file", "value": p.file_path },
                { "name": "berth:layer", "value": p.layer.to_string() },
            ],
        });
        if let Some(purl) = purl(p, os) {
            c["purl"] = Value::String(purl);
        }
        components.push(c);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial(image_digest),
        "version": 1,
        "metadata": {
            // No version: the document must stay the same bytes across upgrades of Berth.
            "tools": { "components": [ { "type": "application", "name": "berth" } ] },
            "component": { "type": "container", "bom-ref": "image", "name": repository, "version": image_digest },
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::FileKind;

    #[test]
    fn purls_and_document() {
        let os = b"ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n";
        let status = b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u1\nArchitecture: amd64\n";
        let lock = br#"{"lockfileVersion":3,"packages":{"":{},"node_modules/@babel/core":{"version":"7.0.0"}}}"#;
        let inv = Inventory::from_files(
            [
                ("etc/os-release", 0, FileKind::OsRelease, &os[..]),
                ("var/lib/dpkg/status", 0, FileKind::DpkgStatus, &status[..]),
                ("srv/package-lock.json", 1, FileKind::NpmLock, &lock[..]),
            ],
            Vec::new(),
        );
        let purls: Vec<String> = inv.packages.iter().filter_map(|p| purl(p, inv.os.as_ref())).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl".to_string(),
                "pkg:npm/%40babel/core@7.0.0".to_string(),
            ]
        );
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let doc = cyclonedx(&inv, "app", digest);
        assert_eq!(doc["bomFormat"], "CycloneDX");
        assert_eq!(doc["serialNumber"], "urn:uuid:01234567-89ab-5def-8123-456789abcdef");
        assert_eq!(doc["components"].as_array().unwrap().len(), 3);
        assert_eq!(doc, cyclonedx(&inv, "app", digest), "deterministic");
    }
}
