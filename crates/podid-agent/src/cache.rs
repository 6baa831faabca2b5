//! Pods' credentials in memory: single-flight fetches, background refresh,
//! stale serving while the broker is down, LRU bound.
//!
//! **Key: the SHA-256 of the token.** An entry is only ever served to a
//! request presenting exactly the token the broker verified for it, so no
//! pod can read another's entry by forging claims (the agent cannot check
//! signatures). The token's unverified `kubernetes.io.pod.uid` is used only as
//! a secondary index, and only after the broker has accepted the token: when a
//! pod's token rotates and the broker accepts the new one, the old token's
//! entry is dropped, so a pod holds one entry and one refresh schedule. The
//! cost of this choice: a rotated token always costs one broker call, and a
//! pod whose token rotates while the broker is down gets 503 until it is back.
//!
//! **Kept tokens.** Up to [`CachePolicy::max_refresh_ahead`] entries also
//! keep their token (the first ones stored while there is room). Those can be
//! refreshed before their pod asks, and a request is matched to them without
//! hashing its token: a per-process randomly seeded fast hash of the token
//! (foldhash) finds the candidate, and a constant-time comparison with the
//! kept token decides — the fast hash is never trusted, a miss or a collision
//! falls back to the SHA-256 key. Entries without a kept token cost only
//! their answer (~1 KiB), so 10,000 pods fit in little memory.
//!
//! **Refresh.** See [`crate::policy`] for the timing. The maintenance pass
//! (every [`CachePolicy::maintenance_interval`]) refreshes due entries that
//! keep their token and were served since they were last fetched — entries
//! of pods that stopped asking (deleted pods) are not refreshed and lapse at
//! expiry. A request that finds an entry past its refresh time is served it
//! immediately and starts the refresh itself, with its own token (the only
//! way entries without a kept token are refreshed). A refresh answered ResourceNotFound, AccessDenied,
//! InvalidToken or ExpiredToken drops the entry; other failures keep serving
//! it until near expiry, retrying with backoff.
//!
//! **Single flight.** Concurrent requests for one token share one broker call,
//! run in its own task so a client hanging up does not cancel it for others.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foldhash::fast::RandomState as FrontHashState;
use tokio::sync::{watch, Semaphore};

use podid_api::clock::Clock;
use crate::metrics::AgentMetrics;
use crate::policy::{CachePolicy, Freshness};
use crate::response::{credentials_body, StoredAnswer};
use crate::token::{self, SecretToken, TokenDigest, TokenInfo, TokenRejection};
use crate::upstream::{CredentialSource, FetchedCredentials, UpstreamError};

/// Keys are SHA-256 digests or fast-hash tags, already uniform: hash their
/// first 8 bytes.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The slice length prefix: constant for digests.
    }
}

type DigestMap<V> = HashMap<TokenDigest, V, BuildHasherDefault<PrehashedHasher>>;
type TagMap = HashMap<u64, TokenDigest, BuildHasherDefault<PrehashedHasher>>;

type FlightResult = Result<Bytes, UpstreamError>;
type Flight = watch::Receiver<Option<FlightResult>>;

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From memory, fresh.
    Hit,
    /// From memory, past its refresh time (a refresh is under way or failing).
    Stale,
    /// This request asked the broker.
    Miss,
    /// This request waited for a broker call another had started.
    Joined,
}

/// Credentials to answer with. Its `Debug` leaves the body out (it holds
/// the secret key and the session token).
#[derive(Clone)]
pub struct Served {
    /// The pre-serialised container-credentials body.
    pub body: Bytes,
    /// How it was found.
    pub outcome: Outcome,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// Why a request gets no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token failed the sanity checks (400), no broker call made.
    Token(TokenRejection),
    /// The broker refused, or could not be reached.
    Upstream(UpstreamError),
}

/// The first step of a lookup.
#[derive(Debug)]
pub enum Step {
    /// Answered from memory, or refused.
    Done(Result<Served, Refusal>),
    /// The broker must be asked: pass this to [`PodCredentialCache::finish`].
    Fetch(Pending),
}

/// A token that passed the sanity checks and is not in memory.
#[derive(Debug)]
pub struct Pending {
    digest: TokenDigest,
    tag: u64,
    info: TokenInfo,
    now: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fetch,
    Refresh,
}

/// A pod, in the index that finds its entry when its token rotates: the first
/// 16 bytes of the SHA-256 of its (unverified) uid claim — fixed size, no
/// allocation per entry. A collision would only make a pod fetch again.
type PodKey = [u8; 16];

fn pod_key(uid: &str) -> PodKey {
    let digest = token::digest(uid);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// What an entry remembers of its token's claims.
#[derive(Debug, Clone, Copy)]
struct Claims {
    expires: Option<SystemTime>,
    pod: Option<PodKey>,
}

impl From<&TokenInfo> for Claims {
    fn from(info: &TokenInfo) -> Self {
        Claims {
            expires: info.expires,
            pod: info.pod_uid.as_deref().map(pod_key),
        }
    }
}

/// A token an entry keeps, with its fast-hash tag (its key in the front index).
struct KeptToken {
    token: SecretToken,
    tag: u64,
}

struct Entry {
    kept: Option<KeptToken>,
    claims: Claims,
    answer: StoredAnswer,
    refresh_at: SystemTime,
    serve_until: SystemTime,
    /// Served since it was fetched: only used entries are refreshed ahead.
    used: AtomicBool,
    /// LRU order: the cache's access counter at the last use.
    last_access: AtomicU64,
    /// Consecutive failed refreshes.
    failures: AtomicU32,
    /// No refresh before this (ms since the epoch).
    retry_at_ms: AtomicU64,
}

impl Entry {
    fn token_expired(&self, now: SystemTime) -> bool {
        self.claims.expires.is_some_and(|t| now >= t)
    }

    /// Whether `token` is exactly the token this entry keeps (constant time).
    fn holds(&self, token: &str) -> bool {
        self.kept.as_ref().is_some_and(|k| {
            constant_time_eq::constant_time_eq(k.token.expose().as_bytes(), token.as_bytes())
        })
    }
}

#[derive(Default)]
struct Inner {
    entries: DigestMap<Arc<Entry>>,
    pods: HashMap<PodKey, TokenDigest, BuildHasherDefault<PrehashedHasher>>,
    /// Fast-hash tag of a kept token → its entry's digest.
    front: TagMap,
    /// Entries keeping their token.
    kept_tokens: usize,
}

impl Inner {
    /// Removes `digest` (if `only` is given: only while it is that entry).
    fn remove(&mut self, digest: &TokenDigest, only: Option<&Arc<Entry>>) -> bool {
        let Some(current) = self.entries.get(digest) else {
            return false;
        };
        if only.is_some_and(|e| !Arc::ptr_eq(e, current)) {
            return false;
        }
        if let Some(entry) = self.entries.remove(digest) {
            self.forget_kept(digest, &entry);
            if let Some(pod) = &entry.claims.pod {
                if self.pods.get(pod).is_some_and(|d| d == digest) {
                    self.pods.remove(pod);
                }
            }
        }
        true
    }

    /// Accounts for `entry` (under `digest`) leaving the map.
    fn forget_kept(&mut self, digest: &TokenDigest, entry: &Entry) {
        if let Some(kept) = &entry.kept {
            self.kept_tokens -= 1;
            if self.front.get(&kept.tag).is_some_and(|d| d == digest) {
                self.front.remove(&kept.tag);
            }
        }
    }

    /// Inserts `entry`, replacing the one under `digest` if any.
    fn insert(&mut self, digest: TokenDigest, entry: Entry) {
        if let Some(kept) = &entry.kept {
            self.kept_tokens += 1;
            self.front.insert(kept.tag, digest);
        }
        if let Some(old) = self.entries.insert(digest, Arc::new(entry)) {
            // Same digest, same token, same tag: only the count changes.
            if old.kept.is_some() {
                self.kept_tokens -= 1;
            }
        }
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The agent's credential cache. See the module docs for the policy.
pub struct PodCredentialCache {
    policy: CachePolicy,
    source: Arc<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<AgentMetrics>,
    inner: RwLock<Inner>,
    flights: Mutex<DigestMap<Flight>>,
    /// Seeds the front index's fast hash (random per process).
    front_hash: FrontHashState,
    access_counter: AtomicU64,
    refresh_permits: Arc<Semaphore>,
    consecutive_outages: AtomicU32,
}

impl std::fmt::Debug for PodCredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCredentialCache")
            .field("policy", &self.policy)
            .field("len", &self.len())
            .finish()
    }
}

impl PodCredentialCache {
    /// A cache asking `source`, timed by `clock`, counting into `metrics`.
    pub fn new(
        policy: CachePolicy,
        source: Arc<dyn CredentialSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<AgentMetrics>,
    ) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(policy.refresh_concurrency.max(1)));
        Arc::new(PodCredentialCache {
            policy,
            source,
            clock,
            metrics,
            inner: RwLock::new(Inner::default()),
            flights: Mutex::new(DigestMap::default()),
            front_hash: FrontHashState::default(),
            access_counter: AtomicU64::new(0),
            refresh_permits: permits,
            consecutive_outages: AtomicU32::new(0),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the broker answers: fewer than `unhealthy_after` consecutive
    /// broker calls failed as outages (unreachable, timeout, 5xx).
    pub fn upstream_healthy(&self) -> bool {
        self.consecutive_upstream_failures() < self.policy.unhealthy_after.max(1)
    }

    /// Consecutive broker calls that failed as outages.
    pub fn consecutive_upstream_failures(&self) -> u32 {
        self.consecutive_outages.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, DigestMap<Flight>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Credentials for the pod presenting `token`: from memory when held,
    /// else from the broker (sharing a call already under way for the same
    /// token). The token's sanity is checked before any broker call; on a hit
    /// only its expiry is (the digest proves it is the token the broker took).
    pub async fn get(self: &Arc<Self>, token: &str) -> Result<Served, Refusal> {
        match self.try_get(token) {
            Step::Done(result) => result,
            Step::Fetch(pending) => self.finish(token, pending).await,
        }
    }

    /// The synchronous part of [`PodCredentialCache::get`]: answers from memory
    /// or refuses the token, or says the broker must be asked (then call
    /// [`PodCredentialCache::finish`] with the same token).
    pub fn try_get(self: &Arc<Self>, token: &str) -> Step {
        if token.is_empty() {
            return Step::Done(Err(Refusal::Token(TokenRejection::Missing)));
        }
        if token.len() > token::MAX_TOKEN_LEN {
            return Step::Done(Err(Refusal::Token(TokenRejection::TooLong)));
        }
        let now = self.clock.now();
        let tag = self.front_hash.hash_one(token.as_bytes());
        let kept = {
            let inner = self.read();
            inner
                .front
                .get(&tag)
                .filter(|d| inner.entries.get(*d).is_some_and(|e| e.holds(token)))
                .copied()
        };
        let digest = kept.unwrap_or_else(|| token::digest(token));
        match self.lookup(&digest, token, tag, now) {
            Lookup::Served(served) => Step::Done(Ok(served)),
            Lookup::TokenExpired => Step::Done(Err(Refusal::Token(TokenRejection::Expired))),
            Lookup::Miss => match token::inspect(token, now) {
                Ok(info) => Step::Fetch(Pending {
                    digest,
                    tag,
                    info,
                    now,
                }),
                Err(rejection) => Step::Done(Err(Refusal::Token(rejection))),
            },
        }
    }

    /// Asks the broker for `token` (or joins the call under way).
    pub async fn finish(
        self: &Arc<Self>,
        token: &str,
        pending: Pending,
    ) -> Result<Served, Refusal> {
        let Pending {
            digest,
            tag,
            info,
            now,
        } = pending;
        self.fetch(digest, tag, token, info, now)
            .await
            .map_err(Refusal::Upstream)
    }

    /// The entry for `digest`, the key of `token` (whose fast-hash tag is `tag`).
    fn lookup(
        self: &Arc<Self>,
        digest: &TokenDigest,
        token: &str,
        tag: u64,
        now: SystemTime,
    ) -> Lookup {
        let stale = {
            let inner = self.read();
            let Some(entry) = inner.entries.get(digest) else {
                return Lookup::Miss;
            };
            if entry.token_expired(now) {
                let entry = entry.clone();
                drop(inner);
                if self.write().remove(digest, Some(&entry)) {
                    self.metrics.evicted("expired", 1);
                    self.update_gauge();
                }
                return Lookup::TokenExpired;
            }
            let freshness = self
                .policy
                .freshness(now, entry.refresh_at, entry.serve_until);
            if freshness != Freshness::Unservable {
                entry.last_access.store(
                    self.access_counter.fetch_add(1, Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                if !entry.used.load(Ordering::Relaxed) {
                    entry.used.store(true, Ordering::Relaxed);
                }
            }
            match freshness {
                Freshness::Fresh => {
                    self.metrics.cache_hit.inc();
                    return Lookup::Served(Served {
                        body: entry.answer.body(),
                        outcome: Outcome::Hit,
                    });
                }
                Freshness::Stale => entry.clone(),
                Freshness::Unservable => {
                    let entry = entry.clone();
                    drop(inner);
                    if self.write().remove(digest, Some(&entry)) {
                        self.metrics.evicted("expired", 1);
                        self.update_gauge();
                    }
                    return Lookup::Miss;
                }
            }
        };
        self.metrics.cache_stale.inc();
        tracing::debug!("serving credentials past their refresh time");
        self.start_refresh(*digest, &stale, token, tag, now);
        Lookup::Served(Served {
            body: stale.answer.body(),
            outcome: Outcome::Stale,
        })
    }

    /// A servable entry, without touching it (for the single-flight re-check).
    fn peek(&self, digest: &TokenDigest, now: SystemTime) -> Option<Bytes> {
        let inner = self.read();
        let entry = inner.entries.get(digest)?;
        let servable = !entry.token_expired(now)
            && self
                .policy
                .freshness(now, entry.refresh_at, entry.serve_until)
                != Freshness::Unservable;
        servable.then(|| entry.answer.body())
    }

    async fn fetch(
        self: &Arc<Self>,
        digest: TokenDigest,
        tag: u64,
        token: &str,
        info: TokenInfo,
        now: SystemTime,
    ) -> Result<Served, UpstreamError> {
        let (flight, outcome) = {
            let mut flights = self.flights();
            match flights.get(&digest) {
                Some(flight) => (flight.clone(), Outcome::Joined),
                None => {
                    // A flight that just finished has stored its entry before
                    // leaving the table: look again under the table's lock.
                    if let Some(body) = self.peek(&digest, now) {
                        self.metrics.cache_hit.inc();
                        return Ok(Served {
                            body,
                            outcome: Outcome::Hit,
                        });
                    }
                    let (tx, rx) = watch::channel(None);
                    flights.insert(digest, rx.clone());
                    let cache = self.clone();
                    let token = KeptToken {
                        token: SecretToken::new(token),
                        tag,
                    };
                    let claims = Claims::from(&info);
                    tokio::spawn(async move {
                        cache
                            .run_flight(digest, token, claims, tx, Kind::Fetch)
                            .await
                    });
                    (rx, Outcome::Miss)
                }
            }
        };
        match outcome {
            Outcome::Joined => self.metrics.cache_joined.inc(),
            _ => self.metrics.cache_miss.inc(),
        };
        let body = wait(flight).await?;
        Ok(Served { body, outcome })
    }

    /// Starts a background refresh of `entry` (whose token is `token`, with
    /// fast-hash tag `tag`) unless one is under way or its retry time has not
    /// come.
    fn start_refresh(
        self: &Arc<Self>,
        digest: TokenDigest,
        entry: &Arc<Entry>,
        token: &str,
        tag: u64,
        now: SystemTime,
    ) -> Option<Flight> {
        if epoch_ms(now) < entry.retry_at_ms.load(Ordering::Relaxed) {
            return None;
        }
        let mut flights = self.flights();
        if flights.contains_key(&digest) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(digest, rx.clone());
        drop(flights);
        let cache = self.clone();
        let token = KeptToken {
            token: SecretToken::new(token),
            tag,
        };
        let claims = entry.claims;
        tokio::spawn(async move {
            cache
                .run_flight(digest, token, claims, tx, Kind::Refresh)
                .await
        });
        Some(rx)
    }

    async fn run_flight(
        self: Arc<Self>,
        digest: TokenDigest,
        token: KeptToken,
        claims: Claims,
        tx: watch::Sender<Option<FlightResult>>,
        kind: Kind,
    ) {
        // Leaves the flight table however this ends (a panic included:
        // waiters then see the channel close).
        let guard = FlightGuard {
            cache: &self,
            digest,
        };
        let _permit = match kind {
            Kind::Refresh => self.refresh_permits.clone().acquire_owned().await.ok(),
            Kind::Fetch => None,
        };
        let started = tokio::time::Instant::now();
        let result = self.source.fetch(token.token.expose()).await;
        self.metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        self.note_upstream(result.as_ref().err());
        let now = self.clock.now();
        let outcome = match result {
            Ok(credentials) => self.store(digest, token, claims, &credentials, now, kind),
            Err(e) => {
                self.metrics.upstream_error(&e.code);
                if e.drops_entry() {
                    if self.write().remove(&digest, None) {
                        self.metrics.evicted("dropped", 1);
                        self.update_gauge();
                    }
                    if kind == Kind::Refresh {
                        self.metrics.refresh("dropped");
                        tracing::info!(code = %e.code, "refresh refused: cached credentials dropped");
                    }
                } else if kind == Kind::Refresh {
                    self.metrics.refresh("failed");
                    if let Some(entry) = self.read().entries.get(&digest) {
                        let failures = entry
                            .failures
                            .fetch_add(1, Ordering::Relaxed)
                            .saturating_add(1);
                        let retry_at = now + self.policy.retry_delay(failures);
                        entry
                            .retry_at_ms
                            .store(epoch_ms(retry_at), Ordering::Relaxed);
                    }
                    tracing::warn!(code = %e.code, status = e.status, "refresh failed; serving cached credentials");
                }
                Err(e)
            }
        };
        drop(guard);
        tx.send_replace(Some(outcome));
    }

    fn note_upstream(&self, error: Option<&UpstreamError>) {
        if error.is_some_and(UpstreamError::is_outage) {
            let n = self
                .consecutive_outages
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if n == self.policy.unhealthy_after.max(1) {
                tracing::warn!(
                    failures = n,
                    "the credential broker is unreachable; serving cached credentials"
                );
            }
        } else if self.consecutive_outages.swap(0, Ordering::Relaxed)
            >= self.policy.unhealthy_after.max(1)
        {
            tracing::info!("the credential broker answers again");
        }
        self.metrics
            .upstream_up
            .set(i64::from(self.upstream_healthy()));
    }

    fn store(
        &self,
        digest: TokenDigest,
        token: KeptToken,
        claims: Claims,
        credentials: &FetchedCredentials,
        now: SystemTime,
        kind: Kind,
    ) -> FlightResult {
        if credentials.expiration <= now {
            return Err(UpstreamError::internal(
                "the credential broker answered expired credentials",
            ));
        }
        let body = credentials_body(credentials);
        let serve_until = self.policy.serve_until(credentials.expiration);
        if kind == Kind::Refresh {
            self.metrics.refresh("ok");
        }
        if self.policy.max_entries == 0 || now >= serve_until {
            return Ok(body);
        }
        let mut entry = Entry {
            kept: Some(token),
            claims,
            answer: StoredAnswer::Ready(body.clone()),
            refresh_at: self.policy.refresh_at(now, credentials.expiration),
            serve_until,
            used: AtomicBool::new(kind == Kind::Fetch),
            last_access: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            retry_at_ms: AtomicU64::new(0),
        };
        let mut inner = self.write();
        match (kind, inner.entries.get(&digest)) {
            // The entry was dropped or replaced while refreshing: do not bring it back.
            (Kind::Refresh, None) => return Ok(body),
            (Kind::Refresh, Some(old)) => {
                entry.last_access = AtomicU64::new(old.last_access.load(Ordering::Relaxed));
            }
            (Kind::Fetch, _) => {
                entry.last_access =
                    AtomicU64::new(self.access_counter.fetch_add(1, Ordering::Relaxed));
                if !inner.entries.contains_key(&digest)
                    && inner.entries.len() >= self.policy.max_entries
                {
                    let evicted = evict_lru(&mut inner, self.policy.max_entries);
                    self.metrics.evicted("lru", evicted);
                }
            }
        }
        if let Some(pod) = entry.claims.pod {
            if let Some(previous) = inner.pods.insert(pod, digest) {
                if previous != digest && inner.remove(&previous, None) {
                    // The pod's token rotated and the broker took the new one.
                    self.metrics.evicted("replaced", 1);
                }
            }
        }
        // Keep the token while there is room (an entry being replaced frees its place).
        let replaces_kept = inner
            .entries
            .get(&digest)
            .is_some_and(|old| old.kept.is_some());
        if !replaces_kept && inner.kept_tokens >= self.policy.max_refresh_ahead {
            // Beyond the node's usual pods: no token, and the answer compact.
            entry.kept = None;
            entry.answer = StoredAnswer::compact(body.clone(), credentials.session_token.expose());
        }
        inner.insert(digest, entry);
        self.metrics
            .cached_entries
            .set(i64::try_from(inner.entries.len()).unwrap_or(i64::MAX));
        Ok(body)
    }

    fn update_gauge(&self) {
        let len = self.len();
        self.metrics
            .cached_entries
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// One maintenance pass, waiting for the refreshes it starts: drops
    /// entries near expiry (or whose token has expired) and refreshes due
    /// entries that were used since their last fetch, the most urgent first.
    /// While the broker is down, at most `refresh_concurrency` refreshes are
    /// started per pass (each failed one backs off on its own).
    pub async fn maintain(self: &Arc<Self>) {
        for flight in self.maintenance_pass() {
            let _ = wait(flight).await;
        }
    }

    fn maintenance_pass(self: &Arc<Self>) -> Vec<Flight> {
        let now = self.clock.now();
        let mut expired = Vec::new();
        let mut due = Vec::new();
        {
            let inner = self.read();
            let now_ms = epoch_ms(now);
            for (digest, entry) in &inner.entries {
                if entry.token_expired(now) || now >= entry.serve_until {
                    expired.push((*digest, entry.clone()));
                } else if now >= entry.refresh_at
                    && entry.kept.is_some()
                    && entry.used.load(Ordering::Relaxed)
                    && now_ms >= entry.retry_at_ms.load(Ordering::Relaxed)
                {
                    due.push((*digest, entry.clone()));
                }
            }
        }
        if !expired.is_empty() {
            let mut inner = self.write();
            let removed = expired
                .iter()
                .filter(|(d, e)| inner.remove(d, Some(e)))
                .count();
            drop(inner);
            self.metrics.evicted("expired", removed as u64);
            self.update_gauge();
        }
        due.sort_by_key(|(_, e)| e.serve_until);
        if !self.upstream_healthy() {
            due.truncate(self.policy.refresh_concurrency.max(1));
        }
        due.iter()
            .filter_map(|(d, e)| {
                let kept = e.kept.as_ref()?;
                self.start_refresh(*d, e, kept.token.expose(), kept.tag, now)
            })
            .collect()
    }

    /// Runs a maintenance pass every maintenance interval, forever (spawn it;
    /// abort the task to stop). Refreshes run on in the background, at most
    /// `refresh_concurrency` at once.
    pub async fn run_maintenance(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.policy.maintenance_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            drop(self.maintenance_pass());
        }
    }
}

enum Lookup {
    Served(Served),
    TokenExpired,
    Miss,
}

struct FlightGuard<'a> {
    cache: &'a PodCredentialCache,
    digest: TokenDigest,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.flights().remove(&self.digest);
    }
}

async fn wait(mut flight: Flight) -> FlightResult {
    match flight.wait_for(Option::is_some).await {
        Ok(result) => result
            .clone()
            .unwrap_or_else(|| Err(UpstreamError::internal("the credential request was lost"))),
        Err(_) => Err(UpstreamError::internal(
            "the credential request was abandoned",
        )),
    }
}

/// Removes the least recently used entries (1% of `max`, at least one),
/// returning how many.
fn evict_lru(inner: &mut Inner, max: usize) -> u64 {
    let batch = (max / 100).max(1).min(inner.entries.len());
    if batch == 0 {
        return 0;
    }
    let mut by_age: Vec<(u64, TokenDigest)> = inner
        .entries
        .iter()
        .map(|(d, e)| (e.last_access.load(Ordering::Relaxed), *d))
        .collect();
    by_age.select_nth_unstable_by_key(batch - 1, |(age, _)| *age);
    let mut n = 0;
    for (_, digest) in &by_age[..batch] {
        if inner.remove(digest, None) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::clock::TokioClock;
    use crate::token::tests::make_token;
    use crate::upstream::Secret;

    const MIN: Duration = Duration::from_secs(60);

    /// A broker stand-in: counts calls, answers what it is told, can hold
    /// answers until released.
    struct FakeSource {
        clock: TokioClock,
        calls: AtomicUsize,
        answer: Mutex<Result<Duration, UpstreamError>>,
        gate: Option<Semaphore>,
    }

    impl FakeSource {
        fn new(clock: TokioClock, gated: bool) -> Arc<Self> {
            Arc::new(FakeSource {
                clock,
                calls: AtomicUsize::new(0),
                answer: Mutex::new(Ok(60 * MIN)),
                gate: gated.then(|| Semaphore::new(0)),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn answer(&self, answer: Result<Duration, UpstreamError>) {
            *self.answer.lock().unwrap() = answer;
        }
    }

    #[async_trait]
    impl CredentialSource for FakeSource {
        async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError> {
            assert!(token.contains('.'), "the pod's token is passed on");
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let lifetime = self.answer.lock().unwrap().clone()?;
            Ok(FetchedCredentials {
                access_key_id: format!("ASIA{n}"),
                secret_access_key: Secret::new("secret"),
                session_token: Secret::new("session"),
                expiration: self.clock.now() + lifetime,
                assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            })
        }
    }

    struct Fixture {
        clock: TokioClock,
        source: Arc<FakeSource>,
        cache: Arc<PodCredentialCache>,
        metrics: Arc<AgentMetrics>,
    }

    fn fixture(policy: CachePolicy, gated: bool) -> Fixture {
        let clock = TokioClock::new();
        let source = FakeSource::new(clock, gated);
        let metrics = Arc::new(AgentMetrics::new());
        let cache = PodCredentialCache::new(policy, source.clone(), Arc::new(clock), metrics.clone());
        Fixture {
            clock,
            source,
            cache,
            metrics,
        }
    }

    impl Fixture {
        fn token(&self, pod: &str) -> String {
            self.token_expiring(pod, 24 * 60 * MIN)
        }

        fn token_expiring(&self, pod: &str, after: Duration) -> String {
            let exp = (self.clock.now() + after)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            make_token(Some(exp), Some(pod))
        }

        async fn key_id(&self, token: &str) -> (String, Outcome) {
            let served = self.cache.get(token).await.expect("credentials");
            let v: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
            (
                v["AccessKeyId"].as_str().unwrap().to_owned(),
                served.outcome,
            )
        }

        async fn settle(&self) {
            while !self.cache.flights().is_empty() {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_requests_are_served_from_memory() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        assert_eq!(f.key_id(&token).await, ("ASIA1".to_owned(), Outcome::Miss));
        for _ in 0..100 {
            assert_eq!(f.key_id(&token).await, ("ASIA1".to_owned(), Outcome::Hit));
        }
        assert_eq!(f.source.calls(), 1);
        assert_eq!(f.metrics.cache_hit.get(), 100);
        let shown = format!("{:?}", f.cache.get(&token).await.unwrap());
        assert!(
            !shown.contains("secret") && !shown.contains("session"),
            "Debug hides the credentials: {shown}"
        );
        assert_eq!(f.metrics.cached_entries.get(), 1);
        // Another pod is another entry.
        assert_eq!(
            f.key_id(&f.token("pod-b")).await,
            ("ASIA2".to_owned(), Outcome::Miss)
        );
        assert_eq!(f.cache.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_first_requests_share_one_call() {
        let f = fixture(CachePolicy::default(), true);
        let token = f.token("pod-a");
        let mut requests = Vec::new();
        for _ in 0..500 {
            let (cache, token) = (f.cache.clone(), token.clone());
            requests.push(tokio::spawn(async move { cache.get(&token).await }));
        }
        while f.metrics.cache_joined.get() + f.metrics.cache_miss.get() < 500 {
            tokio::task::yield_now().await;
        }
        assert_eq!(f.source.calls(), 1);
        f.source.gate.as_ref().unwrap().add_permits(1);
        let mut outcomes = HashMap::new();
        for r in requests {
            let served = r.await.unwrap().unwrap();
            assert!(std::str::from_utf8(&served.body).unwrap().contains("ASIA1"));
            *outcomes.entry(format!("{:?}", served.outcome)).or_insert(0) += 1;
        }
        assert_eq!(f.source.calls(), 1);
        assert_eq!(outcomes.get("Miss"), Some(&1));
        assert_eq!(outcomes.get("Joined"), Some(&499));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_up_leader_does_not_cancel_the_call() {
        let f = fixture(CachePolicy::default(), true);
        let token = f.token("pod-a");
        let leader = {
            let (cache, token) = (f.cache.clone(), token.clone());
            tokio::spawn(async move { cache.get(&token).await })
        };
        while f.source.calls() == 0 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let follower = {
            let (cache, token) = (f.cache.clone(), token.clone());
            tokio::spawn(async move { cache.get(&token).await })
        };
        while f.metrics.cache_joined.get() == 0 {
            tokio::task::yield_now().await;
        }
        f.source.gate.as_ref().unwrap().add_permits(1);
        assert_eq!(follower.await.unwrap().unwrap().outcome, Outcome::Joined);
        assert_eq!(f.source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn used_entries_are_refreshed_ahead_of_expiry() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        f.key_id(&token).await;
        tokio::time::advance(39 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(
            f.source.calls(),
            1,
            "not due before 20 minutes before expiry"
        );
        tokio::time::advance(MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 2, "due 20 minutes before expiry");
        assert_eq!(
            f.metrics
                .refreshes
                .get_or_create(&crate::metrics::FetchLabels { result: "ok" })
                .get(),
            1
        );
        // The pod gets the new credentials, fresh, from memory.
        assert_eq!(f.key_id(&token).await, ("ASIA2".to_owned(), Outcome::Hit));
        // Used since: refreshed again 40 minutes later.
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 3);
        // Not used since the last refresh (the pod is gone): not refreshed, and
        // dropped near expiry.
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 3);
        assert_eq!(f.cache.len(), 1);
        tokio::time::advance(19 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.cache.len(), 0);
        assert_eq!(f.metrics.cached_entries.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn short_sessions_are_refreshed_at_half_life() {
        let f = fixture(CachePolicy::default(), false);
        f.source.answer(Ok(20 * MIN));
        let token = f.token("pod-a");
        f.key_id(&token).await;
        tokio::time::advance(10 * MIN - Duration::from_secs(1)).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_maintenance_task_runs_on_its_interval() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        f.key_id(&token).await;
        let task = tokio::spawn(f.cache.clone().run_maintenance());
        tokio::time::sleep(40 * MIN + 10 * Duration::from_secs(1)).await;
        f.settle().await;
        assert_eq!(f.source.calls(), 2);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stale_credentials_are_served_while_the_broker_is_down_until_near_expiry() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        f.key_id(&token).await;
        f.source.answer(Err(UpstreamError::unavailable("down")));
        tokio::time::advance(41 * MIN).await;
        // Past the refresh time: served at once, and the refresh starts (and fails).
        assert_eq!(f.key_id(&token).await, ("ASIA1".to_owned(), Outcome::Stale));
        f.settle().await;
        assert_eq!(f.source.calls(), 2);
        // Within the retry delay: served without another call.
        assert_eq!(f.key_id(&token).await, ("ASIA1".to_owned(), Outcome::Stale));
        f.settle().await;
        assert_eq!(f.source.calls(), 2);
        // Retries back off: 5 s, then 10 s, …
        tokio::time::advance(Duration::from_secs(5)).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 4);
        assert!(!f.cache.upstream_healthy(), "three outages in a row");
        assert_eq!(f.metrics.upstream_up.get(), 0);
        // Still served a second before the margin.
        let until = 59 * MIN - (41 * MIN + Duration::from_secs(15)) - Duration::from_secs(1);
        tokio::time::advance(until).await;
        assert_eq!(f.key_id(&token).await.0, "ASIA1");
        // Then no more: the next request asks, and gets the outage.
        tokio::time::advance(Duration::from_secs(1)).await;
        match f.cache.get(&token).await {
            Err(Refusal::Upstream(e)) => assert_eq!(
                (e.status, e.code.as_str()),
                (503, "ServiceUnavailableException")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.cache.len(), 0);
        // The broker is back: served again, healthy again.
        f.source.answer(Ok(60 * MIN));
        assert_eq!(f.key_id(&token).await.1, Outcome::Miss);
        assert!(f.cache.upstream_healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_on_refresh_drop_the_entry() {
        for code in crate::upstream::DROPPING_CODES {
            let f = fixture(CachePolicy::default(), false);
            let token = f.token("pod-a");
            f.key_id(&token).await;
            let status = if code == "ResourceNotFoundException" {
                404
            } else {
                400
            };
            f.source
                .answer(Err(UpstreamError::new(status, code, "refused")));
            tokio::time::advance(40 * MIN).await;
            f.cache.maintain().await;
            assert_eq!(f.cache.len(), 0, "{code} drops the entry");
            assert_eq!(
                f.metrics
                    .evictions
                    .get_or_create(&crate::metrics::FetchLabels { result: "dropped" })
                    .get(),
                1
            );
            assert!(f.cache.upstream_healthy(), "a refusal is an answer");
            match f.cache.get(&token).await {
                Err(Refusal::Upstream(e)) => {
                    assert_eq!((e.status, e.code.as_str()), (status, code))
                }
                other => panic!("{code}: {other:?}"),
            }
            assert_eq!(f.source.calls(), 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_refusals_on_refresh_keep_serving() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        f.key_id(&token).await;
        f.source.answer(Err(UpstreamError::new(
            429,
            "ThrottlingException",
            "slow down",
        )));
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.cache.len(), 1);
        assert_eq!(f.key_id(&token).await, ("ASIA1".to_owned(), Outcome::Stale));
    }

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_used_entry_goes_first() {
        let policy = CachePolicy {
            max_entries: 3,
            ..CachePolicy::default()
        };
        let f = fixture(policy, false);
        let tokens: Vec<String> = ["a", "b", "c", "d"].iter().map(|p| f.token(p)).collect();
        for t in &tokens[..3] {
            f.key_id(t).await;
        }
        f.key_id(&tokens[0]).await; // a is now more recent than b
        f.key_id(&tokens[3]).await;
        assert_eq!(f.cache.len(), 3);
        assert_eq!(
            f.metrics
                .evictions
                .get_or_create(&crate::metrics::FetchLabels { result: "lru" })
                .get(),
            1
        );
        assert_eq!(f.source.calls(), 4);
        assert_eq!(f.key_id(&tokens[0]).await.1, Outcome::Hit);
        assert_eq!(f.key_id(&tokens[2]).await.1, Outcome::Hit);
        assert_eq!(f.key_id(&tokens[1]).await.1, Outcome::Miss, "b was evicted");
        assert_eq!(f.cache.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_token_past_its_exp_is_refused() {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token_expiring("pod-a", 10 * MIN);
        f.key_id(&token).await;
        tokio::time::advance(10 * MIN).await;
        assert_eq!(
            f.cache.get(&token).await.unwrap_err(),
            Refusal::Token(TokenRejection::Expired)
        );
        assert_eq!(f.cache.len(), 0);
        assert_eq!(f.source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_tokens_never_reach_the_broker() {
        let f = fixture(CachePolicy::default(), false);
        for token in [
            "",
            "garbage",
            "a.b.c",
            &f.token_expiring("p", Duration::ZERO),
        ] {
            assert!(
                matches!(f.cache.get(token).await, Err(Refusal::Token(_))),
                "{token}"
            );
        }
        assert_eq!(f.source.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_replaces_the_pods_entry() {
        let f = fixture(CachePolicy::default(), false);
        let old = f.token("pod-a");
        f.key_id(&old).await;
        tokio::time::advance(MIN).await;
        let new = f.token("pod-a");
        assert_ne!(old, new);
        assert_eq!(
            f.key_id(&new).await.1,
            Outcome::Miss,
            "a new token is checked by the broker"
        );
        assert_eq!(f.cache.len(), 1);
        assert_eq!(f.key_id(&new).await.1, Outcome::Hit);
        assert_eq!(f.key_id(&old).await.1, Outcome::Miss);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_of_new_pods_are_not_cached() {
        let f = fixture(CachePolicy::default(), false);
        f.source.answer(Err(UpstreamError::unavailable("down")));
        let token = f.token("pod-a");
        assert!(f.cache.get(&token).await.is_err());
        assert!(f.cache.get(&token).await.is_err());
        assert_eq!(f.source.calls(), 2);
        assert!(f.cache.upstream_healthy(), "two outages are not yet three");
        assert!(f.cache.get(&token).await.is_err());
        assert!(!f.cache.upstream_healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn size_zero_disables_caching() {
        let f = fixture(
            CachePolicy {
                max_entries: 0,
                ..CachePolicy::default()
            },
            false,
        );
        let token = f.token("pod-a");
        f.key_id(&token).await;
        f.key_id(&token).await;
        assert_eq!(f.source.calls(), 2);
        assert_eq!(f.cache.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_broker_is_down_few_refreshes_are_tried_per_pass() {
        let f = fixture(CachePolicy::default(), false);
        let tokens: Vec<String> = (0..20).map(|i| f.token(&format!("pod-{i}"))).collect();
        for t in &tokens {
            f.key_id(t).await;
        }
        f.source.answer(Err(UpstreamError::unavailable("down")));
        for i in 0..3 {
            assert!(f.cache.get(&f.token(&format!("new-{i}"))).await.is_err());
        }
        assert!(!f.cache.upstream_healthy());
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(
            f.source.calls(),
            23 + 8,
            "refresh_concurrency refreshes per pass while down"
        );
        // Those that failed wait for their retry; the others get their turn.
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 23 + 16);
        assert_eq!(f.cache.len(), 20, "all still served");
    }

    #[tokio::test(start_paused = true)]
    async fn only_max_refresh_ahead_entries_keep_their_token() {
        let f = fixture(
            CachePolicy {
                max_refresh_ahead: 2,
                ..CachePolicy::default()
            },
            false,
        );
        let tokens: Vec<String> = ["a", "b", "c"].iter().map(|p| f.token(p)).collect();
        for t in &tokens {
            f.key_id(t).await;
        }
        assert_eq!(f.cache.read().kept_tokens, 2);
        assert_eq!(f.cache.read().front.len(), 2);
        // All three are served from memory, kept token or not.
        for t in &tokens {
            assert_eq!(f.key_id(t).await.1, Outcome::Hit);
        }
        // Due: only the two that keep their token are refreshed ahead.
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 5);
        // The third is refreshed when its pod asks (served at once, stale).
        assert_eq!(
            f.key_id(&tokens[2]).await,
            ("ASIA3".to_owned(), Outcome::Stale)
        );
        f.settle().await;
        assert_eq!(f.source.calls(), 6);
        assert_eq!(
            f.key_id(&tokens[2]).await,
            ("ASIA6".to_owned(), Outcome::Hit)
        );
        assert_eq!(f.cache.read().kept_tokens, 2, "no room was freed");
        // Dropping a keeping entry frees its place for the next one stored.
        f.cache.write().remove(&token::digest(&tokens[0]), None);
        assert_eq!(
            (f.cache.read().kept_tokens, f.cache.read().front.len()),
            (1, 1)
        );
        f.key_id(&f.token("d")).await;
        assert_eq!(
            (f.cache.read().kept_tokens, f.cache.read().front.len()),
            (2, 2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_front_index_serves_only_the_exact_kept_token() {
        let f = fixture(CachePolicy::default(), false);
        let victim = f.token("victim");
        f.key_id(&victim).await;
        // Another token whose fast hash collided with the victim's (forced
        // here: with a random seed it cannot be aimed at) is not served the
        // victim's entry: the comparison fails and the SHA-256 key misses.
        let other = f.token("other");
        let tag = f.cache.front_hash.hash_one(other.as_bytes());
        let victim_digest = token::digest(&victim);
        f.cache.write().front.insert(tag, victim_digest);
        assert_eq!(f.key_id(&other).await, ("ASIA2".to_owned(), Outcome::Miss));
        assert_eq!(f.key_id(&victim).await, ("ASIA1".to_owned(), Outcome::Hit));
        // A token differing from the victim's in its last byte is the
        // broker's to judge (here it accepts it as the pod's rotated token).
        let mut near = victim.clone();
        let last = near.pop().unwrap();
        near.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(f.key_id(&near).await, ("ASIA3".to_owned(), Outcome::Miss));
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_kept_tokens_the_cache_still_serves_and_refreshes_on_request() {
        let f = fixture(
            CachePolicy {
                max_refresh_ahead: 0,
                ..CachePolicy::default()
            },
            false,
        );
        let token = f.token("pod-a");
        f.key_id(&token).await;
        assert_eq!(f.key_id(&token).await.1, Outcome::Hit);
        assert_eq!(f.cache.read().kept_tokens, 0);
        tokio::time::advance(40 * MIN).await;
        f.cache.maintain().await;
        assert_eq!(f.source.calls(), 1, "nothing to refresh ahead with");
        assert_eq!(f.key_id(&token).await.1, Outcome::Stale);
        f.settle().await;
        assert_eq!(f.key_id(&token).await, ("ASIA2".to_owned(), Outcome::Hit));
    }
}
