//! Primary watches: one dedicated, persistent database connection per
//! cluster to its confirmed primary that sits blocked on a read and ends when
//! that connection breaks. A killed process closes its sockets, so its
//! death is noticed within a round trip instead of at the next steady pass.
//!
//! Rules:
//! - A watch only *triggers a pass* for its cluster (through
//!   [`PrimaryWatches::triggers`]); the pass's own probes decide whether the
//!   primary is lost. A watch that breaks for another reason (a fence that
//!   killed client connections, a switchover, a network blip) costs one pass.
//! - A watch is (re)started after a pass that confirmed a primary and no
//!   operation runs ([`follow`]), keyed by cluster; it is replaced when the
//!   primary's address changes and dropped when the cluster has no confirmed
//!   primary or goes away ([`PrimaryWatches::forget`]). At most one per
//!   cluster, and at most one attempt per cluster per [`RESTART_AFTER`].
//! - A watch that cannot connect ends quietly (no trigger): the passes'
//!   probes report the member anyway.
//! - A stalled primary or a partition (no FIN/RST) does not break the
//!   connection: that is found by the passes' probe timeouts, as before.
//!
//! This module depends only on [`crate::engine`]; engines provide the
//! connection ([`Engine::watch_primary`]), the controller and benchmarks
//! call [`follow`] after each pass.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;

use crate::api::MemberRole;
use crate::engine::{Engine, EngineInput, EngineOutcome};
pub use crate::engine::{WatchBroken as Broken, WatchOpening as Opening};

/// A watch connection is not opened again for the same cluster sooner than this.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Which cluster a watch belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchKey {
    /// Engine name (`redis`, `mysql`): the controller of that kind picks up
    /// the trigger.
    pub engine: &'static str,
    pub namespace: String,
    pub name: String,
}

struct Entry {
    /// `address:port` of the primary watched.
    target: String,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    entries: Mutex<HashMap<WatchKey, Entry>>,
    fired: broadcast::Sender<WatchKey>,
    gauges: Vec<(&'static str, Gauge)>,
}

/// The primary watches of an operator (or of a benchmark's reconciler).
/// Dropping the last clone aborts every watch.
#[derive(Clone)]
pub struct PrimaryWatches {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PrimaryWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryWatches")
            .field("watching", &self.len())
            .finish()
    }
}

impl Default for PrimaryWatches {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(map) = self.entries.get_mut() {
            for e in map.values() {
                e.task.abort();
            }
        }
    }
}

/// Decrements its gauge when the watch connection ends (also on abort).
struct Counted(Option<Gauge>);

impl Counted {
    fn new(g: Option<Gauge>) -> Self {
        if let Some(g) = &g {
            g.inc();
        }
        Self(g)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

impl PrimaryWatches {
    /// `gauges`: per engine name, the gauge of open watch connections.
    pub fn new(gauges: Vec<(&'static str, Gauge)>) -> Self {
        let (fired, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::default(),
                fired,
                gauges,
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<WatchKey, Entry>> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watches running (connecting or connected).
    pub fn len(&self) -> usize {
        self.entries()
            .values()
            .filter(|e| !e.task.is_finished())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `address:port` watched for `key`, while its watch runs.
    pub fn watching(&self, key: &WatchKey) -> Option<String> {
        self.entries()
            .get(key)
            .filter(|e| !e.task.is_finished())
            .map(|e| e.target.clone())
    }

    /// Clusters whose watch broke, as they break. A receiver that falls
    /// behind skips what it missed (those clusters get their next pass on
    /// their requeue as before).
    pub fn fired(&self) -> impl Stream<Item = WatchKey> + Send + 'static {
        let rx = self.inner.fired.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(k) => return Some((k, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "primary watch triggers fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Like [`Self::fired`], only for one engine and (when given) one namespace.
    pub fn triggers(
        &self,
        engine: &'static str,
        namespace: Option<String>,
    ) -> impl Stream<Item = WatchKey> + Send + 'static {
        use futures::StreamExt;
        self.fired().filter(move |k| {
            let mine = k.engine == engine && namespace.as_ref().is_none_or(|n| *n == k.namespace);
            std::future::ready(mine)
        })
    }

    /// Stop watching `key` (the cluster has no confirmed primary or is gone).
    pub fn forget(&self, key: &WatchKey) {
        if let Some(e) = self.entries().remove(key) {
            e.task.abort();
        }
    }

    /// Watch `target` (`address:port`) for `key` with the connection `open`
    /// makes, unless a watch of the same target runs, or one was started less
    /// than [`RESTART_AFTER`] ago. A watch of another target is replaced.
    pub fn ensure<F>(&self, key: &WatchKey, target: &str, open: F)
    where
        F: FnOnce() -> Opening,
    {
        let mut map = self.entries();
        if let Some(e) = map.get(key) {
            let same = e.target == target;
            if same && !e.task.is_finished() {
                return;
            }
            if e.started.elapsed() < RESTART_AFTER {
                if !same {
                    // The primary moved: the old watch says nothing useful.
                    e.task.abort();
                }
                return;
            }
            e.task.abort();
        }
        let gauge = self
            .inner
            .gauges
            .iter()
            .find(|(n, _)| *n == key.engine)
            .map(|(_, g)| g.clone());
        let fired = self.inner.fired.clone();
        let opening = open();
        let (k, t) = (key.clone(), target.to_string());
        let task = tokio::spawn(async move {
            let broken = match opening.await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(cluster = %k.name, namespace = %k.namespace, primary = %t, error = %e, "primary watch could not connect");
                    return;
                }
            };
            let counted = Counted::new(gauge);
            let why = broken.await;
            drop(counted);
            tracing::info!(cluster = %k.name, namespace = %k.namespace, primary = %t, %why, "primary watch connection broke; running a pass now");
            // No receiver (e.g. no controller yet) is not an error.
            let _ = fired.send(k);
        });
        map.insert(
            key.clone(),
            Entry {
                target: target.to_string(),
                started: Instant::now(),
                task,
            },
        );
    }
}

/// Members a cluster needs before its primary is watched: with one member
/// there is no replica to promote, so noticing its death a round trip
/// sooner changes nothing a pass could do (the steady pass reports it), and
/// the connection would cost the server a client and the operator a
/// socket and a task per cluster.
pub const WATCHED_FROM_MEMBERS: usize = 2;

/// The member a pass confirmed primary, with nothing in progress: the one
/// to watch. None when the cluster has fewer than [`WATCHED_FROM_MEMBERS`]
/// members, no confirmed primary, an operation runs (its passes are
/// frequent anyway), or the member has no address.
pub fn primary_to_watch<'a, S>(
    input: &'a EngineInput<S>,
    outcome: &EngineOutcome,
) -> Option<&'a crate::engine::Member> {
    if outcome.state.operation.is_some() || input.members.len() < WATCHED_FROM_MEMBERS {
        return None;
    }
    let primary = outcome.state.primary?;
    let confirmed = outcome
        .members
        .iter()
        .any(|m| m.ordinal == primary && m.role == MemberRole::Primary);
    if !confirmed {
        return None;
    }
    input
        .members
        .iter()
        .find(|m| m.ordinal == primary && m.address.is_some())
}

/// After a pass: watch the primary it confirmed, or stop watching. The
/// controller and the benchmarks call this with the pass's input and outcome.
pub fn follow<E: Engine>(
    watches: &PrimaryWatches,
    key: &WatchKey,
    engine: &E,
    input: &EngineInput<E::Settings>,
    outcome: &EngineOutcome,
) {
    match primary_to_watch(input, outcome) {
        Some(m) => {
            let target = format!("{}:{}", m.address.as_deref().unwrap_or_default(), m.port);
            watches.ensure(key, &target, || engine.watch_primary(m, &input.credentials));
        }
        None => watches.forget(key),
    }
}

/// Wait until a watch of `key` fires or `timeout` passes; true when it fired.
/// For tests and benchmarks.
pub fn wait_fired(
    watches: &PrimaryWatches,
    key: WatchKey,
    timeout: Duration,
) -> impl Future<Output = bool> + Send + 'static {
    use futures::StreamExt;
    let mut s = Box::pin(
        watches
            .fired()
            .filter(move |k| std::future::ready(*k == key)),
    );
    async move { tokio::time::timeout(timeout, s.next()).await.is_ok() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use futures::FutureExt;

    fn key() -> WatchKey {
        WatchKey {
            engine: "redis",
            namespace: "ns".into(),
            name: "c".into(),
        }
    }

    /// A watch that connects and breaks when `rx` fires.
    fn breaking(rx: tokio::sync::oneshot::Receiver<()>) -> Opening {
        let broken: Broken = async move {
            let _ = rx.await;
            "closed".to_string()
        }
        .boxed();
        futures::future::ready(Ok(broken)).boxed()
    }

    #[tokio::test]
    async fn a_broken_watch_fires_once_and_is_counted_while_open() {
        let gauge = Gauge::default();
        let w = PrimaryWatches::new(vec![("redis", gauge.clone())]);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fired = wait_fired(&w, key(), Duration::from_secs(5));
        w.ensure(&key(), "10.0.0.1:6379", || breaking(rx));
        // The same target again: the running watch stays, nothing is opened.
        w.ensure(&key(), "10.0.0.1:6379", || {
            panic!("a second watch of the same primary")
        });
        tokio::task::yield_now().await;
        assert_eq!(w.watching(&key()).as_deref(), Some("10.0.0.1:6379"));
        assert_eq!(gauge.get(), 1);
        let _ = tx.send(());
        assert!(fired.await);
        assert_eq!(gauge.get(), 0);
        assert_eq!(w.watching(&key()), None);
        // Broken a moment ago: not reopened before RESTART_AFTER.
        w.ensure(&key(), "10.0.0.1:6379", || panic!("reopened at once"));
    }

    #[tokio::test]
    async fn a_watch_that_cannot_connect_never_fires() {
        let w = PrimaryWatches::default();
        let fired = wait_fired(&w, key(), Duration::from_millis(300));
        w.ensure(&key(), "10.0.0.1:6379", || {
            futures::future::ready(Err(EngineError::Other("refused".into()))).boxed()
        });
        assert!(!fired.await);
        assert_eq!(w.watching(&key()), None);
    }

    #[tokio::test]
    async fn forgetting_or_dropping_closes_the_watch_without_firing() {
        let gauge = Gauge::default();
        let w = PrimaryWatches::new(vec![("redis", gauge.clone())]);
        let (_tx, rx) = tokio::sync::oneshot::channel();
        let fired = wait_fired(&w, key(), Duration::from_millis(300));
        w.ensure(&key(), "10.0.0.1:6379", || breaking(rx));
        tokio::task::yield_now().await;
        w.forget(&key());
        assert!(!fired.await);
        tokio::task::yield_now().await;
        assert_eq!(gauge.get(), 0);
        let (_tx2, rx2) = tokio::sync::oneshot::channel();
        w.ensure(&key(), "10.0.0.2:6379", || breaking(rx2));
        tokio::task::yield_now().await;
        assert_eq!(gauge.get(), 1);
        drop(w);
        tokio::task::yield_now().await;
        assert_eq!(gauge.get(), 0, "dropping the watches closes them");
    }

    #[test]
    fn triggers_keep_to_their_engine_and_namespace() {
        let w = PrimaryWatches::default();
        let mine = w.triggers("redis", Some("ns".into()));
        let others = [
            WatchKey {
                engine: "mysql",
                ..key()
            },
            WatchKey {
                namespace: "other".into(),
                ..key()
            },
            key(),
        ];
        for k in others {
            let _ = w.inner.fired.send(k);
        }
        use futures::StreamExt;
        let got = futures::executor::block_on(Box::pin(mine).next());
        assert_eq!(got, Some(key()));
    }

    fn watched_input(members: i32) -> (EngineInput<()>, EngineOutcome) {
        let member = |ordinal: i32| crate::engine::Member {
            ordinal,
            pod: format!("c-{ordinal}"),
            address: Some(format!("127.0.0.{}", ordinal + 1)),
            port: 6379,
            dns_name: format!("c-{ordinal}.c"),
            pod_exists: true,
            pod_ready: true,
            isolated: false,
        };
        let state = crate::api::ReplicationState {
            primary: Some(0),
            term: 1,
            ..Default::default()
        };
        let input = EngineInput {
            namespace: "ns".into(),
            name: "c".into(),
            members: (0..members).map(member).collect(),
            state: state.clone(),
            desired_primary: None,
            failover: Default::default(),
            credentials: crate::engine::Credentials(Default::default()),
            now: chrono::Utc::now(),
            settings: (),
            hint: None,
        };
        let outcome = EngineOutcome {
            state,
            members: vec![crate::api::MemberStatus {
                ordinal: 0,
                pod: "c-0".into(),
                role: MemberRole::Primary,
                reachable: true,
                ..Default::default()
            }],
            health: crate::engine::Health::Healthy,
            events: vec![],
            requeue_after: Duration::from_secs(1),
            isolate: vec![],
            primary_writes: crate::engine::PrimaryWrites::Accepted,
        };
        (input, outcome)
    }

    #[test]
    fn a_confirmed_primary_is_watched_only_when_a_replica_could_replace_it() {
        let (one, out) = watched_input(1);
        assert_eq!(primary_to_watch(&one, &out), None);
        let (three, out) = watched_input(3);
        assert_eq!(primary_to_watch(&three, &out).map(|m| m.ordinal), Some(0));
        let mut busy = out.clone();
        busy.state.operation = Some(crate::api::Operation {
            kind: crate::api::OperationKind::Switchover,
            from: 0,
            to: Some(1),
            step: "Fence".into(),
            term: 2,
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            deadline: None,
            reason: "test".into(),
            data: None,
        });
        assert_eq!(primary_to_watch(&three, &busy), None);
    }
}
