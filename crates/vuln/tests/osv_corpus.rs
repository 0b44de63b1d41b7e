//! A sweep over a whole OSV data directory, run on demand:
//! `BERTH_OSV_DIR=/path/to/osv cargo test -p berth-vuln --test osv_corpus -- --ignored`.
//!
//! Every record must parse; judged range by range, no `fixed` version may itself be
//! affected and every `introduced` version (other than "0") must be; every version an entry
//! lists must be affected, and the fix offered for it must not be.

use std::path::Path;

use berth_vuln::osv::RangeType;
use berth_vuln::{EcosystemId, Record, affected};

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
#[ignore = "needs BERTH_OSV_DIR"]
fn whole_corpus_is_consistent() {
    let Ok(dir) = std::env::var("BERTH_OSV_DIR") else {
        eprintln!("BERTH_OSV_DIR not set; nothing to do");
        return;
    };
    let mut files = Vec::new();
    json_files(Path::new(&dir), &mut files);
    let (mut records, mut checks, mut problems) = (0, 0, Vec::new());
    // Versions the ecosystem's scheme calls malformed (compared by the fallback order).
    let mut malformed: Vec<String> = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let record = Record::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        records += 1;
        if record.is_withdrawn() {
            continue;
        }
        for entry in &record.affected {
            let (eco, name) = (&entry.package.ecosystem, &entry.package.name);
            if let Some(scheme) = EcosystemId::parse(eco).ecosystem.scheme() {
                let strings = entry.ranges.iter().filter(|r| r.kind == RangeType::Ecosystem).flat_map(|r| &r.events);
                let strings =
                    strings.filter_map(|e| e.kind()).map(|(_, v)| v).chain(entry.versions.iter().map(String::as_str));
                for v in strings.filter(|v| *v != "0" && !scheme.is_valid(v)) {
                    malformed.push(format!("{} {eco} {name} {v}", record.id));
                }
            }
            // Judge each range on its own: secdb-derived records list several [0, fix)
            // entries per branch, so a fix of one can rightly fall inside another.
            for range in entry.ranges.iter().filter(|r| r.kind != RangeType::Git) {
                let mut alone = entry.clone();
                alone.versions.clear();
                alone.ranges = vec![range.clone()];
                let single = Record { affected: vec![alone], ..record.clone() };
                for event in &range.events {
                    checks += 1;
                    // A fix that is also an introduction (adjacent ranges) stays affected.
                    let reopened = |v: &str| range.events.iter().any(|e| e.introduced.as_deref() == Some(v));
                    if let Some(fixed) = &event.fixed
                        && fixed != "0"
                        && !reopened(fixed)
                        && affected(&single, eco, name, fixed).is_some()
                    {
                        problems.push(format!("{}: {eco} {name} fixed {fixed} reported affected", record.id));
                    }
                    // An introduction that is also a fix (an empty range) affects nothing.
                    let closed = |v: &str| range.events.iter().any(|e| e.fixed.as_deref() == Some(v));
                    if let Some(introduced) = &event.introduced
                        && introduced != "0"
                        && !closed(introduced)
                        && affected(&single, eco, name, introduced).is_none()
                    {
                        problems.push(format!("{}: {eco} {name} introduced {introduced} not affected", record.id));
                    }
                }
            }
            for v in &entry.versions {
                checks += 1;
                match affected(&record, eco, name, v) {
                    None => problems.push(format!("{}: {eco} {name} listed {v} not affected", record.id)),
                    // The upgrade offered must not be vulnerable itself (unless listed so).
                    Some(m) => {
                        if let Some(fix) = m.fixed_in()
                            && !entry.versions.iter().any(|l| l == fix)
                            && affected(&record, eco, name, fix).is_some()
                        {
                            problems.push(format!("{}: {eco} {name} fix {fix} offered for {v} is affected", record.id));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{records} records, {checks} checks, {} problems", problems.len());
    eprintln!("{} malformed versions (informational)", malformed.len());
    for m in malformed.iter().filter(|m| !m.contains(" PyPI ")).take(20) {
        eprintln!("  malformed: {m}");
    }
    for p in problems.iter().take(50) {
        eprintln!("  {p}");
    }
    assert!(records > 0);
    assert!(problems.is_empty(), "{} problems", problems.len());
}
