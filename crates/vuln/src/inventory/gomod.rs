//! `go.mod`: the modules a Go module requires.
//!
//! `require` lines and blocks give module paths and versions; `replace` directives that
//! point at another module version are applied, and requirements replaced by a local
//! directory are dropped (their version says nothing about the code used). The main module,
//! `go`, `toolchain`, `exclude` and `retract` directives are not packages.

use super::Package;

/// Strips a `//` comment and surrounding space.
fn strip_comment(line: &str) -> &str {
    line.split_once("//").map_or(line, |(code, _)| code).trim()
}

/// Removes Go string quoting from a module path (`"example.com/x"` or a backquoted path).
fn unquote(s: &str) -> &str {
    s.trim_matches(['"', '`'])
}

#[derive(Debug)]
struct Replace {
    old_path: String,
    old_version: Option<String>,
    /// `None` for a local directory.
    new: Option<(String, String)>,
}

fn parse_replace(spec: &str) -> Option<Replace> {
    let (old, new) = spec.split_once("=>")?;
    let old: Vec<&str> = old.split_whitespace().map(unquote).collect();
    let new: Vec<&str> = new.split_whitespace().map(unquote).collect();
    let old_path = old.first()?.to_string();
    let old_version = old.get(1).map(|v| v.to_string());
    let new = match new.as_slice() {
        [path, version] => Some((path.to_string(), version.to_string())),
        _ => None,
    };
    Some(Replace { old_path, old_version, new })
}

/// Parses go.mod text into the required modules (ecosystem `Go`, versions with their `v`).
pub fn parse(text: &str) -> Vec<Package> {
    let mut requires: Vec<(String, String)> = Vec::new();
    let mut replaces: Vec<Replace> = Vec::new();
    let mut block: Option<&str> = None;
    for raw in text.lines() {
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        if let Some(directive) = block {
            if line == ")" {
                block = None;
                continue;
            }
            match directive {
                "require" => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if let [path, version, ..] = parts.as_slice() {
                        requires.push((unquote(path).to_string(), version.to_string()));
                    }
                }
                "replace" => replaces.extend(parse_replace(line)),
                _ => {}
            }
            continue;
        }
        let (directive, rest) = match line.find([' ', '\t', '(']) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        if rest == "(" {
            block = Some(match directive {
                "require" => "require",
                "replace" => "replace",
                _ => "other",
            });
            continue;
        }
        match directive {
            "require" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                if let [path, version, ..] = parts.as_slice() {
                    requires.push((unquote(path).to_string(), version.to_string()));
                }
            }
            "replace" => replaces.extend(parse_replace(rest)),
            _ => {}
        }
    }
    requires
        .into_iter()
        .filter_map(|(path, version)| {
            // A versioned replacement wins over a path-wide one.
            let replace = replaces
                .iter()
                .filter(|r| r.old_path == path && r.old_version.as_deref().is_none_or(|v| v == version))
                .max_by_key(|r| r.old_version.is_some());
            match replace {
                None => Some(Package::new("Go", &path, &version)),
                Some(Replace { new: Some((new_path, new_version)), .. }) => {
                    Some(Package::new("Go", new_path, new_version))
                }
                Some(Replace { new: None, .. }) => None,
            }
        })
        .collect()
}
