//! Authentication logic with no IO: AWS Signature Version 4 (verify and sign), the registry
//! tokens `GetAuthorizationToken` hands out, and generation of access keys.

pub mod keys;
pub mod sigv4;
pub mod token;

/// Seconds since the Unix epoch; every function here takes the time as an argument.
pub type EpochSeconds = i64;
