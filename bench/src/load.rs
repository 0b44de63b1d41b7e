//! Request-rate measurements with the usual external tools: `wrk` for GET and PUT, `ab -i` for
//! HEAD (wrk stalls on HEAD responses).

use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub rps: f64,
    pub p99_ms: f64,
    pub requests: f64,
    /// Responses that were not 2xx or 3xx.
    pub errors: f64,
}

fn to_ms(v: &str) -> f64 {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" | "" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// `wrk` for `seconds` at `connections`, with an optional Lua script (for PUT bodies).
pub fn wrk(
    url: &str,
    connections: u32,
    seconds: u32,
    headers: &[&str],
    script: Option<&std::path::Path>,
) -> anyhow::Result<Rate> {
    let threads = connections.min(2);
    let mut cmd = Command::new("wrk");
    cmd.args(["--latency", "-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd.arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output: {text}"))?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(to_ms).unwrap_or(f64::NAN);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // Errors under load are counted and reported beside the rate (the reference registry answers
    // a few manifest GETs with errors at concurrency 32), not fatal.
    let errors: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    if errors > 0.0 {
        eprintln!("  note: {errors} error responses of {requests} at {url}");
    }
    Ok(Rate { rps, p99_ms: p99, requests, errors })
}

/// `ab -i` (HEAD) for `requests` requests at `concurrency`, with keep-alive.
pub fn ab_head(url: &str, concurrency: u32, requests: u32, headers: &[&str]) -> anyhow::Result<Rate> {
    let mut cmd = Command::new("ab");
    cmd.args(["-q", "-k", "-i", "-n", &requests.to_string(), "-c", &concurrency.to_string()]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "ab failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(
        text.lines().any(|l| l.starts_with("Failed requests:") && l.trim().ends_with(" 0")),
        "ab saw failed requests: {text}"
    );
    anyhow::ensure!(!text.contains("Non-2xx"), "ab saw error responses: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no rate in ab output: {text}"))?;
    let p99 =
        text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN);
    Ok(Rate { rps, p99_ms: p99, requests: requests as f64, errors: 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(to_ms("250.00us"), 0.25);
        assert_eq!(to_ms("1.50ms"), 1.5);
        assert_eq!(to_ms("2.00s"), 2000.0);
    }
}
