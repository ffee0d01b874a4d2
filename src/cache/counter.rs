//! A striped counter: hot-path increments touch a per-thread cache line, so counting
//! hits never contends on one shared atomic.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

/// A monotonically increasing counter split over cache-padded stripes.
pub(crate) struct StripedCounter {
    cells: [Padded; STRIPES],
}

impl Default for StripedCounter {
    fn default() -> Self {
        Self {
            cells: std::array::from_fn(|_| Padded::default()),
        }
    }
}

impl StripedCounter {
    /// Adds one; relaxed, per-thread stripe.
    #[inline]
    pub(crate) fn inc(&self) {
        self.cells[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum over every stripe (a relaxed, possibly slightly stale read).
    pub(crate) fn get(&self) -> u64 {
        self.cells
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_threads() {
        let c = std::sync::Arc::new(StripedCounter::default());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
            })
            .collect();
        for h in hs {
            assert!(h.join().is_ok());
        }
        assert_eq!(c.get(), 4000);
    }
}
