//! Pure repository rules, decided without IO: which tags a repository lets move, and what a
//! lifecycle policy does to a repository's images.

pub mod lifecycle;
pub mod mutability;
pub mod scanning;
pub mod wildcard;

pub use mutability::{MutabilityError, TagMutability};
