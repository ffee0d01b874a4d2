//! Resilience (placeholder while it is written).
