//! [`AsyncBatcher`]: the queue, the flush loop and the batch tasks.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{BatchError, BatcherConfig, BatcherConfigError, BatcherStats};

type BatchFn<I, O, E> = dyn Fn(Vec<I>) -> BoxFuture<'static, Result<Vec<O>, E>> + Send + Sync;
type Reply<O, E> = oneshot::Sender<Result<O, BatchError<E>>>;

/// Called (with the panic message) after a batch function panicked and the callers of
/// that batch got [`BatchError::Panicked`]; a supervised loop uses it to fail its node.
pub(crate) type PanicHook = Arc<dyn Fn(String) + Send + Sync>;

/// Distinct items, and for every input the index of its distinct item.
type Split<I> = (Vec<I>, Vec<usize>);

/// Dedup mode: how to split a batch into distinct items and fan results back out.
struct Dedup<I, O> {
    /// Distinct items, and for every input the index of its distinct item.
    split: fn(Vec<I>) -> Split<I>,
    clone_out: fn(&O) -> O,
}

/// One queued item and the way back to its caller.
struct Pending<I, O, E> {
    id: u64,
    item: I,
    enqueued_at: Instant,
    reply: Reply<O, E>,
}

/// State shared by handles, the flush loop and batch tasks. The queue lives here, not
/// in the loop, so that a restarted loop serves the items queued before.
struct Shared<I, O, E> {
    config: BatcherConfig,
    batch_fn: Arc<BatchFn<I, O, E>>,
    dedup: Option<Dedup<I, O>>,
    queue: Mutex<VecDeque<Pending<I, O, E>>>,
    /// Free queue slots; closed at shutdown so waiting submitters fail at once.
    room: Semaphore,
    /// Free batch slots (`max_concurrent`).
    running: Arc<Semaphore>,
    wake: Notify,
    closing: AtomicBool,
    next_id: AtomicU64,
    batches_tracker: TaskTracker,
    /// Stops the loop started by `build` when a node takes the loop over.
    detached_stop: CancellationToken,
    /// Held by the running flush loop: at most one loop runs at a time, so a loop of a
    /// new incarnation starts only when the previous one has left.
    loop_lease: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when a loop drained the queue after shutdown began and every batch
    /// finished.
    drained: CancellationToken,
    submitted: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    overloaded: AtomicU64,
    batches: AtomicU64,
    batch_failures: AtomicU64,
    panics: AtomicU64,
    deduplicated: AtomicU64,
    queued: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Closes the batcher when the last user handle goes away (queued items are still
/// flushed by the loop).
struct HandleGuard<I, O, E>(Arc<Shared<I, O, E>>);

impl<I, O, E> Drop for HandleGuard<I, O, E> {
    fn drop(&mut self) {
        begin_shutdown(&self.0);
    }
}

fn begin_shutdown<I, O, E>(shared: &Shared<I, O, E>) {
    shared.closing.store(true, Ordering::Release);
    shared.room.close();
    shared.wake.notify_one();
}

/// Collects items submitted concurrently into batches for one batch function. See the
/// [module docs](super).
///
/// Cloning is cheap and shares the batcher. When the last clone is dropped the batcher
/// shuts down gracefully in the background (queued items are still flushed).
pub struct AsyncBatcher<I, O, E> {
    guard: Arc<HandleGuard<I, O, E>>,
}

impl<I, O, E> Clone for AsyncBatcher<I, O, E> {
    fn clone(&self) -> Self {
        Self {
            guard: self.guard.clone(),
        }
    }
}

impl<I, O, E> std::fmt::Debug for AsyncBatcher<I, O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncBatcher")
            .field("config", &self.guard.0.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AsyncBatcher`]; see [`AsyncBatcher::builder`].
#[derive(Debug, Clone)]
pub struct AsyncBatcherBuilder {
    config: BatcherConfig,
}

impl AsyncBatcherBuilder {
    /// Flush as soon as this many items are queued (default 100).
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.config.max_batch_size = n;
        self
    }

    /// Flush this long after the oldest queued item arrived, full or not (default 10 ms).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.config.max_wait = d;
        self
    }

    /// Run at most this many batches at once (default 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// Queue at most this many items (default 10 000); `submit` waits for room.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.config.queue_capacity = n;
        self
    }

    /// Fail `submit` with [`BatchError::Overloaded`] when the queue stays full this long
    /// (default: wait for room as long as it takes).
    pub fn overload_timeout(mut self, d: Duration) -> Self {
        self.config.overload_timeout = Some(d);
        self
    }

    fn validate(&self) -> Result<(), BatcherConfigError> {
        let c = &self.config;
        let batcher = c.name.clone();
        if c.max_batch_size == 0 {
            return Err(BatcherConfigError::ZeroBatchSize { batcher });
        }
        if c.max_concurrent == 0 {
            return Err(BatcherConfigError::ZeroConcurrency { batcher });
        }
        if c.queue_capacity == 0 {
            return Err(BatcherConfigError::ZeroQueueCapacity { batcher });
        }
        Ok(())
    }

    /// Validates the configuration and starts the batcher's flush loop on the current
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BatcherConfigError`] when a size, the concurrency or the capacity is zero.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn build<I, O, E, F, Fut>(self, batch_fn: F) -> Result<AsyncBatcher<I, O, E>, BatcherConfigError>
    where
        I: Send + 'static,
        O: Send + 'static,
        E: Send + Sync + 'static,
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        self.validate()?;
        Ok(AsyncBatcher::start(self.config, boxed(batch_fn), None))
    }

    /// Like [`build`](Self::build), in dedup mode (as a DataLoader): identical items in
    /// one batch are passed to the batch function once, and every caller of that item
    /// gets a clone of its result.
    ///
    /// # Errors
    ///
    /// [`BatcherConfigError`] when a size, the concurrency or the capacity is zero.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn build_dedup<I, O, E, F, Fut>(self, batch_fn: F) -> Result<AsyncBatcher<I, O, E>, BatcherConfigError>
    where
        I: Hash + Eq + Send + 'static,
        O: Clone + Send + 'static,
        E: Send + Sync + 'static,
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        self.validate()?;
        let dedup = Dedup {
            split: split_distinct::<I>,
            clone_out: O::clone,
        };
        Ok(AsyncBatcher::start(self.config, boxed(batch_fn), Some(dedup)))
    }
}

fn boxed<I, O, E, F, Fut>(f: F) -> Arc<BatchFn<I, O, E>>
where
    F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
{
    Arc::new(move |items| f(items).boxed())
}

fn split_distinct<I: Hash + Eq>(items: Vec<I>) -> Split<I> {
    let mut index: HashMap<&I, usize> = HashMap::with_capacity(items.len());
    let mut map = Vec::with_capacity(items.len());
    let mut keep = Vec::with_capacity(items.len());
    for (pos, item) in items.iter().enumerate() {
        let next = index.len();
        let slot = *index.entry(item).or_insert(next);
        if slot == next {
            keep.push(pos);
        }
        map.push(slot);
    }
    drop(index);
    let mut keep = keep.into_iter().peekable();
    let distinct = items
        .into_iter()
        .enumerate()
        .filter_map(|(pos, item)| {
            if keep.peek() == Some(&pos) {
                keep.next();
                Some(item)
            } else {
                None
            }
        })
        .collect();
    (distinct, map)
}

/// Removes a dropped caller's item from the queue unless a batch took it already.
struct SubmitGuard<'a, I, O, E> {
    shared: &'a Shared<I, O, E>,
    id: u64,
    armed: bool,
}

impl<I, O, E> Drop for SubmitGuard<'_, I, O, E> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = {
            let mut q = lock(&self.shared.queue);
            match q.iter().position(|p| p.id == self.id) {
                Some(pos) => q.remove(pos).is_some(),
                None => false,
            }
        };
        if removed {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.cancelled.fetch_add(1, Ordering::Relaxed);
            self.shared.room.add_permits(1);
        }
    }
}

impl AsyncBatcher<(), (), ()> {
    /// Starts configuring a batcher named `name`.
    pub fn builder(name: impl Into<String>) -> AsyncBatcherBuilder {
        AsyncBatcherBuilder {
            config: BatcherConfig {
                name: name.into(),
                max_batch_size: 100,
                max_wait: Duration::from_millis(10),
                max_concurrent: 1,
                queue_capacity: 10_000,
                overload_timeout: None,
            },
        }
    }
}

impl<I, O, E> AsyncBatcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    fn start(config: BatcherConfig, batch_fn: Arc<BatchFn<I, O, E>>, dedup: Option<Dedup<I, O>>) -> Self {
        let shared = Arc::new(Shared {
            room: Semaphore::new(config.queue_capacity),
            running: Arc::new(Semaphore::new(config.max_concurrent)),
            config,
            batch_fn,
            dedup,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            batches_tracker: TaskTracker::new(),
            detached_stop: CancellationToken::new(),
            loop_lease: Arc::new(tokio::sync::Mutex::new(())),
            drained: CancellationToken::new(),
            submitted: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_failures: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        });
        let stop = shared.detached_stop.clone();
        tokio::spawn(run_loop(shared.clone(), stop, None));
        Self {
            guard: Arc::new(HandleGuard(shared)),
        }
    }

    fn shared(&self) -> &Shared<I, O, E> {
        &self.guard.0
    }

    /// The batcher's configuration.
    pub fn config(&self) -> &BatcherConfig {
        &self.shared().config
    }

    /// Queues `item` for the next batch and waits for its own result (by position in
    /// the batch function's output).
    ///
    /// When the queue is full this waits for room (backpressure), up to the configured
    /// overload timeout if there is one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future before a batch took the item removes the item
    /// from the queue; after that, the batch runs and this caller's result is dropped.
    ///
    /// # Errors
    ///
    /// - [`BatchError::Batch`], [`BatchError::WrongLength`] or [`BatchError::Panicked`]
    ///   when this item's batch failed (every caller of that batch gets the error);
    /// - [`BatchError::Overloaded`] when the queue stayed full for the overload timeout;
    /// - [`BatchError::Closed`] when the batcher is shutting down;
    /// - [`BatchError::Lost`] when the batch task was aborted without a result.
    pub async fn submit(&self, item: I) -> Result<O, BatchError<E>> {
        let shared = self.shared();
        let closed = || BatchError::Closed {
            batcher: shared.config.name.clone(),
        };
        if shared.closing.load(Ordering::Acquire) {
            return Err(closed());
        }
        let permit = match shared.config.overload_timeout {
            None => shared.room.acquire().await.map_err(|_| closed())?,
            Some(limit) => match tokio::time::timeout(limit, shared.room.acquire()).await {
                Ok(p) => p.map_err(|_| closed())?,
                Err(_) => {
                    shared.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Err(BatchError::Overloaded {
                        batcher: shared.config.name.clone(),
                        capacity: shared.config.queue_capacity,
                        waited: limit,
                    });
                }
            },
        };
        // The slot is given back when a batch takes the item (or the caller leaves).
        permit.forget();
        let (tx, rx) = oneshot::channel();
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut q = lock(&shared.queue);
            q.push_back(Pending {
                id,
                item,
                enqueued_at: Instant::now(),
                reply: tx,
            });
            // Counted under the lock, so the loop's decrement never comes first.
            shared.queued.fetch_add(1, Ordering::Relaxed);
        }
        shared.submitted.fetch_add(1, Ordering::Relaxed);
        shared.wake.notify_one();
        let mut guard = SubmitGuard {
            shared,
            id,
            armed: true,
        };
        let out = rx.await;
        guard.armed = false;
        out.unwrap_or_else(|_| {
            Err(BatchError::Lost {
                batcher: shared.config.name.clone(),
            })
        })
    }

    /// A snapshot of the batcher's counters (relaxed reads, no lock).
    pub fn stats(&self) -> BatcherStats {
        let s = self.shared();
        BatcherStats {
            submitted: s.submitted.load(Ordering::Relaxed),
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
            overloaded: s.overloaded.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            batch_failures: s.batch_failures.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
            deduplicated: s.deduplicated.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            running: s.config.max_concurrent - s.running.available_permits(),
        }
    }

    /// Shuts down gracefully: new submits fail with [`BatchError::Closed`] (also those
    /// waiting for room), every queued item is still flushed in batches, and this
    /// returns when every running batch has finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the shutdown is started before the first await and carries on;
    /// dropping the future only stops waiting for it.
    ///
    /// # Errors
    ///
    /// None.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        begin_shutdown(shared);
        shared.drained.cancelled().await;
    }

    /// Starts refusing new items (as [`shutdown`](Self::shutdown) does) without waiting.
    pub(crate) fn begin_close(&self) {
        begin_shutdown(self.shared());
    }

    /// Resolves when the queue was drained after shutdown began and every batch finished.
    pub(crate) async fn drained(&self) {
        self.shared().drained.cancelled().await;
    }

    /// Takes the flush loop over for a node: stops the loop started by `build` (if it
    /// still runs) and starts one that runs until `stop` is cancelled or the queue is
    /// drained after shutdown. It starts flushing once the previous loop has left; a
    /// panicking batch function calls `on_panic` after its callers got their error.
    pub(crate) fn spawn_owned_loop(
        &self,
        stop: CancellationToken,
        on_panic: PanicHook,
        span: tracing::Span,
    ) -> JoinHandle<()> {
        let shared = self.guard.0.clone();
        shared.detached_stop.cancel();
        tokio::spawn(run_loop(shared, stop, Some(on_panic)).instrument(span))
    }
}

/// The flush loop: waits for a full batch or the oldest item's deadline, then hands
/// the batch to a tracked task (at most `max_concurrent` at once).
///
/// It returns when `stop` is cancelled (leaving the queue to the next loop; running
/// batches carry on), or once the queue is drained after shutdown began and every batch
/// has finished.
async fn run_loop<I, O, E>(shared: Arc<Shared<I, O, E>>, stop: CancellationToken, on_panic: Option<PanicHook>)
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    let lease = shared.loop_lease.clone();
    let _lease = tokio::select! {
        biased;
        () = stop.cancelled() => return,
        l = lease.lock_owned() => l,
    };
    let max = shared.config.max_batch_size;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let closing = shared.closing.load(Ordering::Acquire);
        let (len, oldest) = {
            let q = lock(&shared.queue);
            (q.len(), q.front().map(|p| p.enqueued_at))
        };
        let Some(oldest) = oldest else {
            if closing {
                break;
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = shared.wake.notified() => {}
            }
            continue;
        };
        if !closing && len < max {
            let deadline = oldest + shared.config.max_wait;
            if Instant::now() < deadline {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = shared.wake.notified() => continue,
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            slot = shared.running.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else {
            break;
        };
        let batch: Vec<Pending<I, O, E>> = {
            let mut q = lock(&shared.queue);
            let mut batch = Vec::with_capacity(max.min(q.len()));
            while batch.len() < max {
                let Some(p) = q.pop_front() else { break };
                batch.push(p);
            }
            batch
        };
        let taken = batch.len();
        shared.queued.fetch_sub(taken, Ordering::Relaxed);
        shared.room.add_permits(taken);
        // Callers who left after the pop but before now: skip their items.
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|p| {
                let live = !p.reply.is_closed();
                if !live {
                    shared.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                live
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let batch = run_batch(shared.clone(), batch, slot, on_panic.clone());
        shared.batches_tracker.spawn(batch.instrument(tracing::Span::current()));
    }
    shared.batches_tracker.close();
    shared.batches_tracker.wait().await;
    shared.drained.cancel();
}

/// Runs one batch (panics caught) and answers each caller by position.
async fn run_batch<I, O, E>(
    shared: Arc<Shared<I, O, E>>,
    batch: Vec<Pending<I, O, E>>,
    _slot: OwnedSemaphorePermit,
    on_panic: Option<PanicHook>,
) where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    shared.batches.fetch_add(1, Ordering::Relaxed);
    let name = &shared.config.name;
    let mut replies = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    for p in batch {
        replies.push(p.reply);
        items.push(p.item);
    }
    let batch_size = items.len();
    let (items, fan_out) = match &shared.dedup {
        Some(d) => {
            let (distinct, map) = (d.split)(items);
            shared
                .deduplicated
                .fetch_add((batch_size - distinct.len()) as u64, Ordering::Relaxed);
            (distinct, Some(map))
        }
        None => (items, None),
    };
    let expected = items.len();
    let f = shared.batch_fn.clone();
    let outcome = AssertUnwindSafe(async move { f(items).await }).catch_unwind().await;
    let mut panicked = None;
    let failure: Result<Vec<O>, Box<dyn Fn() -> BatchError<E> + Send>> = match outcome {
        Ok(Ok(outs)) if outs.len() == expected => Ok(outs),
        Ok(Ok(outs)) => {
            let (batcher, got) = (name.clone(), outs.len());
            Err(Box::new(move || BatchError::WrongLength {
                batcher: batcher.clone(),
                expected,
                got,
            }))
        }
        Ok(Err(e)) => {
            let (batcher, source) = (name.clone(), Arc::new(e));
            Err(Box::new(move || BatchError::Batch {
                batcher: batcher.clone(),
                batch_size: expected,
                source: source.clone(),
            }))
        }
        Err(p) => {
            shared.panics.fetch_add(1, Ordering::Relaxed);
            let (batcher, message) = (name.clone(), panic_message(p.as_ref()));
            tracing::error!(batcher = %batcher, %message, "batch function panicked");
            panicked = Some(message.clone());
            Err(Box::new(move || BatchError::Panicked {
                batcher: batcher.clone(),
                message: message.clone(),
            }))
        }
    };
    match failure {
        Ok(outs) => {
            shared.succeeded.fetch_add(replies.len() as u64, Ordering::Relaxed);
            match (fan_out, &shared.dedup) {
                (Some(map), Some(d)) => {
                    for (reply, idx) in replies.into_iter().zip(map) {
                        if let Some(o) = outs.get(idx) {
                            let _ = reply.send(Ok((d.clone_out)(o)));
                        }
                    }
                }
                _ => {
                    for (reply, o) in replies.into_iter().zip(outs) {
                        let _ = reply.send(Ok(o));
                    }
                }
            }
        }
        Err(make) => {
            shared.batch_failures.fetch_add(1, Ordering::Relaxed);
            shared.failed.fetch_add(replies.len() as u64, Ordering::Relaxed);
            for reply in replies {
                let _ = reply.send(Err(make()));
            }
        }
    }
    // Only now, with every caller of this batch answered, may the owner fail.
    if let (Some(message), Some(hook)) = (panicked, on_panic) {
        hook(message);
    }
}
