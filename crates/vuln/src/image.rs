//! From an image's layers to its package inventory, without the IO: which files a scan keeps,
//! how layers stack (later layers replace files, whiteouts delete them), and the inventory the
//! surviving files describe. The caller reads each layer's tar stream in order and feeds the
//! entries to [`ImageFiles`].

use std::collections::BTreeMap;

use crate::inventory::{Package, apk, cargo, dpkg, gomod, npm, os_release, python};

/// The kinds of files that list packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    OsRelease,
    DpkgStatus,
    ApkInstalled,
    /// The SQLite rpm database; the caller spools it to a file (SQLite opens files).
    RpmSqlite,
    CargoLock,
    NpmLock,
    PythonMetadata,
    GoMod,
}

/// Largest text file a scan keeps (a Debian status file with thousands of packages is a few
/// MiB); larger ones are skipped, not truncated.
pub const MAX_TEXT_FILE: u64 = 64 << 20;

/// Normalizes a tar entry path: no leading `./` or `/`, no trailing `/`.
pub fn normalize_path(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    p.trim_end_matches('/')
}

/// What kind of package list the file at `path` (normalized) is, if any.
pub fn classify(path: &str) -> Option<FileKind> {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    Some(match (dir, base) {
        ("etc" | "usr/lib", "os-release") => FileKind::OsRelease,
        ("var/lib/dpkg", "status") => FileKind::DpkgStatus,
        ("var/lib/dpkg/status.d", b) if !b.ends_with(".md5sums") => FileKind::DpkgStatus,
        ("lib/apk/db", "installed") => FileKind::ApkInstalled,
        ("var/lib/rpm" | "usr/lib/sysimage/rpm", "rpmdb.sqlite") => FileKind::RpmSqlite,
        // Lockfiles and module files of dependency caches describe what was downloaded, not
        // what was built: skipped.
        _ if is_dependency_cache(dir) => return None,
        (_, "Cargo.lock") => FileKind::CargoLock,
        (_, "package-lock.json") if !dir.split('/').any(|c| c == "node_modules") => FileKind::NpmLock,
        (d, "METADATA") if d.ends_with(".dist-info") => FileKind::PythonMetadata,
        (d, "PKG-INFO") if d.ends_with(".egg-info") => FileKind::PythonMetadata,
        (_, "go.mod") => FileKind::GoMod,
        _ => return None,
    })
}

/// Whether `dir` lies in a package manager's download cache or a vendored tree.
fn is_dependency_cache(dir: &str) -> bool {
    let padded = format!("/{dir}/");
    ["/go/pkg/mod/", "/.cargo/registry/", "/.cargo/git/", "/vendor/"].iter().any(|c| padded.contains(c))
}

/// The files a scan keeps, as the stacked layers leave them. `C` is the content: bytes for
/// text files, a spooled file for the rpm database.
#[derive(Debug)]
pub struct ImageFiles<C> {
    /// path → (layer index, kind, content)
    entries: BTreeMap<String, (usize, FileKind, C)>,
}

impl<C> Default for ImageFiles<C> {
    fn default() -> Self {
        ImageFiles { entries: BTreeMap::new() }
    }
}

/// What an entry of a layer means for the stacked file system.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `.wh..wh..opq`: the directory's contents from lower layers are gone.
    Opaque(&'a str),
    /// `.wh.<name>`: the path and everything under it from lower layers are gone.
    Whiteout(String),
    /// Anything else at this (normalized) path.
    Path(&'a str),
}

/// Reads the whiteout conventions of the OCI image spec (and AUFS, which Docker uses).
pub fn entry(path: &str) -> Entry<'_> {
    let path = normalize_path(path);
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    };
    if base == ".wh..wh..opq" {
        Entry::Opaque(dir)
    } else if let Some(name) = base.strip_prefix(".wh.") {
        Entry::Whiteout(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") })
    } else {
        Entry::Path(path)
    }
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl<C> ImageFiles<C> {
    /// Applies an entry of layer `layer` (0 = bottom) that is a whiteout or an opaque marker;
    /// returns whether it was one. Whiteouts only hide what lower layers put there.
    pub fn apply_whiteout(&mut self, layer: usize, path: &str) -> bool {
        match entry(path) {
            Entry::Opaque(dir) => {
                self.entries.retain(|p, (l, _, _)| *l >= layer || !under(p, dir));
                true
            }
            Entry::Whiteout(target) => {
                self.entries.retain(|p, (l, _, _)| *l >= layer || (p != &target && !under(p, &target)));
                true
            }
            Entry::Path(_) => false,
        }
    }

    /// A file of layer `layer` at `path` (normalized) that replaces any lower one.
    pub fn insert(&mut self, layer: usize, path: &str, kind: FileKind, content: C) {
        self.entries.insert(path.to_string(), (layer, kind, content));
    }

    /// An entry of layer `layer` that is not a kept file (a directory, link, device or other
    /// file): it replaces a kept file at its path; and unless it is a directory, it also
    /// replaces a lower layer's directory there, with everything kept under it.
    pub fn replace_with_other(&mut self, layer: usize, path: &str, is_dir: bool) {
        self.entries.remove(path);
        if !is_dir {
            self.entries.retain(|p, (l, _, _)| *l >= layer || !under(p, path));
        }
    }

    /// The kept files: (path, layer, kind, content), by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, usize, FileKind, &C)> {
        self.entries.iter().map(|(p, (l, k, c))| (p.as_str(), *l, *k, c))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An image's packages, each with the file it was read from and that file's layer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inventory {
    pub os: Option<os_release::OsRelease>,
    /// The OSV ecosystem of the OS packages (`Debian:12`), when the distribution is known.
    pub os_ecosystem: Option<String>,
    pub packages: Vec<InventoryPackage>,
    /// Files that could not be read, with why (reported in the scan's description).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryPackage {
    pub package: Package,
    /// `OS` or the language package manager (`CARGO`, `NPM`, `PYTHONPKG`, `GOMOD`), as ECR's
    /// enhanced findings name them.
    pub package_manager: &'static str,
    pub file_path: String,
    pub layer: usize,
}

impl Inventory {
    /// Builds the inventory from text files; `rpm_packages` are those the caller read from a
    /// spooled rpm database, with their path and layer. OS package databases without a known
    /// distribution still list packages, under the bare database name, so they show in the SBOM,
    /// but they match no records.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, usize, FileKind, &'a [u8])>,
        rpm_packages: Vec<(String, usize, Vec<Package>)>,
    ) -> Inventory {
        let files: Vec<(&str, usize, FileKind, &[u8])> = files.into_iter().collect();
        let mut inv = Inventory::default();
        // /etc/os-release wins over /usr/lib/os-release (the spec's order).
        let os = ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|want| files.iter().find(|(p, _, k, _)| *k == FileKind::OsRelease && p == want))
            .map(|(_, _, _, bytes)| os_release::parse(&String::from_utf8_lossy(bytes)));
        inv.os_ecosystem = os.as_ref().and_then(|o| o.osv_ecosystem()).map(|e| e.to_string());
        inv.os = os;
        let os_eco = |fallback: &str| inv.os_ecosystem.clone().unwrap_or_else(|| fallback.to_string());
        let (dpkg_eco, apk_eco, rpm_eco) = (os_eco("dpkg"), os_eco("apk"), os_eco("rpm"));
        let mut packages = Vec::new();
        let mut problems = Vec::new();
        for (path, layer, kind, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            let found: Result<(Vec<Package>, &'static str), String> = match kind {
                FileKind::OsRelease | FileKind::RpmSqlite => continue,
                FileKind::DpkgStatus => Ok((dpkg::parse_status(&text, &dpkg_eco), "OS")),
                FileKind::ApkInstalled => Ok((apk::parse_installed(&text, &apk_eco), "OS")),
                FileKind::CargoLock => cargo::parse_lock(&text).map(|p| (p, "CARGO")).map_err(|e| e.to_string()),
                FileKind::NpmLock => npm::parse_package_lock(&text).map(|p| (p, "NPM")).map_err(|e| e.to_string()),
                FileKind::PythonMetadata => Ok((python::parse_metadata(&text).into_iter().collect(), "PYTHONPKG")),
                FileKind::GoMod => Ok((gomod::parse(&text), "GOMOD")),
            };
            match found {
                Ok((list, manager)) => packages.extend(list.into_iter().map(|package| InventoryPackage {
                    package,
                    package_manager: manager,
                    file_path: format!("/{path}"),
                    layer,
                })),
                Err(e) => problems.push(format!("/{path}: {e}")),
            }
        }
        for (path, layer, list) in rpm_packages {
            packages.extend(list.into_iter().map(|mut package| {
                package.ecosystem = rpm_eco.clone();
                InventoryPackage { package, package_manager: "OS", file_path: format!("/{path}"), layer }
            }));
        }
        inv.packages = packages;
        inv.problems = problems;
        inv
    }

    /// The OS packages only (what a BASIC scan covers).
    pub fn os_only(mut self) -> Inventory {
        self.packages.retain(|p| p.package_manager == "OS");
        self
    }
}

/// The key under which a vulnerability database files records for a package: the ecosystem's
/// base name and the package name as the ecosystem compares names.
pub fn index_key(ecosystem: &str, name: &str) -> (String, String) {
    let eco = crate::EcosystemId::parse(ecosystem).ecosystem;
    let name = eco.normalize_name(name);
    (eco.name().to_string(), name)
}

/// The keys of every package a record names, without repeats.
pub fn record_keys(record: &crate::Record) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> =
        record.affected.iter().map(|a| index_key(&a.package.ecosystem, &a.package.name)).collect();
    keys.sort();
    keys.dedup();
    keys
}

impl InventoryPackage {
    /// The database key to look this package up under.
    pub fn index_key(&self) -> (String, String) {
        index_key(&self.package.ecosystem, self.package.osv_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_package_databases() {
        assert_eq!(classify("etc/os-release"), Some(FileKind::OsRelease));
        assert_eq!(classify("usr/lib/os-release"), Some(FileKind::OsRelease));
        assert_eq!(classify("var/lib/dpkg/status"), Some(FileKind::DpkgStatus));
        assert_eq!(classify("var/lib/dpkg/status.d/libc6"), Some(FileKind::DpkgStatus));
        assert_eq!(classify("var/lib/dpkg/status.d/libc6.md5sums"), None);
        assert_eq!(classify("var/lib/dpkg/status-old"), None);
        assert_eq!(classify("lib/apk/db/installed"), Some(FileKind::ApkInstalled));
        assert_eq!(classify("var/lib/rpm/rpmdb.sqlite"), Some(FileKind::RpmSqlite));
        assert_eq!(classify("app/Cargo.lock"), Some(FileKind::CargoLock));
        assert_eq!(classify("srv/package-lock.json"), Some(FileKind::NpmLock));
        assert_eq!(classify("srv/node_modules/x/package-lock.json"), None);
        assert_eq!(
            classify("usr/lib/python3/site-packages/requests-2.0.dist-info/METADATA"),
            Some(FileKind::PythonMetadata)
        );
        assert_eq!(classify("x/foo.egg-info/PKG-INFO"), Some(FileKind::PythonMetadata));
        assert_eq!(classify("src/go.mod"), Some(FileKind::GoMod));
        assert_eq!(classify("root/go/pkg/mod/golang.org/x/net@v0.1.0/go.mod"), None);
        assert_eq!(classify("root/.cargo/registry/src/index/serde-1.0.0/Cargo.lock"), None);
        assert_eq!(classify("src/vendor/github.com/x/go.mod"), None);
        assert_eq!(classify("etc/passwd"), None);
        assert_eq!(normalize_path("./etc/os-release"), "etc/os-release");
        assert_eq!(normalize_path("/usr/lib/"), "usr/lib");
    }

    #[test]
    fn whiteout_entries() {
        assert_eq!(entry("./var/lib/.wh.dpkg"), Entry::Whiteout("var/lib/dpkg".into()));
        assert_eq!(entry("app/.wh..wh..opq"), Entry::Opaque("app"));
        assert_eq!(entry(".wh.top"), Entry::Whiteout("top".into()));
        assert_eq!(entry("etc/os-release"), Entry::Path("etc/os-release"));
    }

    #[test]
    fn layers_stack_with_whiteouts() {
        let mut files: ImageFiles<&str> = ImageFiles::default();
        files.insert(0, "app/Cargo.lock", FileKind::CargoLock, "v0");
        files.insert(0, "app/sub/go.mod", FileKind::GoMod, "g0");
        files.insert(0, "lib/apk/db/installed", FileKind::ApkInstalled, "a0");
        files.insert(0, "srv/package-lock.json", FileKind::NpmLock, "n0");
        // Layer 1 replaces the Cargo.lock and deletes the apk database.
        files.insert(1, "app/Cargo.lock", FileKind::CargoLock, "v1");
        assert!(files.apply_whiteout(1, "lib/apk/db/.wh.installed"));
        // Layer 2 makes /app opaque after adding a file of its own in it (order within a
        // layer does not matter), and deletes the /srv directory.
        files.insert(2, "app/go.mod", FileKind::GoMod, "g2");
        assert!(files.apply_whiteout(2, "app/.wh..wh..opq"));
        assert!(files.apply_whiteout(2, "./.wh.srv"));
        assert!(!files.apply_whiteout(2, "app/x"));
        let left: Vec<(&str, usize, &str)> = files.files().map(|(p, l, _, c)| (p, l, *c)).collect();
        assert_eq!(left, vec![("app/go.mod", 2, "g2")]);
        // A whiteout of a sibling with a common prefix removes nothing else.
        let mut files: ImageFiles<&str> = ImageFiles::default();
        files.insert(0, "a/go.mod", FileKind::GoMod, "x");
        files.insert(0, "ab/go.mod", FileKind::GoMod, "y");
        files.apply_whiteout(1, "a");
        files.apply_whiteout(1, ".wh.a");
        assert_eq!(files.files().map(|(p, ..)| p).collect::<Vec<_>>(), vec!["ab/go.mod"]);
        files.replace_with_other(2, "ab/go.mod", false);
        assert!(files.is_empty());
        // A file or link replacing a lower directory takes what was kept under it.
        files.insert(0, "srv/app/go.mod", FileKind::GoMod, "z");
        files.replace_with_other(1, "srv/app", true);
        assert!(!files.is_empty(), "a directory entry keeps the directory's contents");
        files.replace_with_other(1, "srv", false);
        assert!(files.is_empty());
    }

    #[test]
    fn inventory_of_a_debian_image_with_python() {
        let os = b"ID=debian\nVERSION_ID=\"12\"\n";
        let status = b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\n\
                       Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let meta = b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.19.0\n";
        let inv = Inventory::from_files(
            [
                ("etc/os-release", 0, FileKind::OsRelease, &os[..]),
                ("var/lib/dpkg/status", 0, FileKind::DpkgStatus, &status[..]),
                (
                    "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA",
                    1,
                    FileKind::PythonMetadata,
                    &meta[..],
                ),
                ("app/Cargo.lock", 1, FileKind::CargoLock, &b"not toml ["[..]),
            ],
            Vec::new(),
        );
        assert_eq!(inv.os_ecosystem.as_deref(), Some("Debian:12"));
        assert_eq!(inv.packages.len(), 2);
        assert_eq!(inv.packages[0].package.name, "libssl3");
        assert_eq!(inv.packages[0].index_key(), ("Debian".to_string(), "openssl".to_string()));
        assert_eq!(inv.packages[0].file_path, "/var/lib/dpkg/status");
        assert_eq!(inv.packages[1].package_manager, "PYTHONPKG");
        assert_eq!(inv.packages[1].layer, 1);
        assert_eq!(inv.packages[1].index_key(), ("PyPI".to_string(), "requests".to_string()));
        assert_eq!(inv.problems.len(), 1, "{:?}", inv.problems);
        assert_eq!(inv.clone().os_only().packages.len(), 1);
    }

    #[test]
    fn record_keys_are_normalized_and_unique() {
        let record = crate::Record::from_json(
            r#"{"id":"X","affected":[
                {"package":{"ecosystem":"Debian:12","name":"openssl"}},
                {"package":{"ecosystem":"Debian:11","name":"openssl"}},
                {"package":{"ecosystem":"PyPI","name":"Foo_Bar"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            record_keys(&record),
            vec![("Debian".to_string(), "openssl".to_string()), ("PyPI".to_string(), "foo-bar".to_string())]
        );
    }
}
