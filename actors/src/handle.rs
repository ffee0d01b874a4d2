//! [`SupervisedRef`]: an address that survives restarts.
//!
//! A restart in ractor is a new actor with a new `ActorRef` and an empty mailbox. A
//! `SupervisedRef` always points at the current incarnation: a `cast` or `call` made while the
//! node is down (restarting or in backoff) waits for the next incarnation, bounded by the ref's
//! restart wait (default 5 s), and only then fails with an error naming the node. A message that
//! ractor hands back undelivered (the old incarnation died between the lookup and the send) is
//! sent again, never dropped; a cast that finally fails hands the message back in
//! [`CastError`].
//!
//! Messages already accepted into a mailbox die with that incarnation, as in Erlang: a `call`
//! reports that as [`RefError::NoReply`] so the caller knows.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
//! use uno_actors::{AsyncManager, ManagerConfig, WorkerSpec};
//!
//! struct Counter;
//! enum Msg { Add(u64), Get(RpcReplyPort<u64>) }
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     type State = u64;
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<u64, ActorProcessingErr> { Ok(0) }
//!     async fn handle(&self, _: ActorRef<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorProcessingErr> {
//!         match msg {
//!             Msg::Add(k) => *n += k,
//!             Msg::Get(reply) => { let _ = reply.send(*n); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let counter = manager.spawn(WorkerSpec::new("counter", |_| (Counter, ()))).await.unwrap();
//! counter.cast(Msg::Add(2)).await.unwrap();
//! assert_eq!(counter.call(Msg::Get).await.unwrap(), 2);
//! assert_eq!(counter.path().as_deref(), Some("root/counter"));
//! manager.shutdown(std::time::Duration::from_secs(1)).await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, Message, MessagingErr, RpcReplyPort};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{CastError, RefError};

/// Default bound on how long a ref waits for a restarting node.
pub const DEFAULT_RESTART_WAIT: Duration = Duration::from_secs(5);

pub(crate) enum SlotState<M> {
    NotStarted,
    Running { actor: ActorRef<M>, incarnation: u64 },
    Down { incarnation: u64 },
    Stopped,
}

pub(crate) struct SlotInner<M> {
    path: Option<Arc<str>>,
    state: SlotState<M>,
    incarnation: u64,
    manager_exited: Option<CancellationToken>,
}

/// The shared cell behind every clone of one node's `SupervisedRef`.
pub(crate) struct Slot<M> {
    name: String,
    tx: watch::Sender<SlotInner<M>>,
}

/// Type-erased control of a slot, for supervisors.
pub(crate) trait SlotControl: Send + Sync {
    /// The node is down and may come back: refs wait.
    fn mark_down(&self);
    /// The node is gone for good: refs fail at once.
    fn mark_stopped(&self);
}

impl<M: Message> Slot<M> {
    pub(crate) fn new(name: String) -> Self {
        let (tx, _) = watch::channel(SlotInner {
            path: None,
            state: SlotState::NotStarted,
            incarnation: 0,
            manager_exited: None,
        });
        Self { name, tx }
    }

    pub(crate) fn set_running(&self, path: String, actor: ActorRef<M>, manager_exited: CancellationToken) {
        self.tx.send_modify(|s| {
            s.incarnation += 1;
            if s.path.as_deref() != Some(path.as_str()) {
                s.path = Some(path.into());
            }
            s.manager_exited = Some(manager_exited);
            s.state = SlotState::Running {
                actor,
                incarnation: s.incarnation,
            };
        });
    }
}

impl<M: Message> SlotControl for Slot<M> {
    fn mark_down(&self) {
        self.tx.send_if_modified(|s| match s.state {
            SlotState::Running { incarnation, .. } => {
                s.state = SlotState::Down { incarnation };
                true
            }
            _ => false,
        });
    }

    fn mark_stopped(&self) {
        self.tx.send_modify(|s| s.state = SlotState::Stopped);
    }
}

/// The address of a supervised node, stable across its restarts. Cheap to clone.
pub struct SupervisedRef<M> {
    slot: Arc<Slot<M>>,
    restart_wait: Duration,
}

impl<M> Clone for SupervisedRef<M> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            restart_wait: self.restart_wait,
        }
    }
}

impl<M: Message> std::fmt::Debug for SupervisedRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedRef")
            .field("path", &self.path())
            .field("name", &self.slot.name)
            .finish()
    }
}

enum Attempt<M> {
    Sent,
    Wait { message: M, past: Option<u64> },
}

impl<M: Message> SupervisedRef<M> {
    pub(crate) fn new(slot: Arc<Slot<M>>) -> Self {
        Self {
            slot,
            restart_wait: DEFAULT_RESTART_WAIT,
        }
    }

    /// A clone whose casts and calls wait at most `wait` for a restarting node.
    pub fn with_restart_wait(mut self, wait: Duration) -> Self {
        self.restart_wait = wait;
        self
    }

    /// The node's path, once it has been started.
    pub fn path(&self) -> Option<String> {
        self.slot.tx.borrow().path.as_deref().map(str::to_string)
    }

    fn path_or_name(&self) -> String {
        self.path().unwrap_or_else(|| self.slot.name.clone())
    }

    /// The current incarnation's raw ractor address, if the node is running. uno never hides
    /// ractor: use it for anything ractor offers; it stops working when the node restarts.
    pub fn current(&self) -> Option<ActorRef<M>> {
        match &self.slot.tx.borrow().state {
            SlotState::Running { actor, .. } => Some(actor.clone()),
            _ => None,
        }
    }

    /// How many times the node has been started (0 before its first start).
    pub fn incarnation(&self) -> u64 {
        self.slot.tx.borrow().incarnation
    }

    /// Whether the node is up right now.
    pub fn is_running(&self) -> bool {
        matches!(self.slot.tx.borrow().state, SlotState::Running { .. })
    }

    fn try_send(&self, message: M) -> Result<Attempt<M>, CastError<M>> {
        let s = self.slot.tx.borrow();
        match &s.state {
            SlotState::Running { actor, incarnation } => match actor.send_message(message) {
                Ok(()) => Ok(Attempt::Sent),
                Err(MessagingErr::SendErr(message)) => Ok(Attempt::Wait {
                    message,
                    past: Some(*incarnation),
                }),
                Err(_) => unreachable_send_error(),
            },
            SlotState::Down { incarnation } => Ok(Attempt::Wait {
                message,
                past: Some(*incarnation),
            }),
            SlotState::NotStarted => Ok(Attempt::Wait { message, past: None }),
            SlotState::Stopped => {
                let path = s.path.as_deref().map_or_else(|| self.slot.name.clone(), str::to_string);
                Err(CastError {
                    reason: RefError::NodeStopped { path },
                    message,
                })
            }
        }
    }

    /// Waits until an incarnation other than `past` is running (or the node stops for good).
    async fn wait_next(&self, past: Option<u64>, deadline: Instant) -> Result<(), RefError> {
        let mut rx = self.slot.tx.subscribe();
        let exited = rx.borrow().manager_exited.clone();
        let changed = rx.wait_for(|s| match s.state {
            SlotState::Running { incarnation, .. } => Some(incarnation) != past,
            SlotState::Stopped => true,
            _ => false,
        });
        let manager_gone = async {
            match exited {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, changed) => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(RefError::NodeStopped { path: self.path_or_name() }),
                Err(_) if past.is_none() && self.path().is_none() => {
                    Err(RefError::NotStarted { name: self.slot.name.clone() })
                }
                Err(_) => Err(RefError::RestartTimeout { path: self.path_or_name(), waited: self.restart_wait }),
            },
            _ = manager_gone => Err(RefError::NodeStopped { path: self.path_or_name() }),
        }
    }

    /// Sends a message to the current incarnation without waiting for a reply. While the node
    /// is down, waits (up to the restart wait) for the next incarnation. The fast path (node
    /// running) does not yield.
    ///
    /// # Cancel safety
    /// Not cancel safe while waiting for a restart: dropping the future then drops the message.
    /// Once it has returned `Ok`, the message is in the mailbox of the incarnation that was
    /// current at that moment.
    ///
    /// # Errors
    /// [`RefError::NodeStopped`] when the node is gone for good, [`RefError::RestartTimeout`]
    /// when it stayed down longer than the restart wait, [`RefError::NotStarted`] when the spec
    /// was never spawned. The message is handed back in every case.
    pub async fn cast(&self, message: M) -> Result<(), CastError<M>> {
        match self.try_send(message)? {
            Attempt::Sent => Ok(()),
            // Boxed so that the fast path's future stays small: the wait is the rare case.
            Attempt::Wait { message, past } => Box::pin(self.cast_after_wait(message, past)).await,
        }
    }

    async fn cast_after_wait(&self, mut message: M, mut past: Option<u64>) -> Result<(), CastError<M>> {
        let deadline = Instant::now() + self.restart_wait;
        loop {
            if let Err(reason) = self.wait_next(past, deadline).await {
                return Err(CastError { reason, message });
            }
            match self.try_send(message)? {
                Attempt::Sent => return Ok(()),
                Attempt::Wait { message: m, past: p } => {
                    message = m;
                    past = p;
                }
            }
        }
    }

    /// Sends without ever waiting: fails at once unless the node is running.
    ///
    /// # Errors
    /// As [`cast`](Self::cast), with [`RefError::RestartTimeout`] (`waited: 0`) when the node
    /// is down right now.
    pub fn try_cast(&self, message: M) -> Result<(), CastError<M>> {
        match self.try_send(message)? {
            Attempt::Sent => Ok(()),
            Attempt::Wait { message, past } => {
                let reason = if past.is_none() {
                    RefError::NotStarted {
                        name: self.slot.name.clone(),
                    }
                } else {
                    RefError::RestartTimeout {
                        path: self.path_or_name(),
                        waited: Duration::ZERO,
                    }
                };
                Err(CastError { reason, message })
            }
        }
    }

    /// Sends a request built around a reply port and waits for the reply, with no time limit
    /// on the handler (the wait for a restarting node is still bounded).
    ///
    /// # Cancel safety
    /// Dropping the future abandons the call; if the request was delivered the actor's reply
    /// is discarded.
    ///
    /// # Errors
    /// As [`cast`](Self::cast), plus [`RefError::NoReply`] when the incarnation that received the
    /// request stopped before replying.
    pub async fn call<R, F>(&self, build: F) -> Result<R, RefError>
    where
        R: Send + 'static,
        F: FnOnce(RpcReplyPort<R>) -> M,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cast(build(RpcReplyPort::from(tx))).await.map_err(|e| e.reason)?;
        rx.await.map_err(|_| RefError::NoReply {
            path: self.path_or_name(),
        })
    }

    /// [`call`](Self::call) bounded by `limit` as a whole (waiting for a restart included).
    ///
    /// # Cancel safety
    /// As [`call`](Self::call).
    ///
    /// # Errors
    /// As [`call`](Self::call), plus [`RefError::CallTimeout`] naming the node and the limit.
    pub async fn call_timeout<R, F>(&self, build: F, limit: Duration) -> Result<R, RefError>
    where
        R: Send + 'static,
        F: FnOnce(RpcReplyPort<R>) -> M,
    {
        match tokio::time::timeout(limit, self.call(build)).await {
            Ok(r) => r,
            Err(_) => Err(RefError::CallTimeout {
                path: self.path_or_name(),
                limit,
            }),
        }
    }

    /// Waits until the node is running and returns its current raw address.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// # Errors
    /// As [`cast`](Self::cast).
    pub async fn running(&self) -> Result<ActorRef<M>, RefError> {
        if let Some(a) = self.current() {
            return Ok(a);
        }
        let past = match self.slot.tx.borrow().state {
            SlotState::Down { incarnation } => Some(incarnation),
            _ => None,
        };
        self.wait_next(past, Instant::now() + self.restart_wait).await?;
        self.current().ok_or_else(|| RefError::NodeStopped {
            path: self.path_or_name(),
        })
    }
}

#[cold]
fn unreachable_send_error() -> ! {
    // ractor's `send_message` on a local actor only ever fails with `SendErr`.
    unreachable!("ractor send_message returned an error other than SendErr")
}
