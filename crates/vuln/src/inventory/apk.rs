//! apk's database, `/lib/apk/db/installed`: one block per package, one `X:value` line per
//! field, blocks separated by blank lines.

use super::Package;

/// Parses the installed database into packages of `ecosystem` (`Alpine:v3.19`). `P:` is the
/// name, `V:` the version, `A:` the architecture, `o:` the origin (source) package, which is
/// what Alpine's OSV records are keyed by.
pub fn parse_installed(text: &str, ecosystem: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut fields: Vec<(char, &str)> = Vec::new();
    let mut flush = |fields: &mut Vec<(char, &str)>| {
        let get = |k: char| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v).filter(|v| !v.is_empty());
        if let (Some(name), Some(version)) = (get('P'), get('V')) {
            let mut package = Package::new(ecosystem, name, version);
            package.arch = get('A').map(str::to_string);
            package.source_name = get('o').map(str::to_string);
            out.push(package);
        }
        fields.clear();
    };
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(key), Some(':')) = (chars.next(), chars.next()) {
            fields.push((key, line[key.len_utf8() + 1..].trim()));
        }
    }
    flush(&mut fields);
    out
}
