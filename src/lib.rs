#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use uno_actors as actors;

pub mod batch;
pub mod cache;
pub mod context;
