//! Lock-free token buckets (GCRA): [`GcraLimiter`], the per-listener limit, and
//! [`ClientLimiter`], one bucket per source address. Hand-written, one
//! compare-exchange per request: criterion `cache`, `rate_limit_acquire`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The arithmetic of a bucket of `burst` requests refilled at `rate` per second;
/// its state is one theoretical arrival time (ns since `origin`) held elsewhere.
#[derive(Debug)]
struct Gcra {
    origin: Instant,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run (the burst).
    tolerance: u64,
}

impl Gcra {
    /// `None` when `rate` is 0 (off); a `burst` of 0 counts as 1.
    fn new(rate: u32, burst: u32) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval = (1_000_000_000 / u64::from(rate)).max(1);
        Some(Gcra {
            origin: Instant::now(),
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        })
    }

    fn elapsed(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes one token from the bucket whose state is `tat`, at `now`.
    fn acquire(&self, tat: &AtomicU64, now: Instant) -> bool {
        let now = self.elapsed(now);
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let next = current.max(now).saturating_add(self.interval);
            if next - now > self.tolerance {
                return false;
            }
            match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the bucket is full again at `now` (forgetting it loses nothing).
    fn is_full(&self, tat: &AtomicU64, now: Instant) -> bool {
        tat.load(Ordering::Relaxed) <= self.elapsed(now)
    }
}

/// Allows `rate` requests per second on average with bursts of up to `rate`.
/// Uses tokio's clock, so `tokio::time::pause` drives it in tests.
#[derive(Debug)]
pub struct GcraLimiter {
    gcra: Gcra,
    /// Theoretical arrival time, nanoseconds since the origin.
    tat: AtomicU64,
}

impl GcraLimiter {
    /// A limiter of `rate` requests per second; `None` when `rate` is 0 (off).
    pub fn per_second(rate: u32) -> Option<Self> {
        Some(GcraLimiter {
            gcra: Gcra::new(rate, rate)?,
            tat: AtomicU64::new(0),
        })
    }

    /// Takes one token now; `false` means over the limit.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    /// Takes one token at `now`.
    pub fn try_acquire_at(&self, now: Instant) -> bool {
        self.gcra.acquire(&self.tat, now)
    }

    /// The sustained interval between requests.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.gcra.interval)
    }
}

/// The per-client (source address) limit: `rate` requests per second with
/// bursts of `burst`, for at most `max_clients` addresses at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimit {
    /// Requests per second per source address; 0 turns the limit off.
    pub rate: u32,
    /// Requests a source may send at once after being quiet.
    pub burst: u32,
    /// Source addresses tracked at once; beyond it the longest-unseen is forgotten.
    pub max_clients: usize,
}

impl ClientLimit {
    /// No per-client limit.
    pub const OFF: ClientLimit = ClientLimit {
        rate: 0,
        burst: 0,
        max_clients: 0,
    };
}

impl Default for ClientLimit {
    /// 50 requests per second with bursts of 100 per source address, 4,096
    /// addresses: an SDK asks once every few minutes (docs/agent.md).
    fn default() -> Self {
        ClientLimit {
            rate: 50,
            burst: 100,
            max_clients: 4096,
        }
    }
}

/// One tracked source address: its bucket and when it was last seen.
struct Tracked {
    tat: Arc<AtomicU64>,
    seen: u64,
}

/// The tracked addresses.
#[derive(Default)]
struct ClientTable {
    clients: HashMap<IpAddr, Tracked>,
    /// Advanced at each lookup: the order addresses were last seen in.
    clock: u64,
}

/// One bucket per source address, looked up once per connection
/// ([`ClientLimiter::bucket`]); each request then costs what
/// [`GcraLimiter`]'s does.
pub struct ClientLimiter {
    gcra: Gcra,
    max_clients: usize,
    table: Mutex<ClientTable>,
}

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimiter")
            .field("gcra", &self.gcra)
            .field("max_clients", &self.max_clients)
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// What [`ClientLimiter::bucket`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookup {
    /// Tracked addresses forgotten to make room (full buckets first, then the
    /// longest unseen).
    pub evicted: usize,
    /// Addresses tracked after it.
    pub tracked: usize,
}

/// A connection's share of its client's bucket.
#[derive(Debug, Clone)]
pub struct ClientBucket {
    limiter: Arc<ClientLimiter>,
    tat: Arc<AtomicU64>,
}

impl ClientBucket {
    /// Takes one token now; `false` means the client is over its limit.
    pub fn try_acquire(&self) -> bool {
        self.limiter.gcra.acquire(&self.tat, Instant::now())
    }
}

impl ClientLimiter {
    /// The limiter of `limit`; `None` when its rate or `max_clients` is 0 (off).
    pub fn new(limit: ClientLimit) -> Option<Arc<Self>> {
        if limit.max_clients == 0 {
            return None;
        }
        Some(Arc::new(ClientLimiter {
            gcra: Gcra::new(limit.rate, limit.burst)?,
            max_clients: limit.max_clients,
            table: Mutex::new(ClientTable::default()),
        }))
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clients
            .len()
    }

    /// The bucket of `client` (an IPv4-mapped IPv6 address counts as its IPv4
    /// one), tracking it if new. When `max_clients` are tracked, addresses
    /// whose bucket is full again are forgotten (nothing is lost), else the
    /// longest unseen one; a connection keeps the bucket it got.
    pub fn bucket(self: &Arc<Self>, client: IpAddr) -> (ClientBucket, Lookup) {
        let client = client.to_canonical();
        let mut lookup = Lookup::default();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.clock += 1;
        let seen = table.clock;
        lookup.tracked = table.clients.len();
        if let Some(tracked) = table.clients.get_mut(&client) {
            tracked.seen = seen;
            let tat = tracked.tat.clone();
            return (self.share(tat), lookup);
        }
        if table.clients.len() >= self.max_clients {
            let now = Instant::now();
            let before = table.clients.len();
            table.clients.retain(|_, t| !self.gcra.is_full(&t.tat, now));
            if table.clients.len() >= self.max_clients {
                let oldest = table
                    .clients
                    .iter()
                    .min_by_key(|(_, t)| t.seen)
                    .map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    table.clients.remove(&ip);
                }
            }
            lookup.evicted = before - table.clients.len();
        }
        let tat = Arc::new(AtomicU64::new(0));
        table.clients.insert(
            client,
            Tracked {
                tat: tat.clone(),
                seen,
            },
        );
        lookup.tracked = table.clients.len();
        (self.share(tat), lookup)
    }

    fn share(self: &Arc<Self>, tat: Arc<AtomicU64>) -> ClientBucket {
        ClientBucket {
            limiter: self.clone(),
            tat,
        }
    }
}

#[cfg(test)]
mod tests;
