//! Pure repository rules, decided without IO: which tags a repository lets move, what a
//! lifecycle policy does to a repository's images, how pull-through cache rules map
//! repositories to upstream registries, and where replication sends a repository's pushes.

pub mod lifecycle;
pub mod mutability;
pub mod pull_through;
pub mod replication;
pub mod scanning;
pub mod signing;
pub mod wildcard;

pub use mutability::{MutabilityError, TagMutability};
