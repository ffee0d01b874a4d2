//! The live tree: a lock-free registry of nodes and its [`TreeSnapshot`].
//!
//! Every supervisor writes its children's lifecycle (status, restarts, last error, effective
//! policy) into a per-manager [`DashMap`] as it happens. [`AsyncManager::tree`] reads that
//! registry without messaging any actor, so it answers even while supervisors are busy
//! stopping or restarting children. A node may publish stats: plain values with
//! [`NodeStats::set`], or a [`StatsSource`] whose counters are read only when a snapshot is
//! taken (so a hot path only bumps its own atomics).
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use uno_actors::{AsyncManager, ManagerConfig};
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let tree = manager.tree();
//! assert_eq!(tree.root.path, "root");
//! println!("{tree}"); // an indented tree, like tree(1)
//! let json = serde_json::to_string(&tree).unwrap();
//! let back: uno_actors::TreeSnapshot = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, tree);
//! manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # }
//! ```
//!
//! [`AsyncManager::tree`]: crate::AsyncManager::tree

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::spec::{AutoShutdown, Intensity, Restart, RestartBackoff, Shutdown, Strategy};

/// A node's id, unique within its manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// What a node is: a label shown in the tree. The kernel itself only uses `Root`,
/// `Supervisor` and `Worker`; the runtime adds its own kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NodeKind {
    /// The manager's root supervisor.
    Root,
    /// A supervisor.
    Supervisor,
    /// A plain supervised actor.
    Worker,
    /// A long-lived supervised task.
    Task,
    /// A group of short tasks.
    TaskGroup,
    /// A resource actor.
    Resource,
    /// A resource pool.
    Pool,
    /// A cache.
    Cache,
    /// A batcher.
    Batcher,
    /// A database node.
    Db,
    /// A database session.
    Session,
    /// Any other label.
    Other(String),
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            NodeKind::Root => "root",
            NodeKind::Supervisor => "supervisor",
            NodeKind::Worker => "worker",
            NodeKind::Task => "task",
            NodeKind::TaskGroup => "task_group",
            NodeKind::Resource => "resource",
            NodeKind::Pool => "pool",
            NodeKind::Cache => "cache",
            NodeKind::Batcher => "batcher",
            NodeKind::Db => "db",
            NodeKind::Session => "session",
            NodeKind::Other(s) => s,
        };
        f.write_str(s)
    }
}

/// A node's lifecycle status as shown in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NodeStatus {
    /// Being started (`pre_start` running).
    Starting,
    /// Up.
    Running,
    /// Down after a failure, about to be started again.
    Restarting,
    /// Down, waiting out its restart backoff.
    Backoff {
        /// Time left until the next start, when the snapshot was taken.
        next_start_in_ms: u64,
    },
    /// Being stopped.
    Stopping,
    /// Stopped on purpose (or ended normally and not restarted).
    Stopped,
    /// Failed and not restarted (its supervisor gave up, or its start failed).
    Failed,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeStatus::Starting => f.write_str("starting"),
            NodeStatus::Running => f.write_str("running"),
            NodeStatus::Restarting => f.write_str("restarting"),
            NodeStatus::Backoff { next_start_in_ms } => {
                write!(f, "backoff until +{:.3}s", *next_start_in_ms as f64 / 1000.0)
            }
            NodeStatus::Stopping => f.write_str("stopping"),
            NodeStatus::Stopped => f.write_str("stopped"),
            NodeStatus::Failed => f.write_str("failed"),
        }
    }
}

/// The policy in force for a node after inheritance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectivePolicy {
    /// Restart type.
    pub restart: Restart,
    /// Shutdown.
    pub shutdown: Shutdown,
    /// Restart backoff.
    pub backoff: RestartBackoff,
    /// Significant for its supervisor's auto-shutdown.
    pub significant: bool,
    /// For supervisors: their own strategy.
    pub strategy: Option<Strategy>,
    /// For supervisors: their intensity.
    pub intensity: Option<Intensity>,
    /// For supervisors: their auto-shutdown.
    pub auto_shutdown: Option<AutoShutdown>,
}

/// The last error a node reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The error, as text.
    pub message: String,
    /// When (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
}

/// A value a node publishes in its stats map.
pub type StatValue = serde_json::Value;

/// Something whose counters appear in a node's stats. `collect` is called only when a snapshot
/// is taken, so the component's hot path only updates its own atomics.
pub trait StatsSource: Send + Sync + 'static {
    /// Adds this source's current values to `out`.
    fn collect(&self, out: &mut BTreeMap<String, StatValue>);
}

#[derive(Clone, Copy)]
pub(crate) enum Status {
    Starting,
    Running,
    Restarting,
    Backoff(Instant),
    Stopping,
    Stopped,
    Failed,
}

pub(crate) struct NodeEntry {
    pub parent: Option<NodeId>,
    pub seq: u64,
    pub path: Arc<str>,
    pub name: String,
    pub kind: NodeKind,
    pub status: Status,
    pub restarts: u64,
    pub restarts_in_window: u32,
    pub last_error: Option<LastError>,
    pub started_at: Option<(SystemTime, Instant)>,
    pub policy: Option<EffectivePolicy>,
    pub stats: BTreeMap<String, StatValue>,
    pub sources: Vec<Weak<dyn StatsSource>>,
    /// Direct children in the registry, so that removing a leaf never scans the map.
    pub child_count: usize,
}

/// The per-manager registry of nodes.
#[derive(Default)]
pub(crate) struct Registry {
    nodes: DashMap<NodeId, NodeEntry>,
    next: AtomicU64,
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Registry {
    pub fn insert(&self, parent: Option<NodeId>, path: Arc<str>, name: String, kind: NodeKind) -> NodeId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = NodeId(n);
        self.nodes.insert(
            id,
            NodeEntry {
                parent,
                seq: n,
                path,
                name,
                kind,
                status: Status::Starting,
                restarts: 0,
                restarts_in_window: 0,
                last_error: None,
                started_at: None,
                policy: None,
                stats: BTreeMap::new(),
                sources: Vec::new(),
                child_count: 0,
            },
        );
        if let Some(p) = parent {
            self.update(p, |e| e.child_count += 1);
        }
        id
    }

    pub fn update(&self, id: NodeId, f: impl FnOnce(&mut NodeEntry)) {
        if let Some(mut e) = self.nodes.get_mut(&id) {
            f(&mut e);
        }
    }

    pub fn set_status(&self, id: NodeId, status: Status) {
        self.update(id, |e| {
            match status {
                Status::Running => e.started_at = Some((SystemTime::now(), Instant::now())),
                // Each incarnation publishes its own stats.
                Status::Starting => {
                    e.stats.clear();
                    e.sources.clear();
                }
                _ => {}
            }
            e.status = status;
        });
    }

    pub fn set_error(&self, id: NodeId, message: String) {
        self.update(id, |e| {
            e.last_error = Some(LastError {
                message,
                at_unix_ms: unix_ms(SystemTime::now()),
            });
        });
    }

    /// Removes a node and every node below it.
    pub fn remove_subtree(&self, id: NodeId) {
        let Some((_, removed)) = self.nodes.remove(&id) else {
            return;
        };
        if let Some(p) = removed.parent {
            self.update(p, |e| e.child_count = e.child_count.saturating_sub(1));
        }
        if removed.child_count > 0 {
            let prefix = format!("{}/", removed.path);
            self.nodes.retain(|_, e| !e.path.starts_with(&prefix));
        }
    }

    /// Removes every node strictly below `id`.
    pub fn remove_below(&self, id: NodeId) {
        let Some(prefix) = self.nodes.get_mut(&id).and_then(|mut e| {
            let had_children = e.child_count > 0;
            e.child_count = 0;
            had_children.then(|| format!("{}/", e.path))
        }) else {
            return;
        };
        self.nodes.retain(|_, e| !e.path.starts_with(&prefix));
    }

    pub fn paths_not_stopped(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|e| !matches!(e.status, Status::Stopped | Status::Failed))
            .map(|e| e.path.to_string())
            .collect()
    }

    pub fn mark_all_stopped(&self) {
        for mut e in self.nodes.iter_mut() {
            if !matches!(e.status, Status::Failed) {
                e.status = Status::Stopped;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn snapshot(&self) -> TreeSnapshot {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut flat: Vec<(NodeId, Option<NodeId>, u64, NodeSnapshot)> = Vec::with_capacity(self.nodes.len());
        for e in self.nodes.iter() {
            let mut stats = e.stats.clone();
            for s in &e.sources {
                if let Some(s) = s.upgrade() {
                    s.collect(&mut stats);
                }
            }
            let status = match e.status {
                Status::Starting => NodeStatus::Starting,
                Status::Running => NodeStatus::Running,
                Status::Restarting => NodeStatus::Restarting,
                Status::Backoff(until) => NodeStatus::Backoff {
                    next_start_in_ms: until.saturating_duration_since(now).as_millis() as u64,
                },
                Status::Stopping => NodeStatus::Stopping,
                Status::Stopped => NodeStatus::Stopped,
                Status::Failed => NodeStatus::Failed,
            };
            let running = matches!(e.status, Status::Running);
            flat.push((
                *e.key(),
                e.parent,
                e.seq,
                NodeSnapshot {
                    id: *e.key(),
                    path: e.path.to_string(),
                    name: e.name.clone(),
                    kind: e.kind.clone(),
                    status,
                    restarts: e.restarts,
                    restarts_in_window: e.restarts_in_window,
                    last_error: e.last_error.clone(),
                    started_at_unix_ms: e.started_at.map(|(w, _)| unix_ms(w)),
                    uptime_ms: e
                        .started_at
                        .filter(|_| running)
                        .map(|(_, i)| now.saturating_duration_since(i).as_millis() as u64),
                    policy: e.policy.clone(),
                    stats,
                    children: Vec::new(),
                },
            ));
        }
        // Snapshots are large: order indices, not the snapshots, and move each node once, into
        // its parent (children have higher sequence numbers than their parents).
        let mut order: Vec<usize> = (0..flat.len()).collect();
        order.sort_unstable_by_key(|&i| flat[i].2);
        let position: HashMap<NodeId, usize> = flat.iter().enumerate().map(|(i, f)| (f.0, i)).collect();
        let links: Vec<Option<usize>> = flat
            .iter()
            .map(|f| f.1.and_then(|p| position.get(&p).copied()))
            .collect();
        let mut slots: Vec<Option<NodeSnapshot>> = flat.into_iter().map(|f| Some(f.3)).collect();
        let mut roots = Vec::new();
        for &i in order.iter().rev() {
            let Some(mut node) = slots[i].take() else { continue };
            node.children.reverse();
            match links[i].and_then(|p| slots[p].as_mut()) {
                Some(parent) => parent.children.push(node),
                None => roots.push(node),
            }
        }
        roots.reverse();
        let root = if roots.len() == 1 {
            roots.remove(0)
        } else {
            // Only reachable while a manager is being torn down; show what is left.
            NodeSnapshot::placeholder(roots)
        };
        TreeSnapshot {
            taken_at_unix_ms: unix_ms(wall),
            root,
        }
    }
}

/// A handle through which a node publishes stats to the tree.
#[derive(Clone)]
pub struct NodeStats {
    registry: Weak<Registry>,
    id: NodeId,
}

impl fmt::Debug for NodeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeStats").field("id", &self.id).finish()
    }
}

impl NodeStats {
    pub(crate) fn new(registry: &Arc<Registry>, id: NodeId) -> Self {
        Self {
            registry: Arc::downgrade(registry),
            id,
        }
    }

    /// Sets one value in the node's stats map.
    pub fn set(&self, key: impl Into<String>, value: impl Into<StatValue>) {
        if let Some(r) = self.registry.upgrade() {
            let (key, value) = (key.into(), value.into());
            r.update(self.id, |e| {
                e.stats.insert(key, value);
            });
        }
    }

    /// Removes one value.
    pub fn remove(&self, key: &str) {
        if let Some(r) = self.registry.upgrade() {
            r.update(self.id, |e| {
                e.stats.remove(key);
            });
        }
    }

    /// Attaches `source` and hands it back: the node holds it weakly, so its values show for
    /// as long as the caller keeps the returned handle.
    pub fn attach_shared(&self, source: Arc<dyn StatsSource>) -> Arc<dyn StatsSource> {
        self.attach(Arc::downgrade(&source));
        source
    }

    /// Attaches a source read at every snapshot. Held weakly: once the component is dropped, its
    /// values disappear from the node.
    pub fn attach(&self, source: Weak<dyn StatsSource>) {
        if let Some(r) = self.registry.upgrade() {
            r.update(self.id, |e| {
                e.sources.retain(|s| s.strong_count() > 0);
                e.sources.push(source);
            });
        }
    }
}

/// One node of a [`TreeSnapshot`], with its children in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Id, unique within the manager.
    pub id: NodeId,
    /// Path from the root, like `root/db/pool`.
    pub path: String,
    /// Name (the last path segment).
    pub name: String,
    /// Kind label.
    pub kind: NodeKind,
    /// Lifecycle status.
    pub status: NodeStatus,
    /// Restarts since the node was added.
    pub restarts: u64,
    /// Restarts counted in its supervisor's current intensity window.
    pub restarts_in_window: u32,
    /// The last error it reported.
    pub last_error: Option<LastError>,
    /// When the current incarnation started (ms since the Unix epoch).
    pub started_at_unix_ms: Option<u64>,
    /// How long the current incarnation has been running.
    pub uptime_ms: Option<u64>,
    /// Effective policy (absent for the root).
    pub policy: Option<EffectivePolicy>,
    /// Stats the node publishes.
    pub stats: BTreeMap<String, StatValue>,
    /// Children, in start order.
    pub children: Vec<NodeSnapshot>,
}

impl NodeSnapshot {
    fn placeholder(children: Vec<NodeSnapshot>) -> Self {
        Self {
            id: NodeId(u64::MAX),
            path: String::new(),
            name: String::new(),
            kind: NodeKind::Root,
            status: NodeStatus::Stopped,
            restarts: 0,
            restarts_in_window: 0,
            last_error: None,
            started_at_unix_ms: None,
            uptime_ms: None,
            policy: None,
            stats: BTreeMap::new(),
            children,
        }
    }

    /// This node and all below it, depth first in start order.
    pub fn iter(&self) -> impl Iterator<Item = &NodeSnapshot> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let n = stack.pop()?;
            stack.extend(n.children.iter().rev());
            Some(n)
        })
    }

    fn line(&self) -> String {
        let mut s = format!("{} [{}] {}", self.name, self.kind, self.status);
        if let Some(p) = &self.policy {
            if let Some(strategy) = p.strategy {
                s.push_str(&format!(" {strategy:?}"));
            }
            s.push_str(&format!(" {:?}", p.restart).to_lowercase());
        }
        if self.restarts > 0 {
            s.push_str(&format!(
                " restarts={} ({} in window)",
                self.restarts, self.restarts_in_window
            ));
        }
        if let Some(up) = self.uptime_ms {
            s.push_str(&format!(" up={}", fmt_ms(up)));
        }
        for (k, v) in &self.stats {
            s.push_str(&format!(" {k}={v}"));
        }
        if let Some(e) = &self.last_error {
            s.push_str(&format!(" last_error={:?}", e.message));
        }
        s
    }
}

fn fmt_ms(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.as_secs() >= 60 {
        format!("{}m{}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A consistent-enough picture of a manager's whole tree, taken without messaging any actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeSnapshot {
    /// When it was taken (ms since the Unix epoch).
    pub taken_at_unix_ms: u64,
    /// The root node.
    pub root: NodeSnapshot,
}

impl TreeSnapshot {
    /// Every node, depth first in start order.
    pub fn iter(&self) -> impl Iterator<Item = &NodeSnapshot> {
        self.root.iter()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the tree has no node at all (only while a manager is torn down).
    pub fn is_empty(&self) -> bool {
        self.root.path.is_empty() && self.root.children.is_empty()
    }

    /// The node at `path` (like `root/db/pool`).
    pub fn find(&self, path: &str) -> Option<&NodeSnapshot> {
        self.iter().find(|n| n.path == path)
    }

    /// Graphviz DOT rendering: one box per node, labelled with name, kind and status.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph uno {\n  node [shape=box, fontname=\"monospace\"];\n");
        for n in self.iter() {
            let color = match n.status {
                NodeStatus::Running => "darkgreen",
                NodeStatus::Failed => "red",
                NodeStatus::Backoff { .. } | NodeStatus::Restarting => "orange",
                _ => "gray",
            };
            let label = format!("{}\\n[{}] {}", n.name, n.kind, n.status).replace('"', "\\\"");
            out.push_str(&format!("  \"{}\" [label=\"{}\", color={}];\n", n.path, label, color));
            for c in &n.children {
                out.push_str(&format!("  \"{}\" -> \"{}\";\n", n.path, c.path));
            }
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Display for TreeSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn walk(f: &mut fmt::Formatter<'_>, n: &NodeSnapshot, prefix: &str) -> fmt::Result {
            let count = n.children.len();
            for (i, c) in n.children.iter().enumerate() {
                let last = i + 1 == count;
                writeln!(f, "{prefix}{}{}", if last { "└── " } else { "├── " }, c.line())?;
                walk(f, c, &format!("{prefix}{}", if last { "    " } else { "│   " }))?;
            }
            Ok(())
        }
        writeln!(f, "{}", self.root.line())?;
        walk(f, &self.root, "")
    }
}

/// A leaf node in the tree that is not an actor (for example a short task tracked by its
/// group's actor). Created with [`ChildContext::add_leaf`](crate::ChildContext::add_leaf); it
/// disappears from the tree when dropped.
pub struct LeafNode {
    registry: Weak<Registry>,
    id: NodeId,
    path: Arc<str>,
}

impl fmt::Debug for LeafNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafNode").field("path", &self.path).finish()
    }
}

impl LeafNode {
    pub(crate) fn new(registry: &Arc<Registry>, parent: NodeId, parent_path: &str, name: &str, kind: NodeKind) -> Self {
        let path: Arc<str> = format!("{parent_path}/{name}").into();
        let id = registry.insert(Some(parent), path.clone(), name.to_string(), kind);
        Self {
            registry: Arc::downgrade(registry),
            id,
            path,
        }
    }

    fn set(&self, status: Status) {
        if let Some(r) = self.registry.upgrade() {
            r.set_status(self.id, status);
        }
    }

    /// The leaf's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The leaf's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Marks it running (its uptime counts from now).
    pub fn running(&self) {
        self.set(Status::Running);
    }

    /// Marks it being stopped.
    pub fn stopping(&self) {
        self.set(Status::Stopping);
    }

    /// Marks it stopped.
    pub fn stopped(&self) {
        self.set(Status::Stopped);
    }

    /// Marks it failed with an error.
    pub fn failed(&self, error: impl Into<String>) {
        if let Some(r) = self.registry.upgrade() {
            r.set_error(self.id, error.into());
            r.set_status(self.id, Status::Failed);
        }
    }

    /// The handle to publish its stats.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            registry: self.registry.clone(),
            id: self.id,
        }
    }
}

impl Drop for LeafNode {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.remove_subtree(self.id);
        }
    }
}
