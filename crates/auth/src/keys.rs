//! Access key ids, secrets and principal ids in the shapes AWS uses.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    SystemRandom::new().fill(&mut bytes).expect("system randomness");
    // Both alphabets have a power-of-two size, so the modulo keeps the distribution uniform.
    bytes.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

/// `AKIA` + 16 characters, like an IAM user's long-term key.
pub fn new_access_key_id() -> String {
    format!("AKIA{}", random_string(UPPER_ALNUM, 16))
}

/// 40 characters, like an AWS secret access key.
pub fn new_secret_access_key() -> String {
    random_string(SECRET_CHARS, 40)
}

/// `AIDA` + 17 characters, like an IAM user's unique id.
pub fn new_user_id() -> String {
    format!("AIDA{}", random_string(UPPER_ALNUM, 17))
}

/// 32 random bytes, e.g. a token signing key.
pub fn new_secret_bytes() -> Vec<u8> {
    let mut b = vec![0u8; 32];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b
}

/// Whether a string looks like an access key id a client could send.
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = new_access_key_id();
        assert!(id.starts_with("AKIA") && id.len() == 20 && is_access_key_id(&id));
        assert_eq!(new_secret_access_key().len(), 40);
        assert_ne!(new_secret_access_key(), new_secret_access_key());
        assert!(new_user_id().starts_with("AIDA"));
        assert!(!is_access_key_id("AKIA/../x"));
    }
}
