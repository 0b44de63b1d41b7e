//! The ciphertext blobs Berth's KMS hands out (`Encrypt`, `GenerateDataKey`) and takes back
//! (`Decrypt`): a version byte, the key's id (its UUID's 16 bytes) and the id of the key
//! material that sealed it (32 bytes), then the value sealed under that material
//! (`berth_envelope::wrap`). The header and the request's encryption context are the AAD, so
//! a blob opens only under its own key and material with the same context, and `Decrypt` needs
//! no key id: the blob names its key, as KMS's do.

use std::collections::BTreeMap;

/// The format's version byte.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 16;
pub const MATERIAL_ID_LEN: usize = 32;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + MATERIAL_ID_LEN;

/// The key and material a ciphertext blob names, and what they sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext<'a> {
    pub key_id: uuid::Uuid,
    /// The material's id, as hex (KMS's `KeyMaterialId`).
    pub material_id: String,
    header: &'a [u8],
    pub sealed: &'a [u8],
}

impl<'a> Ciphertext<'a> {
    /// Reads a blob's header; `None` if it is not a blob of this format.
    pub fn parse(blob: &'a [u8]) -> Option<Self> {
        if blob.len() < HEADER_LEN || blob[0] != VERSION {
            return None;
        }
        let key_id = uuid::Uuid::from_slice(&blob[1..1 + KEY_ID_LEN]).ok()?;
        Some(Ciphertext {
            key_id,
            material_id: hex::encode(&blob[1 + KEY_ID_LEN..HEADER_LEN]),
            header: &blob[..HEADER_LEN],
            sealed: &blob[HEADER_LEN..],
        })
    }

    /// The AAD this blob was sealed with, given the request's encryption context.
    pub fn aad(&self, context: &BTreeMap<String, String>) -> Vec<u8> {
        aad(self.header, context)
    }
}

/// A blob's header for `key_id` and `material_id` (hex); `None` if either is malformed.
pub fn header(key_id: &str, material_id: &str) -> Option<Vec<u8>> {
    let key = uuid::Uuid::parse_str(key_id).ok()?;
    let material = hex::decode(material_id).ok().filter(|m| m.len() == MATERIAL_ID_LEN)?;
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.push(VERSION);
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(&material);
    Some(h)
}

/// The AAD of a blob with `header` under `context`: the header, then each pair in key order,
/// each string length-prefixed so that no two contexts give the same bytes.
pub fn aad(header: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = header.to_vec();
    for (k, v) in context {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// A fresh material id: 32 random bytes as hex.
pub fn new_material_id() -> String {
    hex::encode(berth_envelope::generate_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_blob_names_its_key_and_material() {
        let key_id = uuid::Uuid::new_v4().to_string();
        let material = new_material_id();
        let mut blob = header(&key_id, &material).unwrap();
        blob.extend_from_slice(b"sealed");
        let c = Ciphertext::parse(&blob).unwrap();
        assert_eq!(c.key_id.to_string(), key_id);
        assert_eq!(c.material_id, material);
        assert_eq!(c.sealed, b"sealed");
        assert!(Ciphertext::parse(&blob[..10]).is_none());
        blob[0] = 2;
        assert!(Ciphertext::parse(&blob).is_none());
        assert!(header("not-a-uuid", &material).is_none());
        assert!(header(&key_id, "abcd").is_none());
    }

    #[test]
    fn contexts_give_distinct_aads() {
        let h = [1u8; HEADER_LEN];
        let a = aad(&h, &ctx(&[("ab", "c")]));
        let b = aad(&h, &ctx(&[("a", "bc")]));
        assert_ne!(a, b, "length prefixes keep the split between key and value");
        assert_eq!(aad(&h, &ctx(&[("x", "1"), ("y", "2")])), aad(&h, &ctx(&[("y", "2"), ("x", "1")])));
        assert_ne!(aad(&h, &ctx(&[])), aad(&h, &ctx(&[("", "")])));
    }
}
