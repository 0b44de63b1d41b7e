//! Pure repository rules, decided without IO: which tags a repository lets move.

pub mod mutability;
pub mod wildcard;

pub use mutability::{MutabilityError, TagMutability};
