//! A small cache of the operator's own database connections, kept across
//! reconcile passes so a steady pass does not open a fresh TCP connection and
//! authenticate to every member.
//!
//! Rules the engines rely on:
//! - A connection is keyed by the address it was opened to and the
//!   credentials it authenticated with ([`ConnKey`]); a member whose address
//!   or password changes gets a new key, so a connection is never used for
//!   another address or with other credentials.
//! - [`ConnCache::take`] removes the entry: a connection is used by one pass
//!   at a time, and a pass that is cancelled or fails drops it. Only a pass
//!   that used it without any error hands it back with [`ConnCache::put`].
//! - Entries not handed back for [`ConnCache::idle`] (members that went away,
//!   clusters no longer reconciled) are evicted, and the cache never holds
//!   more than its capacity.
//! - The number of kept connections is mirrored in a gauge
//!   ([`ConnCache::with_gauge`], `ordinal_db_connections_kept`).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Which connection: address, user, and a keyed hash of the password (the
/// password itself is never stored here nor printed).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    host: String,
    port: u16,
    user: String,
    secret: u64,
}

impl ConnKey {
    fn new(hasher: &RandomState, host: &str, port: u16, user: &str, password: &str) -> Self {
        Self {
            host: host.to_string(),
            port,
            user: user.to_string(),
            secret: hasher.hash_one(password),
        }
    }
}

impl std::fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

struct Entry<T> {
    conn: T,
    returned: Instant,
}

/// Connections kept between passes, by [`ConnKey`].
pub struct ConnCache<T> {
    entries: Mutex<HashMap<ConnKey, Entry<T>>>,
    hasher: RandomState,
    idle: Duration,
    capacity: usize,
    /// Connections kept, set after every change of the map.
    kept: Gauge,
}

/// How long an unused connection is kept (default).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// At most this many connections are kept (default).
pub const DEFAULT_CAPACITY: usize = 4096;

impl<T> Default for ConnCache<T> {
    fn default() -> Self {
        Self::new(DEFAULT_IDLE, DEFAULT_CAPACITY)
    }
}

impl<T> std::fmt::Debug for ConnCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCache")
            .field("len", &self.len())
            .field("idle", &self.idle)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T> ConnCache<T> {
    pub fn new(idle: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
            idle,
            capacity: capacity.max(1),
            kept: Gauge::default(),
        }
    }

    /// Mirror the number of kept connections in `gauge` (a series of the
    /// operator's metrics).
    pub fn with_gauge(mut self, gauge: Gauge) -> Self {
        gauge.set(i64::try_from(self.len()).unwrap_or(i64::MAX));
        self.kept = gauge;
        self
    }

    fn count(&self, map: &HashMap<ConnKey, Entry<T>>) {
        self.kept.set(i64::try_from(map.len()).unwrap_or(i64::MAX));
    }

    /// The key of a connection to `host:port` as `user` with `password`.
    pub fn key(&self, host: &str, port: u16, user: &str, password: &str) -> ConnKey {
        ConnKey::new(&self.hasher, host, port, user, password)
    }

    /// How long an unused connection is kept.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnKey, Entry<T>>> {
        // A panic elsewhere while holding the lock leaves the map consistent
        // (every operation is a single insert/remove/retain).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take the connection kept for `key` out of the cache, if any.
    pub fn take(&self, key: &ConnKey) -> Option<T> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::evict_idle(&mut map, now, self.idle);
        let conn = map.remove(key).map(|e| e.conn);
        self.count(&map);
        conn
    }

    /// Keep `conn` for the next pass. Call only after it was used without error.
    pub fn put(&self, key: ConnKey, conn: T) {
        let now = Instant::now();
        let mut map = self.lock();
        Self::evict_idle(&mut map, now, self.idle);
        map.insert(
            key,
            Entry {
                conn,
                returned: now,
            },
        );
        while map.len() > self.capacity {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.returned)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        self.count(&map);
    }

    /// Forget every connection to `host:port` (any credentials).
    pub fn forget_address(&self, host: &str, port: u16) {
        let mut map = self.lock();
        map.retain(|k, _| !(k.host == host && k.port == port));
        self.count(&map);
    }

    /// Connections currently kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict_idle(map: &mut HashMap<ConnKey, Entry<T>>, now: Instant, idle: Duration) {
        map.retain(|_, e| now.saturating_duration_since(e.returned) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_removes_and_put_returns() {
        let c: ConnCache<u32> = ConnCache::default();
        let k = c.key("10.0.0.1", 6379, "default", "pw");
        assert_eq!(c.take(&k), None);
        c.put(k.clone(), 7);
        assert_eq!(c.len(), 1);
        assert_eq!(c.take(&k), Some(7));
        // In use by one pass at a time: a second take finds nothing.
        assert_eq!(c.take(&k), None);
        assert!(c.is_empty());
    }

    #[test]
    fn address_and_credentials_are_part_of_the_key() {
        let c: ConnCache<u32> = ConnCache::default();
        c.put(c.key("10.0.0.1", 6379, "default", "pw"), 1);
        assert_eq!(c.take(&c.key("10.0.0.2", 6379, "default", "pw")), None);
        assert_eq!(c.take(&c.key("10.0.0.1", 6380, "default", "pw")), None);
        assert_eq!(c.take(&c.key("10.0.0.1", 6379, "other", "pw")), None);
        assert_eq!(c.take(&c.key("10.0.0.1", 6379, "default", "new")), None);
        assert_eq!(c.take(&c.key("10.0.0.1", 6379, "default", "pw")), Some(1));
    }

    #[test]
    fn the_password_is_not_printed() {
        let c: ConnCache<u32> = ConnCache::default();
        let k = c.key("10.0.0.1", 6379, "root", "s3cret-value");
        let shown = format!("{k:?}");
        assert_eq!(shown, "root@10.0.0.1:6379");
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn idle_entries_are_evicted() {
        let c: ConnCache<u32> = ConnCache::new(Duration::from_millis(20), 16);
        c.put(c.key("a", 1, "u", "p"), 1);
        std::thread::sleep(Duration::from_millis(40));
        c.put(c.key("b", 1, "u", "p"), 2);
        assert_eq!(c.len(), 1, "the entry unused for longer than idle is gone");
        assert_eq!(c.take(&c.key("a", 1, "u", "p")), None);
    }

    #[test]
    fn capacity_bounds_the_cache_dropping_the_oldest() {
        let c: ConnCache<u32> = ConnCache::new(DEFAULT_IDLE, 2);
        c.put(c.key("a", 1, "u", "p"), 1);
        std::thread::sleep(Duration::from_millis(2));
        c.put(c.key("b", 1, "u", "p"), 2);
        std::thread::sleep(Duration::from_millis(2));
        c.put(c.key("c", 1, "u", "p"), 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.take(&c.key("a", 1, "u", "p")), None);
        assert_eq!(c.take(&c.key("c", 1, "u", "p")), Some(3));
    }

    #[test]
    fn the_gauge_follows_puts_takes_and_evictions() {
        let gauge = Gauge::default();
        let c: ConnCache<u32> = ConnCache::new(DEFAULT_IDLE, 2).with_gauge(gauge.clone());
        assert_eq!(gauge.get(), 0);
        c.put(c.key("a", 1, "u", "p"), 1);
        c.put(c.key("b", 1, "u", "p"), 2);
        assert_eq!(gauge.get(), 2);
        assert_eq!(c.take(&c.key("a", 1, "u", "p")), Some(1));
        assert_eq!(gauge.get(), 1, "a taken connection is not kept");
        assert_eq!(c.take(&c.key("x", 1, "u", "p")), None);
        assert_eq!(gauge.get(), 1);
        c.put(c.key("a", 1, "u", "p"), 1);
        c.put(c.key("c", 1, "u", "p"), 3);
        assert_eq!(gauge.get(), 2, "over capacity: one is evicted");
        c.forget_address("c", 1);
        assert_eq!(gauge.get(), 1);

        let idle = Gauge::default();
        let c: ConnCache<u32> =
            ConnCache::new(Duration::from_millis(20), 16).with_gauge(idle.clone());
        c.put(c.key("a", 1, "u", "p"), 1);
        assert_eq!(idle.get(), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.take(&c.key("b", 1, "u", "p")), None);
        assert_eq!(idle.get(), 0, "idle entries are evicted");
    }

    #[test]
    fn a_gauge_attached_later_starts_from_the_kept_count() {
        let c: ConnCache<u32> = ConnCache::default();
        c.put(c.key("a", 1, "u", "p"), 1);
        let gauge = Gauge::default();
        let c = c.with_gauge(gauge.clone());
        assert_eq!(gauge.get(), 1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn forgetting_an_address_drops_all_its_credentials() {
        let c: ConnCache<u32> = ConnCache::default();
        c.put(c.key("a", 1, "u", "p"), 1);
        c.put(c.key("a", 1, "u", "q"), 2);
        c.put(c.key("b", 1, "u", "p"), 3);
        c.forget_address("a", 1);
        assert_eq!(c.len(), 1);
    }
}
