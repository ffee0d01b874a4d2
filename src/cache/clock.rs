//! The cache's clock: nanoseconds since a base, read either precisely (tokio's clock,
//! honouring paused time) or coarsely (a process-wide value refreshed every millisecond
//! by one background thread, so a hit costs an atomic load instead of a clock read).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Resolution of the coarse clock.
pub(crate) const COARSE_RESOLUTION: Duration = Duration::from_millis(1);

struct Coarse {
    base: std::time::Instant,
    now: AtomicU64,
    ticking: AtomicBool,
}

static COARSE: OnceLock<Coarse> = OnceLock::new();

fn coarse() -> &'static Coarse {
    COARSE.get_or_init(|| {
        let c = Coarse {
            base: std::time::Instant::now(),
            now: AtomicU64::new(0),
            ticking: AtomicBool::new(false),
        };
        let spawned = std::thread::Builder::new()
            .name("uno-coarse-clock".into())
            .spawn(|| loop {
                std::thread::sleep(COARSE_RESOLUTION);
                if let Some(c) = COARSE.get() {
                    c.now.store(nanos(c.base.elapsed()), Ordering::Relaxed);
                }
            });
        c.ticking.store(spawned.is_ok(), Ordering::Relaxed);
        c
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A cache's time source.
pub(crate) enum Clock {
    /// tokio's clock (paused time in tests), read on every call.
    Precise(tokio::time::Instant),
    /// The process-wide coarse clock.
    Coarse,
}

impl Clock {
    pub(crate) fn new(coarse_clock: bool) -> Self {
        if coarse_clock {
            let _ = coarse();
            Clock::Coarse
        } else {
            Clock::Precise(tokio::time::Instant::now())
        }
    }

    /// Nanoseconds since this clock's base.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Clock::Precise(base) => nanos(base.elapsed()),
            Clock::Coarse => {
                let c = coarse();
                if c.ticking.load(Ordering::Relaxed) {
                    c.now.load(Ordering::Relaxed)
                } else {
                    nanos(c.base.elapsed())
                }
            }
        }
    }
}

pub(crate) fn duration_nanos(d: Duration) -> u64 {
    nanos(d)
}
