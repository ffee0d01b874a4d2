//! uno-actors: the supervision kernel of uno.
#![warn(missing_docs)]

pub mod backoff;
