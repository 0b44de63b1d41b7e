//! Parser tests on fixtures written out here, shaped like the real files.

use super::*;

#[test]
fn os_release_debian_ubuntu_alpine() {
    let debian = os_release::parse(
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
         VERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
         HOME_URL=\"https://www.debian.org/\"\n",
    );
    assert_eq!(debian.id, "debian");
    assert_eq!(debian.version_id.as_deref(), Some("12"));
    assert_eq!(debian.version_codename.as_deref(), Some("bookworm"));
    assert_eq!(debian.pretty_name.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(debian.osv_ecosystem().unwrap().to_string(), "Debian:12");

    let ubuntu = os_release::parse(
        "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n\
         VERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nID=ubuntu\nID_LIKE=debian\n",
    );
    assert_eq!(ubuntu.id_like, vec!["debian".to_string()]);
    assert_eq!(ubuntu.osv_ecosystem().unwrap().to_string(), "Ubuntu:22.04");

    let alpine =
        os_release::parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n");
    assert_eq!(alpine.ecosystem(), Some(crate::Ecosystem::Alpine));
    assert_eq!(alpine.osv_ecosystem().unwrap().to_string(), "Alpine:v3.19");
}

#[test]
fn os_release_rpm_distributions_and_unknowns() {
    let rocky =
        os_release::parse("NAME=\"Rocky Linux\"\nVERSION_ID=\"9.3\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n");
    assert_eq!(rocky.osv_ecosystem().unwrap().to_string(), "Rocky Linux:9");
    let alma = os_release::parse("ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n");
    assert_eq!(alma.osv_ecosystem().unwrap().to_string(), "AlmaLinux:9");
    let rhel = os_release::parse("ID=\"rhel\"\nVERSION_ID=\"9.3\"\n");
    assert_eq!(rhel.osv_ecosystem().unwrap().to_string(), "Red Hat:9.3");
    // A derivative takes its parent's ecosystem but not its own version numbering.
    let mint = os_release::parse("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"21.3\"\n");
    assert_eq!(mint.osv_ecosystem().unwrap().to_string(), "Ubuntu");
    // Debian sid has no VERSION_ID.
    let sid = os_release::parse("PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nID=debian\n");
    assert_eq!(sid.osv_ecosystem().unwrap().to_string(), "Debian");
    let unknown = os_release::parse("# comment\nID=plan9\nVERSION_ID='4'\nbroken line\n");
    assert_eq!(unknown.version_id.as_deref(), Some("4"));
    assert_eq!(unknown.osv_ecosystem(), None);
}

const DPKG_STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6192
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation of the SSL
 and TLS cryptographic protocols.

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
Description: GCC support library

Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: held-pkg
Status: hold ok installed
Architecture: amd64
Version: 2.0-1

Package: half-installed
Status: install reinstreq half-installed
Version: 3.0-1
";

#[test]
fn dpkg_status_paragraphs() {
    let packages = dpkg::parse_status(DPKG_STATUS, "Debian:12");
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["libssl3", "libgcc-s1", "bsdutils", "tzdata", "held-pkg"]);

    let libssl = &packages[0];
    assert_eq!(libssl.ecosystem, "Debian:12");
    assert_eq!(libssl.version, "3.0.11-1~deb12u2");
    assert_eq!(libssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(libssl.source_version, None);
    assert_eq!(libssl.arch.as_deref(), Some("amd64"));
    assert_eq!((libssl.osv_name(), libssl.osv_version()), ("openssl", "3.0.11-1~deb12u2"));

    // Source version equal to the binary's: not repeated.
    assert_eq!(packages[1].source_name.as_deref(), Some("gcc-12"));
    assert_eq!(packages[1].source_version, None);

    // A binNMU: the source version differs, and matching uses it.
    let bsdutils = &packages[2];
    assert_eq!(bsdutils.source_version.as_deref(), Some("2.38.1-5"));
    assert_eq!((bsdutils.osv_name(), bsdutils.osv_version()), ("util-linux", "2.38.1-5"));

    // No Source field: the source is the binary.
    assert_eq!(packages[3].source_name, None);
    assert_eq!(packages[3].osv_name(), "tzdata");
}

#[test]
fn dpkg_status_d_file_without_status() {
    // Distroless images keep one file per package in status.d, sometimes without Status.
    let text = "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n";
    let packages = dpkg::parse_status(text, "Debian:12");
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].version, "12.4+deb12u5");
    assert!(dpkg::parse_status("", "Debian:12").is_empty());
}

#[test]
fn apk_installed_database() {
    let text = "\
C:Q1abcdefghijklmnopqrstuvwxyz0123=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407588
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705855442
F:lib
R:ld-musl-x86_64.so.1

P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl
D:so:libc.musl-x86_64.so.1

P:busybox-binsh
V:1.36.1-r15
A:x86_64
";
    let packages = apk::parse_installed(text, "Alpine:v3.19");
    assert_eq!(packages.len(), 3);
    assert_eq!(packages[0].name, "musl");
    assert_eq!(packages[0].version, "1.2.4_git20230717-r4");
    assert_eq!(packages[0].arch.as_deref(), Some("x86_64"));
    assert_eq!(packages[1].source_name.as_deref(), Some("openssl"));
    assert_eq!((packages[1].osv_name(), packages[1].osv_version()), ("openssl", "3.1.4-r5"));
    assert_eq!(packages[2].source_name, None);
    assert_eq!(packages[2].ecosystem, "Alpine:v3.19");
}

#[test]
fn cargo_lock_versions_1_to_4() {
    let v3 = r#"
# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "berth-vuln"
version = "0.1.0"
dependencies = ["semver"]

[[package]]
name = "semver"
version = "1.0.28"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "0000000000000000000000000000000000000000000000000000000000000000"

[[package]]
name = "private"
version = "0.3.0"
source = "git+https://example.com/private.git#0123456789abcdef"

[[package]]
name = "hyper"
version = "0.10.1"
source = "sparse+https://index.crates.io/"
"#;
    let packages = cargo::parse_lock(v3).unwrap();
    let got: Vec<(&str, &str)> = packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    assert_eq!(got, vec![("semver", "1.0.28"), ("hyper", "0.10.1")]);
    assert!(packages.iter().all(|p| p.ecosystem == "crates.io"));

    // Version 1: no `version` key, checksums in [metadata].
    let v1 = r#"
[[package]]
name = "libc"
version = "0.2.40"
source = "registry+https://github.com/rust-lang/crates.io-index"

[metadata]
"checksum libc 0.2.40 (registry+https://github.com/rust-lang/crates.io-index)" = "abc"
"#;
    assert_eq!(cargo::parse_lock(v1).unwrap().len(), 1);
    assert!(cargo::parse_lock("version = 4\n").unwrap().is_empty());
    assert!(cargo::parse_lock("[[package]\nname=").is_err());
}

#[test]
fn npm_lockfile_v2_v3_packages_map() {
    let text = r#"{
      "name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
      "packages": {
        "": {"name": "app", "version": "1.0.0", "dependencies": {"lodash": "^4.17.0"}},
        "node_modules/lodash": {"version": "4.17.20", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"},
        "node_modules/@babel/core": {"version": "7.24.0"},
        "node_modules/a/node_modules/minimist": {"version": "0.0.8", "dev": true},
        "node_modules/my-alias": {"name": "real-pkg", "version": "2.0.0"},
        "node_modules/local-lib": {"resolved": "packages/local-lib", "link": true},
        "packages/local-lib": {"name": "local-lib", "version": "0.0.1"},
        "node_modules/from-git": {"version": "git+ssh://git@github.com/x/y.git#abc"}
      }
    }"#;
    let packages = npm::parse_package_lock(text).unwrap();
    let got: Vec<(&str, &str, &str)> =
        packages.iter().map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_deref().unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("@babel/core", "7.24.0", "node_modules/@babel/core"),
            ("minimist", "0.0.8", "node_modules/a/node_modules/minimist"),
            ("lodash", "4.17.20", "node_modules/lodash"),
            ("real-pkg", "2.0.0", "node_modules/my-alias"),
        ]
    );
    assert!(packages.iter().all(|p| p.ecosystem == "npm"));
}

#[test]
fn npm_lockfile_v1_dependencies_tree() {
    let text = r#"{
      "name": "app", "lockfileVersion": 1,
      "dependencies": {
        "express": {"version": "4.17.1", "dependencies": {
            "debug": {"version": "2.6.9"}
        }},
        "left-pad": {"version": "1.3.0"},
        "local": {"version": "file:../local"}
      }
    }"#;
    let packages = npm::parse_package_lock(text).unwrap();
    let got: Vec<(&str, &str, &str)> =
        packages.iter().map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_deref().unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("express", "4.17.1", "node_modules/express"),
            ("debug", "2.6.9", "node_modules/express/node_modules/debug"),
            ("left-pad", "1.3.0", "node_modules/left-pad"),
        ]
    );
    assert!(npm::parse_package_lock("[1, 2]").is_err());
    assert!(npm::parse_package_lock("{").is_err());
}

#[test]
fn python_dist_info_metadata() {
    let text = "Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3.1\nSummary: YAML parser and emitter for Python\n\
                Home-page: https://pyyaml.org/\nClassifier: Programming Language :: Python\n\
                \nPyYAML is a YAML parser.\nName: not-a-header\n";
    let package = python::parse_metadata(text).unwrap();
    assert_eq!(
        (package.ecosystem.as_str(), package.name.as_str(), package.version.as_str()),
        ("PyPI", "PyYAML", "5.3.1")
    );
    assert!(python::parse_metadata("Metadata-Version: 2.1\nName: x\n").is_none());
    assert!(python::parse_metadata("").is_none());
}

#[test]
fn go_mod_requires_and_replaces() {
    let text = r#"module example.com/app

go 1.21

toolchain go1.21.5

require github.com/pkg/errors v0.9.1

require (
	golang.org/x/net v0.17.0 // indirect
	golang.org/x/text v0.13.0
	github.com/old/thing v1.0.0
	example.com/local v0.0.0-00010101000000-000000000000
	github.com/gorilla/websocket v1.4.2 // indirect
	github.com/hashicorp/consul v1.2.3+incompatible
)

replace github.com/old/thing => github.com/new/thing v1.1.0

replace (
	example.com/local => ../local
	github.com/gorilla/websocket v1.4.2 => github.com/gorilla/websocket v1.5.0
	github.com/gorilla/websocket v1.0.0 => github.com/gorilla/websocket v1.0.1
)

exclude golang.org/x/text v0.12.0

require(
	github.com/no/space v1.0.0
)
"#;
    let packages = gomod::parse(text);
    let got: Vec<(&str, &str)> = packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("github.com/pkg/errors", "v0.9.1"),
            ("golang.org/x/net", "v0.17.0"),
            ("golang.org/x/text", "v0.13.0"),
            ("github.com/new/thing", "v1.1.0"),
            ("github.com/gorilla/websocket", "v1.5.0"),
            ("github.com/hashicorp/consul", "v1.2.3+incompatible"),
            ("github.com/no/space", "v1.0.0"),
        ]
    );
    assert!(packages.iter().all(|p| p.ecosystem == "Go"));
}

proptest::proptest! {
    /// Parsers take whatever a layer holds: they may reject it, never panic on it.
    #[test]
    fn parsers_never_panic(text in "(?s).{0,300}") {
        let _ = os_release::parse(&text);
        let _ = dpkg::parse_status(&text, "Debian:12");
        let _ = apk::parse_installed(&text, "Alpine:v3.19");
        let _ = cargo::parse_lock(&text);
        let _ = npm::parse_package_lock(&text);
        let _ = python::parse_metadata(&text);
        let _ = gomod::parse(&text);
    }

    #[test]
    fn line_based_parsers_never_panic(lines in proptest::collection::vec("[A-Za-zé]{0,2}[:= ]?[ -~é]{0,20}", 0..20)) {
        let text = lines.join("\n");
        let _ = os_release::parse(&text);
        let _ = dpkg::parse_status(&text, "Debian:12");
        let _ = apk::parse_installed(&text, "Alpine:v3.19");
        let _ = python::parse_metadata(&text);
        let _ = gomod::parse(&text);
    }
}
