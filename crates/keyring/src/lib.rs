//! The master keyring. Every secret Berth keeps in its metadata store (access-key secrets, the
//! token signing key, and what later features add) is stored *sealed*: encrypted with
//! AES-256-GCM under one version of the master key, with the value's logical identity as
//! associated data — what it is, its primary key and the keyring version — so a sealed value
//! copied onto another row, or relabelled with another version, does not open. A storage row id
//! is never part of it: a migration to another database keeps every value readable.
//!
//! Sealed text: `sealed:v<version>:<base64url(nonce ‖ ciphertext ‖ tag)>`.

mod file;

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

pub use file::{append_new_version, load, load_or_create};

const PREFIX: &str = "sealed:v";
const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the keyring holds no key")]
    Empty,
    #[error("the value is not sealed")]
    NotSealed,
    #[error("the value is sealed under master key version {0}, which the keyring does not hold")]
    UnknownVersion(u32),
    #[error("the sealed value does not open (damaged, or sealed for another identity)")]
    Unsealable,
    #[error("{0}")]
    Io(String),
}

/// What a sealed value is: its kind and its primary key, e.g. ("access-key-secret", key id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

impl Identity<'_> {
    fn aad(&self, version: u32) -> Vec<u8> {
        format!("berth keyring\n{}\n{}\nv{version}", self.kind, self.id).into_bytes()
    }
}

/// Master keys by version; the highest seals new values.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, [u8; KEY_LEN]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("Keyring").field("versions", &self.versions()).finish()
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut k).expect("system randomness");
    k
}

impl Keyring {
    /// A keyring with one new random key, version 1.
    pub fn generate() -> Self {
        Keyring { keys: BTreeMap::from([(1, random_key())]) }
    }

    /// Parses `version:base64-key` lines (blank lines and `#` comments allowed).
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| KeyringError::Malformed { line: n + 1, reason: reason.into() };
            let (version, key) = line.split_once(':').ok_or_else(|| bad("expected version:base64-key"))?;
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version must be a positive integer"))?;
            let key = STANDARD.decode(key.trim()).map_err(|_| bad("the key is not base64"))?;
            let key: [u8; KEY_LEN] = key.try_into().map_err(|_| bad("the key must be 32 bytes"))?;
            if keys.insert(version, key).is_some() {
                return Err(bad("the version appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The file form `parse` reads.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# Berth master keyring: version:base64-key; the highest version seals new values.\n");
        for (v, k) in &self.keys {
            s.push_str(&format!("{v}:{}\n", STANDARD.encode(k)));
        }
        s
    }

    /// This keyring with one more random key, numbered one above the highest.
    pub fn with_new_version(&self) -> (Self, u32) {
        let next = self.current_version() + 1;
        let mut keys = self.keys.clone();
        keys.insert(next, random_key());
        (Keyring { keys }, next)
    }

    /// The version new values are sealed with.
    pub fn current_version(&self) -> u32 {
        *self.keys.keys().next_back().expect("a keyring is never empty")
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    pub fn has_version(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    fn key(&self, version: u32) -> Result<LessSafeKey, KeyringError> {
        let bytes = self.keys.get(&version).ok_or(KeyringError::UnknownVersion(version))?;
        Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES key")))
    }

    /// Seals `plaintext` under the current version.
    pub fn seal(&self, what: Identity<'_>, plaintext: &[u8]) -> String {
        self.seal_with(self.current_version(), what, plaintext).expect("the current version is held")
    }

    /// Seals `plaintext` under `version`.
    pub fn seal_with(&self, version: u32, what: Identity<'_>, plaintext: &[u8]) -> Result<String, KeyringError> {
        let key = self.key(version)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness");
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(what.aad(version)), &mut buf)
            .map_err(|_| KeyringError::Unsealable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{version}:{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `what` under any version the keyring holds.
    pub fn open(&self, what: Identity<'_>, sealed: &str) -> Result<Vec<u8>, KeyringError> {
        let (version, body) = split(sealed).ok_or(KeyringError::NotSealed)?;
        let key = self.key(version)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyringError::Unsealable)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(KeyringError::Unsealable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyringError::Unsealable)?;
        let mut buf = ciphertext.to_vec();
        let plain =
            key.open_in_place(nonce, Aad::from(what.aad(version)), &mut buf).map_err(|_| KeyringError::Unsealable)?;
        Ok(plain.to_vec())
    }
}

fn split(sealed: &str) -> Option<(u32, &str)> {
    let rest = sealed.strip_prefix(PREFIX)?;
    let (version, body) = rest.split_once(':')?;
    Some((version.parse().ok()?, body))
}

/// The version a stored value is sealed under; `None` for a value that is not sealed (what a
/// release before the keyring stored).
pub fn sealed_version(stored: &str) -> Option<u32> {
    split(stored).map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Identity<'static> = Identity { kind: "access-key-secret", id: "AKIAEXAMPLE" };

    #[test]
    fn seal_and_open_round_trip_under_the_current_version() {
        let ring = Keyring::generate();
        let sealed = ring.seal(KEY, b"wJalrXUtnFEMI");
        assert!(sealed.starts_with("sealed:v1:"));
        assert!(!sealed.contains("wJalrXUtnFEMI"));
        assert_eq!(ring.open(KEY, &sealed).unwrap(), b"wJalrXUtnFEMI");
        assert_ne!(ring.seal(KEY, b"x"), ring.seal(KEY, b"x"), "a fresh nonce each time");
        assert_eq!(sealed_version(&sealed), Some(1));
        assert_eq!(sealed_version("plain secret"), None);
    }

    #[test]
    fn a_value_does_not_open_for_another_identity_or_version() {
        let ring = Keyring::generate();
        let sealed = ring.seal(KEY, b"s");
        let other_row = Identity { kind: "access-key-secret", id: "AKIAOTHER" };
        assert_eq!(ring.open(other_row, &sealed), Err(KeyringError::Unsealable));
        let other_kind = Identity { kind: "registry-secret", id: "AKIAEXAMPLE" };
        assert_eq!(ring.open(other_kind, &sealed), Err(KeyringError::Unsealable));
        // Relabelled as version 2 of a keyring that holds the same bytes as version 2.
        let (two, _) = ring.with_new_version();
        let mut same = two.clone();
        let k1 = *two.keys.get(&1).unwrap();
        same.keys.insert(2, k1);
        let relabelled = sealed.replacen("sealed:v1:", "sealed:v2:", 1);
        assert_eq!(same.open(KEY, &relabelled), Err(KeyringError::Unsealable));
        assert_eq!(ring.open(KEY, "sealed:v1:AAAA"), Err(KeyringError::Unsealable));
        assert_eq!(ring.open(KEY, "plain"), Err(KeyringError::NotSealed));
        assert_eq!(ring.open(KEY, &relabelled), Err(KeyringError::UnknownVersion(2)));
    }

    #[test]
    fn new_versions_seal_new_values_and_old_ones_still_open() {
        let ring = Keyring::generate();
        let old = ring.seal(KEY, b"s");
        let (ring, v) = ring.with_new_version();
        assert_eq!((v, ring.current_version(), ring.versions()), (2, 2, vec![1, 2]));
        assert!(ring.seal(KEY, b"s").starts_with("sealed:v2:"));
        assert_eq!(ring.open(KEY, &old).unwrap(), b"s");
        assert!(ring.seal_with(7, KEY, b"s").is_err());
    }

    #[test]
    fn the_file_form_round_trips_and_bad_files_are_refused_by_line() {
        let (ring, _) = Keyring::generate().with_new_version();
        let parsed = Keyring::parse(&ring.to_text()).unwrap();
        assert_eq!(parsed.versions(), vec![1, 2]);
        assert_eq!(parsed.open(KEY, &ring.seal(KEY, b"s")).unwrap(), b"s");
        assert!(!format!("{ring:?}").contains(&STANDARD.encode(ring.keys[&1])));
        assert!(matches!(Keyring::parse("# only a comment\n\n"), Err(KeyringError::Empty)));
        for (text, line) in [("x", 1), ("\n0:AAAA", 2), ("1:!!", 1), ("1:AAAA", 1)] {
            match Keyring::parse(text) {
                Err(KeyringError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let k = STANDARD.encode([7u8; 32]);
        assert!(matches!(Keyring::parse(&format!("1:{k}\n1:{k}")), Err(KeyringError::Malformed { line: 2, .. })));
    }
}
