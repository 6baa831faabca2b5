//! Concurrent requests for one key share one computation, which runs in a
//! task of its own so a caller that hangs up does not cancel it for the others.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

type Table<K, V, S> = Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>, S>>>;

/// The computations under way, one per key.
pub struct SingleFlight<K, V, S = RandomState> {
    table: Table<K, V, S>,
}

/// A computation under way; [`Flight::wait`] gives its result.
#[derive(Debug)]
pub struct Flight<V>(watch::Receiver<Option<V>>);

/// What [`SingleFlight::join_or_start`] did.
#[derive(Debug)]
pub enum Joined<V, T> {
    /// No flight was under way: this caller started one.
    Started(Flight<V>),
    /// Another caller's flight was under way: this caller waits for it.
    Joined(Flight<V>),
    /// No flight was under way and the start function declined with this.
    Declined(T),
}

impl<V: Clone> Flight<V> {
    /// The flight's result, or `None` if its task ended without one (it
    /// panicked, or its runtime shut down).
    pub async fn wait(mut self) -> Option<V> {
        match self.0.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        }
    }
}

impl<K, V, S: Default> Default for SingleFlight<K, V, S> {
    fn default() -> Self {
        SingleFlight {
            table: Arc::new(Mutex::new(HashMap::with_hasher(S::default()))),
        }
    }
}

impl<K, V, S> std::fmt::Debug for SingleFlight<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl<K, V, S> SingleFlight<K, V, S>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + 'static,
{
    /// No flights.
    pub fn new() -> Self
    where
        S: Default,
    {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, watch::Receiver<Option<V>>, S>> {
        // Only whole inserts and removes happen under the lock: a panic
        // elsewhere cannot leave the table half-changed.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Flights under way.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no flight is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a flight for `key` is under way.
    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// Joins the flight for `key`, or else calls `start` under the table's
    /// lock: `Err(t)` declines (say, a flight that just finished stored what
    /// the caller wanted), `Ok(work)` runs `work` in a new task. Its output
    /// goes to every waiter; the key leaves the table before they see it.
    pub fn join_or_start<F, T>(&self, key: &K, start: impl FnOnce() -> Result<F, T>) -> Joined<V, T>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut table = self.lock();
        if let Some(flight) = table.get(key) {
            return Joined::Joined(Flight(flight.clone()));
        }
        match start() {
            Ok(work) => Joined::Started(self.spawn(&mut table, key.clone(), work)),
            Err(declined) => Joined::Declined(declined),
        }
    }

    /// Starts `work()` for `key` unless a flight for it is under way.
    pub fn start_if_idle<F>(&self, key: &K, work: impl FnOnce() -> F) -> Option<Flight<V>>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut table = self.lock();
        if table.contains_key(key) {
            return None;
        }
        Some(self.spawn(&mut table, key.clone(), work()))
    }

    fn spawn<F>(
        &self,
        table: &mut HashMap<K, watch::Receiver<Option<V>>, S>,
        key: K,
        work: F,
    ) -> Flight<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        table.insert(key.clone(), rx.clone());
        let leave = Leave {
            table: self.table.clone(),
            key: Some(key),
        };
        tokio::spawn(async move {
            // `leave` removes the key however this ends, a panic included
            // (the waiters then see the channel close).
            let mut leave = leave;
            let value = work.await;
            leave.now();
            tx.send_replace(Some(value));
        });
        Flight(rx)
    }
}

/// Removes a flight's key from the table when dropped, or at [`Leave::now`].
struct Leave<K: Eq + Hash, V, S: BuildHasher> {
    table: Table<K, V, S>,
    key: Option<K>,
}

impl<K: Eq + Hash, V, S: BuildHasher> Leave<K, V, S> {
    fn now(&mut self) {
        if let Some(key) = self.key.take() {
            self.table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Drop for Leave<K, V, S> {
    fn drop(&mut self) {
        self.now();
    }
}

#[cfg(test)]
mod tests;
