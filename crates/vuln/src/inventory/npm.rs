//! npm's `package-lock.json`: lockfileVersion 1 (the nested `dependencies` tree) and 2/3
//! (the flat `packages` map keyed by `node_modules/...` paths; preferred when present).

use serde_json::{Map, Value};

use super::Package;
use crate::Error;

/// The package name a `packages` key installs: what follows its last `node_modules/`
/// (`node_modules/a/node_modules/@scope/b` installs `@scope/b`).
fn name_from_key(key: &str) -> Option<&str> {
    let (_, name) = key.rsplit_once("node_modules/")?;
    (!name.is_empty()).then_some(name)
}

/// Whether a version string is a registry version rather than a `file:`, `git+...`,
/// `github:` or URL reference.
fn is_registry_version(version: &str) -> bool {
    !version.is_empty() && !version.contains([':', '/'])
}

fn walk_v1(deps: &Map<String, Value>, prefix: &str, out: &mut Vec<Package>) {
    for (name, dep) in deps {
        let path = format!("{prefix}node_modules/{name}");
        if let Some(version) = dep.get("version").and_then(Value::as_str)
            && is_registry_version(version)
        {
            out.push(Package::new("npm", name, version).with_path(&path));
        }
        if let Some(nested) = dep.get("dependencies").and_then(Value::as_object) {
            walk_v1(nested, &format!("{path}/"), out);
        }
    }
}

/// Parses a lockfile into its installed registry packages, each with its install path
/// (in the order of the keys, sorted).
/// The root project, workspace members and links are left out, as are dependencies that do
/// not come from a registry.
pub fn parse_package_lock(text: &str) -> Result<Vec<Package>, Error> {
    let root: Value = serde_json::from_str(text)?;
    let mut out = Vec::new();
    if let Some(packages) = root.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some(key_name) = name_from_key(key) else {
                continue; // the root ("") and workspace folders
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(version) = entry.get("version").and_then(Value::as_str).filter(|v| is_registry_version(v)) else {
                continue;
            };
            // An aliased install ("x": "npm:real@1") records the real name in `name`.
            let name = entry.get("name").and_then(Value::as_str).unwrap_or(key_name);
            out.push(Package::new("npm", name, version).with_path(key));
        }
    } else if let Some(deps) = root.get("dependencies").and_then(Value::as_object) {
        walk_v1(deps, "", &mut out);
    } else if !root.is_object() {
        return Err(Error::Format("package-lock.json is not a JSON object".into()));
    }
    Ok(out)
}
