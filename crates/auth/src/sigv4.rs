//! AWS Signature Version 4: parsing a signed request (header or query-string form), checking
//! its time window and signature, and signing (for Berth's own clients and tests).
//!
//! Reference: the AWS General Reference, "Create a signed AWS API request".

use aws_lc_rs::{constant_time, hmac};
use sha2::{Digest as _, Sha256};

use crate::EpochSeconds;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from the server's.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The longest validity a presigned (query-string) request may claim.
pub const MAX_PRESIGN_SECONDS: i64 = 7 * 24 * 3600;

/// A request as the verifier needs it: the raw path and query as sent, every header, and the
/// SHA-256 of the exact body received.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub payload_sha256: &'a str,
}

impl Request<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// What a request claims about its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    /// `YYYYMMDD`
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// `YYYYMMDDTHHMMSSZ`
    pub amz_date: String,
    /// Query-string (presigned) form: the validity in seconds.
    pub expires: Option<i64>,
}

/// Failures, each named as AWS names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// `MissingAuthenticationTokenException`
    #[error("Missing Authentication Token")]
    Missing,
    /// `IncompleteSignatureException`
    #[error("{0}")]
    Incomplete(String),
    /// `InvalidSignatureException`: signature mismatch.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// `InvalidSignatureException`: outside the time window.
    #[error("{0}")]
    Expired(String),
}

fn hmac_sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn canonical_query(query: &str, skip_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .into_iter()
        .filter(|(k, _)| !(skip_signature && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn canonical_header_value(values: &[&str]) -> String {
    values.iter().map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join(",")
}

/// `<date>/<region>/<service>/aws4_request` (the part of the credential after the key id).
fn parse_credential_scope(scope: &str) -> Result<(String, String, String), SigV4Error> {
    let parts: Vec<&str> = scope.split('/').collect();
    if parts.len() != 4 || parts[3] != "aws4_request" || parts[0].len() != 8 {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid region, not '{scope}'. Credential should be scoped to correct service. Credential should be scoped with a valid terminator: 'aws4_request'."
        )));
    }
    Ok((parts[0].to_string(), parts[1].to_string(), parts[2].to_string()))
}

/// Reads the signature claims from the `Authorization` header or the `X-Amz-*` query parameters.
pub fn parse(req: &Request<'_>) -> Result<Credential, SigV4Error> {
    let authorizations = req.header_values("authorization");
    if authorizations.len() > 1 {
        // A second header could smuggle another signature past a proxy that reads the first.
        return Err(SigV4Error::Incomplete("The request must carry exactly one Authorization header.".into()));
    }
    if let Some(auth) = authorizations.first().copied() {
        let rest = auth.strip_prefix(ALGORITHM).ok_or_else(|| {
            SigV4Error::Incomplete(format!("Unsupported authorization type: only {ALGORITHM} is supported"))
        })?;
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let missing = |what: &str| {
            SigV4Error::Incomplete(format!("Authorization header requires '{what}' parameter. Authorization={auth}"))
        };
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let amz_date = req
            .header("x-amz-date")
            .ok_or_else(|| {
                SigV4Error::Incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
                )
            })?
            .to_string();
        let (access_key_id, scope) = credential.split_once('/').ok_or_else(|| missing("Credential"))?;
        let (date, region, service) = parse_credential_scope(scope)?;
        return Ok(Credential {
            access_key_id: access_key_id.to_string(),
            date,
            region,
            service,
            signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
            signature: signature.to_string(),
            amz_date,
            expires: None,
        });
    }
    let q = query_pairs(req.query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(algorithm) = get("X-Amz-Algorithm") else { return Err(SigV4Error::Missing) };
    if algorithm != ALGORITHM {
        return Err(SigV4Error::Incomplete(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let need = |k: &str| {
        get(k).ok_or_else(|| SigV4Error::Incomplete(format!("AWS query-string parameters must include '{k}'.")))
    };
    let credential = need("X-Amz-Credential")?;
    let (access_key_id, scope) =
        credential.split_once('/').ok_or_else(|| SigV4Error::Incomplete("invalid X-Amz-Credential".into()))?;
    let (date, region, service) = parse_credential_scope(scope)?;
    let expires: i64 = need("X-Amz-Expires")?
        .parse()
        .map_err(|_| SigV4Error::Incomplete("X-Amz-Expires must be a number of seconds".into()))?;
    if !(0..=MAX_PRESIGN_SECONDS).contains(&expires) {
        return Err(SigV4Error::Incomplete(format!(
            "X-Amz-Expires must be between 0 and {MAX_PRESIGN_SECONDS} seconds"
        )));
    }
    Ok(Credential {
        access_key_id: access_key_id.to_string(),
        date,
        region,
        service,
        signed_headers: need("X-Amz-SignedHeaders")?.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature: need("X-Amz-Signature")?,
        amz_date: need("X-Amz-Date")?,
        expires: Some(expires),
    })
}

/// `YYYYMMDDTHHMMSSZ` to epoch seconds.
pub fn parse_amz_date(s: &str) -> Option<EpochSeconds> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok());
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Epoch seconds to `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: EpochSeconds) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

// Howard Hinnant's date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The string to sign for a request and its claims.
fn string_to_sign(req: &Request<'_>, cred: &Credential) -> Result<String, SigV4Error> {
    let mut canonical_headers = String::new();
    for name in &cred.signed_headers {
        let values = req.header_values(name);
        if values.is_empty() {
            return Err(SigV4Error::Mismatch);
        }
        canonical_headers.push_str(&format!("{name}:{}\n", canonical_header_value(&values)));
    }
    if !cred.signed_headers.iter().any(|h| h == "host") {
        return Err(SigV4Error::Incomplete("'Host' must be a signed header.".into()));
    }
    // `X-Amz-Target` selects the operation and other `x-amz-*` headers change what it does: a
    // man in the middle must not be able to swap them, so each one sent must be signed.
    let mut unsigned: Vec<String> = req
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k.starts_with("x-amz-") && !cred.signed_headers.contains(k))
        .collect();
    if !unsigned.is_empty() {
        unsigned.sort();
        unsigned.dedup();
        return Err(SigV4Error::Incomplete(format!(
            "There were headers present in the request which were not signed: {}",
            unsigned.join(", ")
        )));
    }
    // The payload is always the hash of the body received: the APIs verified here take their
    // whole input from the body, so `UNSIGNED-PAYLOAD` would leave it open to substitution.
    let payload = req.payload_sha256;
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(if req.path.is_empty() { "/" } else { req.path }, true),
        canonical_query(req.query, cred.expires.is_some()),
        canonical_headers,
        cred.signed_headers.join(";"),
        payload
    );
    let scope = format!("{}/{}/{}/aws4_request", cred.date, cred.region, cred.service);
    Ok(format!("{ALGORITHM}\n{}\n{scope}\n{}", cred.amz_date, sha256_hex(canonical_request.as_bytes())))
}

fn signature(secret: &str, cred: &Credential, to_sign: &str) -> String {
    let k_date = hmac_sign(format!("AWS4{secret}").as_bytes(), cred.date.as_bytes());
    let k_region = hmac_sign(&k_date, cred.region.as_bytes());
    let k_service = hmac_sign(&k_region, cred.service.as_bytes());
    let k_signing = hmac_sign(&k_service, b"aws4_request");
    hex::encode(hmac_sign(&k_signing, to_sign.as_bytes()))
}

/// Checks the time window (±15 minutes, or the presigned validity) and the signature.
pub fn verify(req: &Request<'_>, cred: &Credential, secret: &str, now: EpochSeconds) -> Result<(), SigV4Error> {
    let t = parse_amz_date(&cred.amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{}'.", cred.amz_date))
    })?;
    if !cred.amz_date.starts_with(&cred.date) {
        return Err(SigV4Error::Mismatch);
    }
    match cred.expires {
        None => {
            if t < now - MAX_SKEW_SECONDS {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                    cred.amz_date,
                    format_amz_date(now - MAX_SKEW_SECONDS),
                    format_amz_date(now)
                )));
            }
            if t > now + MAX_SKEW_SECONDS {
                return Err(SigV4Error::Expired(format!(
                    "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                    cred.amz_date,
                    format_amz_date(now + MAX_SKEW_SECONDS),
                    format_amz_date(now)
                )));
            }
        }
        Some(expires) => {
            if now > t + expires {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - {expires} sec.)",
                    format_amz_date(t + expires),
                    format_amz_date(now),
                    format_amz_date(now)
                )));
            }
            if t > now + MAX_SKEW_SECONDS {
                return Err(SigV4Error::Expired(format!("Signature not yet current: {}", cred.amz_date)));
            }
        }
    }
    let expected = signature(secret, cred, &string_to_sign(req, cred)?);
    if constant_time::verify_slices_are_equal(expected.as_bytes(), cred.signature.as_bytes()).is_ok() {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// Signs a request in the header form: returns the `X-Amz-Date` and `Authorization` values.
/// `headers` must include `host`; every header given is signed.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: EpochSeconds,
) -> (String, String) {
    sign_hashed(method, path, query, headers, &sha256_hex(body), access_key_id, secret, region, service, now)
}

/// [`sign`] for a body given by its hash: the SHA-256 in hex, or `UNSIGNED-PAYLOAD` for a
/// body streamed unsigned (sent in an `x-amz-content-sha256` header, signed with the others).
#[allow(clippy::too_many_arguments)]
pub fn sign_hashed(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_sha256: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: EpochSeconds,
) -> (String, String) {
    let amz_date = format_amz_date(now);
    let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    all.push(("x-amz-date".into(), amz_date.clone()));
    let mut signed: Vec<String> = all.iter().map(|(k, _)| k.clone()).collect();
    signed.sort();
    signed.dedup();
    let cred = Credential {
        access_key_id: access_key_id.to_string(),
        date: amz_date[..8].to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed,
        signature: String::new(),
        amz_date: amz_date.clone(),
        expires: None,
    };
    let req = Request { method, path, query, headers: &all, payload_sha256 };
    let to_sign = string_to_sign(&req, &cred).expect("host is among the signed headers");
    let sig = signature(secret, &cred, &to_sign);
    let auth = format!(
        "{ALGORITHM} Credential={access_key_id}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
        cred.date,
        cred.signed_headers.join(";")
    );
    (amz_date, auth)
}

/// Signs a request in the query-string (presigned) form: returns the query to append, which
/// holds `extra_query` and the `X-Amz-*` parameters. `headers` (with `host`) are signed; a
/// request sent with other `x-amz-*` headers is refused.
#[allow(clippy::too_many_arguments)]
pub fn presign(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    extra_query: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: EpochSeconds,
    expires: i64,
) -> String {
    let amz_date = format_amz_date(now);
    let date = &amz_date[..8];
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let mut signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    signed.sort();
    signed.dedup();
    let mut query = format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders={}",
        uri_encode(&format!("{access_key_id}/{date}/{region}/{service}/aws4_request"), false),
        uri_encode(&signed.join(";"), false)
    );
    if !extra_query.is_empty() {
        query = format!("{extra_query}&{query}");
    }
    let cred = Credential {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed,
        signature: String::new(),
        amz_date: amz_date.clone(),
        expires: Some(expires),
    };
    let payload = sha256_hex(b"");
    let req = Request { method, path, query: &query, headers: &headers, payload_sha256: &payload };
    let to_sign = string_to_sign(&req, &cred).expect("host is signed");
    format!("{query}&X-Amz-Signature={}", signature(secret, &cred, &to_sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A request signed by botocore's own SigV4Auth (the AWS CLI's signer).
    fn botocore_request() -> (Vec<(String, String)>, String) {
        let headers = vec![
            ("Host".to_string(), "127.0.0.1:5000".to_string()),
            ("X-Amz-Target".to_string(), "AmazonEC2ContainerRegistry_V20150921.CreateRepository".to_string()),
            ("Content-Type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("X-Amz-Date".to_string(), "20261123T082645Z".to_string()),
            (
                "Authorization".to_string(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261123/us-east-1/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=c1296bcf8d6d6b1dd08058a088924a09ccd571da5d593be902174630cbbb8002".to_string(),
            ),
        ];
        (headers, r#"{"repositoryName":"my-app"}"#.to_string())
    }

    fn host(h: &str) -> Vec<(String, String)> {
        vec![("host".to_string(), h.to_string())]
    }

    fn at(s: &str) -> EpochSeconds {
        parse_amz_date(s).unwrap()
    }

    #[test]
    fn verifies_a_botocore_signature() {
        let (headers, body) = botocore_request();
        let hash = sha256_hex(body.as_bytes());
        let req = Request { method: "POST", path: "/", query: "", headers: &headers, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        assert_eq!(cred.access_key_id, "AKIDEXAMPLE");
        assert_eq!((cred.region.as_str(), cred.service.as_str()), ("us-east-1", "ecr"));
        assert_eq!(verify(&req, &cred, SECRET, at("20261123T083000Z")), Ok(()));
        // Wrong secret, modified body, modified signed header.
        assert_eq!(verify(&req, &cred, "other", at("20261123T083000Z")), Err(SigV4Error::Mismatch));
        let other = sha256_hex(br#"{"repositoryName":"evil"}"#);
        let tampered = Request { payload_sha256: &other, ..req };
        assert_eq!(verify(&tampered, &cred, SECRET, at("20261123T083000Z")), Err(SigV4Error::Mismatch));
        let mut h2 = headers.clone();
        h2[1].1 = "AmazonEC2ContainerRegistry_V20150921.DeleteRepository".into();
        let req2 = Request { method: "POST", path: "/", query: "", headers: &h2, payload_sha256: &hash };
        assert_eq!(verify(&req2, &cred, SECRET, at("20261123T083000Z")), Err(SigV4Error::Mismatch));
    }

    #[test]
    fn enforces_the_fifteen_minute_window() {
        let (headers, body) = botocore_request();
        let hash = sha256_hex(body.as_bytes());
        let req = Request { method: "POST", path: "/", query: "", headers: &headers, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        assert_eq!(verify(&req, &cred, SECRET, at("20261123T084145Z")), Ok(()));
        match verify(&req, &cred, SECRET, at("20261123T084146Z")) {
            Err(SigV4Error::Expired(m)) => assert_eq!(
                m,
                "Signature expired: 20261123T082645Z is now earlier than 20261123T082646Z (20261123T084146Z - 15 min.)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(verify(&req, &cred, SECRET, at("20261123T080000Z")), Err(SigV4Error::Expired(_))));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let now = at("20260102T030405Z");
        let headers =
            vec![("host".to_string(), "example:5000".to_string()), ("x-amz-target".to_string(), "X.Y".to_string())];
        let (date, auth) = sign("POST", "/", "", &headers, b"{}", "AKIAEXAMPLE", SECRET, "eu-west-1", "ecr", now);
        assert_eq!(date, "20260102T030405Z");
        let mut all = headers.clone();
        all.push(("x-amz-date".into(), date));
        all.push(("authorization".into(), auth));
        let hash = sha256_hex(b"{}");
        let req = Request { method: "POST", path: "/", query: "", headers: &all, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        assert_eq!(verify(&req, &cred, SECRET, now), Ok(()));
    }

    #[test]
    fn query_string_form() {
        let now = at("20261123T100000Z");
        let query = presign(
            "GET",
            "/",
            &host("example:5000"),
            "Action=Describe",
            "AKIAEXAMPLE",
            SECRET,
            "us-east-1",
            "ecr",
            now,
            300,
        );
        let headers = vec![("host".to_string(), "example:5000".to_string())];
        let hash = sha256_hex(b"");
        let req = Request { method: "GET", path: "/", query: &query, headers: &headers, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        assert_eq!((cred.expires, cred.access_key_id.as_str()), (Some(300), "AKIAEXAMPLE"));
        assert_eq!(verify(&req, &cred, SECRET, now + 299), Ok(()));
        assert!(matches!(verify(&req, &cred, SECRET, now + 301), Err(SigV4Error::Expired(_))));
        assert_eq!(verify(&req, &cred, "wrong", now), Err(SigV4Error::Mismatch));
        let tampered = query.replace("Action=Describe", "Action=Delete");
        let req = Request { query: &tampered, ..req };
        assert_eq!(verify(&req, &parse(&req).unwrap(), SECRET, now), Err(SigV4Error::Mismatch));
        let too_long =
            presign("GET", "/", &host("h"), "", "AKIAEXAMPLE", SECRET, "us-east-1", "ecr", now, 8 * 24 * 3600);
        let req = Request { query: &too_long, ..req };
        assert!(matches!(parse(&req), Err(SigV4Error::Incomplete(_))));
    }

    #[test]
    fn every_amz_header_must_be_signed() {
        let now = at("20260102T030405Z");
        let headers = vec![("host".to_string(), "example:5000".to_string())];
        let (date, auth) = sign("POST", "/", "", &headers, b"{}", "AKIAEXAMPLE", SECRET, "us-east-1", "ecr", now);
        let mut all = headers.clone();
        all.push(("x-amz-date".into(), date));
        all.push(("authorization".into(), auth));
        // The operation added by someone on the way: not covered by the signature, refused.
        all.push(("X-Amz-Target".into(), "AmazonEC2ContainerRegistry_V20150921.DeleteRepository".into()));
        let hash = sha256_hex(b"{}");
        let req = Request { method: "POST", path: "/", query: "", headers: &all, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        match verify(&req, &cred, SECRET, now) {
            Err(SigV4Error::Incomplete(m)) => assert!(m.ends_with("not signed: x-amz-target"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsigned_payload_is_not_accepted() {
        let (mut headers, body) = botocore_request();
        headers.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
        let hash = sha256_hex(body.as_bytes());
        let req = Request { method: "POST", path: "/", query: "", headers: &headers, payload_sha256: &hash };
        let cred = parse(&req).unwrap();
        assert!(verify(&req, &cred, SECRET, at("20261123T083000Z")).is_err());
    }

    #[test]
    fn a_second_authorization_header_is_refused() {
        let (mut headers, body) = botocore_request();
        headers.push((
            "Authorization".into(),
            "AWS4-HMAC-SHA256 Credential=OTHER/20261123/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00"
                .into(),
        ));
        let hash = sha256_hex(body.as_bytes());
        let req = Request { method: "POST", path: "/", query: "", headers: &headers, payload_sha256: &hash };
        assert!(matches!(parse(&req), Err(SigV4Error::Incomplete(m)) if m.contains("exactly one Authorization")));
    }

    #[test]
    fn parse_errors() {
        let hash = sha256_hex(b"");
        let none: Vec<(String, String)> = vec![];
        let req = Request { method: "GET", path: "/", query: "", headers: &none, payload_sha256: &hash };
        assert_eq!(parse(&req), Err(SigV4Error::Missing));
        let h = vec![(
            "authorization".to_string(),
            "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/ecr/aws4_request".to_string(),
        )];
        let req = Request { headers: &h, ..req };
        assert!(matches!(parse(&req), Err(SigV4Error::Incomplete(_))));
        let h = vec![("authorization".to_string(), "Basic abc".to_string())];
        let req = Request { headers: &h, ..req };
        assert!(matches!(parse(&req), Err(SigV4Error::Incomplete(_))));
    }

    #[test]
    fn dates_round_trip() {
        for s in ["19700101T000000Z", "20000229T235959Z", "20261123T082645Z", "21000301T120000Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert_eq!(parse_amz_date("20261123T082645Z"), Some(1_795_422_405));
        assert_eq!(parse_amz_date("2026-11-23"), None);
        assert_eq!(parse_amz_date("20261323T082645Z"), None);
    }

    #[test]
    fn encodes_like_aws() {
        assert_eq!(uri_encode("a b/c~d*", false), "a%20b%2Fc~d%2A");
        assert_eq!(uri_encode("/a b/", true), "/a%20b/");
        assert_eq!(canonical_query("b=2&a=1&a=0&c", false), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=%2F", true), "x=%2F");
    }
}
