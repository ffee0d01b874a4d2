//! [`Priority`] and the priority gate behind concurrency caps.
//!
//! When a [`TaskGroup`](super::TaskGroup) or a [`TaskManager`](super::TaskManager) has a
//! concurrency limit, tasks over the limit wait, and a freed slot goes to the waiting task with
//! the highest *effective* priority: its own priority plus one level for every `aging`
//! interval it has waited. A low-priority task therefore never starves: after waiting
//! `aging × (difference in levels)` it outranks any newcomer. Equal effective priorities start
//! in arrival order.
//!
//! Because every waiter ages at the same rate, the order between two waiters never changes
//! while they wait, so the queue is an ordered map keyed once on arrival (`O(log n)` per task).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use uno_runtime::task::{Priority, TaskGroup};
//!
//! let mut group = TaskGroup::<u32>::builder("batch").limit(2).detached().unwrap();
//! group.spawn_with_priority("urgent", Priority::HIGH, async { Ok::<_, std::io::Error>(1) }).unwrap();
//! group.spawn_with_priority("later", Priority::LOW, async { Ok::<_, std::io::Error>(2) }).unwrap();
//! assert_eq!(group.join().await.unwrap(), [1, 2]);
//! # }
//! ```

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// A task's priority: higher starts first when a concurrency cap makes tasks wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Priority(pub i32);

impl Priority {
    /// Background work.
    pub const LOW: Priority = Priority(0);
    /// The default.
    pub const NORMAL: Priority = Priority(10);
    /// Latency-sensitive work.
    pub const HIGH: Priority = Priority(20);
    /// Work that must run before anything else that waits.
    pub const CRITICAL: Priority = Priority(30);
}

/// The default aging interval: a task gains one priority level per 100 ms of waiting.
pub const DEFAULT_AGING: Duration = Duration::from_millis(100);

type Key = (Reverse<i128>, u64);

struct GateState {
    available: usize,
    seq: u64,
    waiters: BTreeMap<Key, oneshot::Sender<()>>,
}

/// A counting gate whose waiters are served by aged priority.
pub(crate) struct PriorityGate {
    state: Mutex<GateState>,
    aging_nanos: i128,
    epoch: Instant,
}

impl std::fmt::Debug for PriorityGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityGate")
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl PriorityGate {
    pub(crate) fn new(limit: usize, aging: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                available: limit,
                seq: 0,
                waiters: BTreeMap::new(),
            }),
            aging_nanos: aging.as_nanos().max(1) as i128,
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many tasks are waiting for a slot.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Waits for a slot.
    ///
    /// Cancel safe: a waiter dropped before or after being granted gives its slot on.
    pub(crate) async fn acquire(self: &Arc<Self>, priority: Priority) -> GatePermit {
        let (key, rx) = {
            let mut s = self.lock();
            if s.available > 0 && s.waiters.is_empty() {
                s.available -= 1;
                return GatePermit { gate: self.clone() };
            }
            // effective(t) = priority + (t - enqueued) / aging: the order is fixed at arrival.
            let enqueued = Instant::now().duration_since(self.epoch).as_nanos() as i128;
            let rank = i128::from(priority.0) * self.aging_nanos - enqueued;
            s.seq += 1;
            let key = (Reverse(rank), s.seq);
            let (tx, rx) = oneshot::channel();
            s.waiters.insert(key, tx);
            (key, rx)
        };
        let mut waiter = Waiter {
            gate: self,
            key,
            rx: Some(rx),
        };
        if let Some(rx) = waiter.rx.as_mut() {
            // The sender is only dropped after a send, or with the gate itself.
            let _ = rx.await;
        }
        waiter.rx = None;
        GatePermit { gate: self.clone() }
    }

    fn release(&self) {
        loop {
            let next = {
                let mut s = self.lock();
                match s.waiters.pop_first() {
                    Some((_, tx)) => tx,
                    None => {
                        s.available += 1;
                        return;
                    }
                }
            };
            if next.send(()).is_ok() {
                return;
            }
        }
    }
}

struct Waiter<'a> {
    gate: &'a Arc<PriorityGate>,
    key: Key,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        if self.gate.lock().waiters.remove(&self.key).is_some() {
            return; // never granted
        }
        rx.close();
        if rx.try_recv().is_ok() {
            // Granted, but the waiter went away: pass the slot on.
            self.gate.release();
        }
    }
}

/// One slot of a [`PriorityGate`], given back on drop.
pub(crate) struct GatePermit {
    gate: Arc<PriorityGate>,
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        self.gate.release();
    }
}
