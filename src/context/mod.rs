//! Context groups (in progress).
