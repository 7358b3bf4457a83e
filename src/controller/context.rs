//! Shared state of the controllers and their error type.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// Controller errors; each carries what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Engine(_) => "engine",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
        }
    }

    /// What a person should read: the action and, for a refusal by the API
    /// server, its message (without the client's wrapping).
    pub fn user_message(&self) -> String {
        match self {
            Error::Kube { action, source } => match source.as_ref() {
                kube::Error::Api(status) => format!("{action}: {}", status.message),
                other => format!("{action}: {other}"),
            },
            other => other.to_string(),
        }
    }
}

/// Attach context to a kube call.
pub trait KubeContext<T> {
    fn context(self, action: impl Into<String>) -> Result<T, Error>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn context(self, action: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            action: action.into(),
            source: Box::new(source),
        })
    }
}

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Cluster DNS domain used in member names.
    pub cluster_domain: String,
    /// Period of the resync when nothing happens.
    pub resync: Duration,
    /// Image of the operator itself, run by backup Jobs and restore steps.
    pub image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            resync: Duration::from_secs(30),
            image: format!("ordinal/ordinal:{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub redis: crate::redis::RedisEngine,
    pub mysql: crate::mysql::MySqlEngine,
    /// One watch connection per cluster to its confirmed primary; a broken
    /// one triggers a pass at once (see [`crate::watch`]).
    pub watches: crate::watch::PrimaryWatches,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Shared stores of managed children; empty: read from the API server.
    pub caches: super::caches::Caches,
    failures: Mutex<HashMap<String, u32>>,
    /// Per cluster: fingerprint of the children last applied (or refused),
    /// when, and for how long that stands.
    applied: Mutex<HashMap<String, (String, std::time::Instant, Duration)>>,
    /// Per cluster: what the last status write persisted (read-your-writes).
    written: Mutex<HashMap<String, super::freshness::Written>>,
    published: Mutex<RecentEvents>,
    /// Per cluster: the replication state and members the last engine step
    /// returned, so the next pass plans from the newest observation even
    /// when it was not written (a position alone, or a probe result still
    /// held back by [`Context::hysteresis`]).
    observed: Mutex<HashMap<String, super::status::Observed>>,
    /// Per cluster: a change confined to probe results not written yet.
    pub hysteresis: super::hysteresis::Hysteresis,
    /// Per cluster: when its binlog archiver was last asked for its report.
    archive_polled: Mutex<HashMap<String, std::time::Instant>>,
}

/// Engine events published lately, per object and text, so a standing
/// problem reported every pass becomes one Event per [`EVENT_REPEAT`].
#[derive(Debug, Default)]
pub struct RecentEvents(HashMap<(String, String, String), std::time::Instant>);

impl RecentEvents {
    /// Whether to publish now; records the event when so.
    pub fn admit(&mut self, key: &str, reason: &str, note: &str, now: std::time::Instant) -> bool {
        self.0
            .retain(|_, at| now.duration_since(*at) < EVENT_REPEAT);
        let id = (key.to_string(), reason.to_string(), note.to_string());
        if self.0.contains_key(&id) {
            return false;
        }
        self.0.insert(id, now);
        true
    }
}

/// How soon children the API server refused are applied again.
pub const CHILDREN_RETRY: Duration = Duration::from_secs(10);

/// How long an identical engine event is not published again.
pub const EVENT_REPEAT: Duration = Duration::from_secs(600);

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: "ordinal".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            redis: crate::redis::RedisEngine::new(crate::redis::RedisEngineConfig::default())
                .with_connection_gauge(metrics.connections_kept("redis")),
            mysql: crate::mysql::MySqlEngine::new(crate::mysql::MySqlEngineConfig::default())
                .with_connection_gauge(metrics.connections_kept("mysql")),
            watches: crate::watch::PrimaryWatches::new(vec![
                ("redis", metrics.primary_watches("redis")),
                ("mysql", metrics.primary_watches("mysql")),
            ]),
            metrics,
            caches: super::caches::Caches::default(),
            failures: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            published: Mutex::new(RecentEvents::default()),
            observed: Mutex::new(HashMap::new()),
            hysteresis: super::hysteresis::Hysteresis::default(),
            archive_polled: Mutex::new(HashMap::new()),
        }
    }

    /// Read children from these stores instead of the API server.
    pub fn with_caches(mut self, caches: super::caches::Caches) -> Self {
        self.caches = caches;
        self
    }

    /// Whether the binlog archiver of `key` is due to be asked again (at
    /// most once per `every`); records the ask when it is.
    pub fn archive_poll_due(&self, key: &str, every: Duration) -> bool {
        let now = std::time::Instant::now();
        let mut polled = self
            .archive_polled
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match polled.get(key) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                polled.insert(key.to_string(), now);
                true
            }
        }
    }

    /// What the last engine step of `key` returned.
    pub fn observed(&self, key: &str) -> Option<super::status::Observed> {
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.get(key).cloned()
    }

    pub fn record_observed(&self, key: &str, observed: super::status::Observed) {
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), observed);
    }

    /// Exponential backoff per object: 1 s, 2 s, 4 s … capped at 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Whether an event is worth publishing: not the same reason and note for
    /// the same object within [`EVENT_REPEAT`]. Records it when it is.
    pub fn event_is_new(&self, key: &str, reason: &str, note: &str) -> bool {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        published.admit(key, reason, note, std::time::Instant::now())
    }

    /// Whether children built from `fingerprint` were applied within the
    /// resync period (or refused within [`CHILDREN_RETRY`]).
    pub fn children_current(&self, key: &str, fingerprint: &str) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied
            .get(key)
            .is_some_and(|(f, at, valid)| f == fingerprint && at.elapsed() < *valid)
    }

    pub fn children_applied(&self, key: &str, fingerprint: String) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let valid = self.settings.resync;
        applied.insert(
            key.to_string(),
            (fingerprint, std::time::Instant::now(), valid),
        );
    }

    /// The API server refused the children built from `fingerprint`: try
    /// again after [`CHILDREN_RETRY`], not on every engine pass.
    pub fn children_failed(&self, key: &str, fingerprint: String) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let valid = CHILDREN_RETRY.min(self.settings.resync);
        applied.insert(
            key.to_string(),
            (fingerprint, std::time::Instant::now(), valid),
        );
    }

    /// What the last status write of `key` persisted.
    pub fn written(&self, key: &str) -> Option<super::freshness::Written> {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.get(key).cloned()
    }

    pub fn record_written(&self, key: &str, w: super::freshness::Written) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.insert(key.to_string(), w);
    }

    /// Forget everything kept about a deleted object.
    pub fn forget(&self, key: &str) {
        self.forget_children(key);
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.hysteresis.settle(key);
        self.reset_backoff(key);
    }

    /// Forget what was applied (after an error or deletion).
    pub fn forget_children(&self, key: &str) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_repeated_event_is_published_once_per_period() {
        let mut recent = RecentEvents::default();
        let t0 = Instant::now();
        assert!(recent.admit("c", "ErrantTransactions", "db-2 holds 0-101-7", t0));
        assert!(!recent.admit(
            "c",
            "ErrantTransactions",
            "db-2 holds 0-101-7",
            t0 + Duration::from_secs(1)
        ));
        assert!(
            recent.admit(
                "c",
                "ErrantTransactions",
                "db-2 holds 0-101-8",
                t0 + Duration::from_secs(1)
            ),
            "new text"
        );
        assert!(
            recent.admit("other", "ErrantTransactions", "db-2 holds 0-101-7", t0),
            "other object"
        );
        assert!(
            recent.admit(
                "c",
                "ErrantTransactions",
                "db-2 holds 0-101-7",
                t0 + EVENT_REPEAT
            ),
            "again after the period"
        );
    }
}
