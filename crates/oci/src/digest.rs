//! Content digests (`algorithm:encoded`) as the OCI image spec defines them, and a streaming
//! hasher for the two algorithms the distribution spec names: `sha256` and `sha512`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Result<Self, DigestError> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if is_algorithm_grammar(other) => Err(DigestError::Unsupported(other.to_string())),
            other => Err(DigestError::Invalid(format!("invalid digest algorithm {other:?}"))),
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported digest algorithm {0:?}")]
    Unsupported(String),
}

/// A validated digest of a supported algorithm. Stored as its canonical string form so it can be
/// used as a key and printed without allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    algorithm: Algorithm,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, encoded) =
            s.split_once(':').ok_or_else(|| DigestError::Invalid(format!("digest {s:?} has no algorithm prefix")))?;
        let algorithm = Algorithm::parse(alg)?;
        if encoded.len() != algorithm.hex_len()
            || !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid(format!(
                "digest {s:?}: {algorithm} needs {} lowercase hex characters",
                algorithm.hex_len()
            )));
        }
        Ok(Digest { text: s.to_string(), algorithm })
    }

    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

fn is_algorithm_grammar(s: &str) -> bool {
    // algorithm-component ([+._-] algorithm-component)*, component = [a-z0-9]+
    !s.is_empty()
        && s.split(['+', '.', '_', '-'])
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// A running hash over streamed bytes.
/// The format of [`Hasher::state`] (sha2's serialized state after this byte).
const STATE_VERSION: u8 = 1;

#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The running state, to be stored and resumed elsewhere ([`Hasher::resume`]): how an
    /// upload's hash survives a restart and moves between nodes without re-reading the bytes.
    /// Only this crate's `resume` reads it (a version byte first).
    pub fn state(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let mut out = vec![STATE_VERSION];
        match self {
            Hasher::Sha256(h) => out.extend_from_slice(&h.serialize()),
            Hasher::Sha512(h) => out.extend_from_slice(&h.serialize()),
        }
        out
    }

    /// A hasher continuing from a `state` of this algorithm; `None` if the bytes are not one.
    pub fn resume(algorithm: Algorithm, state: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let rest = state.strip_prefix(&[STATE_VERSION])?;
        match algorithm {
            Algorithm::Sha256 => {
                let array = rest.try_into().ok()?;
                sha2::Sha256::deserialize(array).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let array = rest.try_into().ok()?;
                sha2::Sha512::deserialize(array).ok().map(Hasher::Sha512)
            }
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { text: format!("{algorithm}:{hex}"), algorithm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_hash_resumes_from_its_state_at_any_offset() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let whole = Digest::from_bytes(algorithm, &data);
            // Cuts inside a block, on a block boundary, at the ends.
            for cut in [0, 1, 63, 64, 65, 127, 128, 500, 1000] {
                let mut first = algorithm.hasher();
                first.update(&data[..cut]);
                let mut resumed = Hasher::resume(algorithm, &first.state()).expect("state resumes");
                resumed.update(&data[cut..]);
                assert_eq!(resumed.finish(), whole, "{algorithm} cut at {cut}");
            }
        }
        let state = Algorithm::Sha256.hasher().state();
        assert!(Hasher::resume(Algorithm::Sha512, &state).is_none(), "another algorithm's state");
        assert!(Hasher::resume(Algorithm::Sha256, &state[1..]).is_none(), "no version byte");
        assert!(Hasher::resume(Algorithm::Sha256, b"").is_none());
    }

    #[test]
    fn hashes_known_values() {
        assert_eq!(Digest::from_bytes(Algorithm::Sha256, b"").as_str(), EMPTY256);
        let d = Digest::from_bytes(Algorithm::Sha512, b"abc");
        assert_eq!(
            d.hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(d.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::from_bytes(Algorithm::Sha256, b"hello world"));
    }

    #[test]
    fn parses_and_rejects() {
        assert!(Digest::parse(EMPTY256).is_ok());
        assert_eq!(Digest::parse(EMPTY256).unwrap().hex().len(), 64);
        // uppercase hex, wrong length, missing prefix, empty
        assert!(matches!(
            Digest::parse(&EMPTY256.to_uppercase()),
            Err(DigestError::Invalid(_) | DigestError::Unsupported(_))
        ));
        assert!(matches!(Digest::parse("sha256:abc"), Err(DigestError::Invalid(_))));
        assert!(matches!(Digest::parse("e3b0c442"), Err(DigestError::Invalid(_))));
        assert!(matches!(Digest::parse(""), Err(DigestError::Invalid(_))));
        assert!(matches!(Digest::parse("sha256:"), Err(DigestError::Invalid(_))));
        // well-formed but unknown algorithm
        assert!(matches!(Digest::parse("blake3:abcd"), Err(DigestError::Unsupported(_))));
        assert!(matches!(Digest::parse("Sha256:abcd"), Err(DigestError::Invalid(_))));
        // sha512 needs 128 chars
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_err());
    }
}
