//! `AsyncBatcher` (in progress).
