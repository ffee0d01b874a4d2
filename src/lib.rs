//! uno: an actor-based supervision runtime for async Rust.
#![warn(missing_docs)]

pub use uno_actors as actors;

pub mod resource;
