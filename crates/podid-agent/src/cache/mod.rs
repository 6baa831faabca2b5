//! Pods' credentials in memory: answers a token from the pure `index` or the
//! broker (`broker`), refreshes by the `refresh` rules, answers the broker's
//! refusals again from `refused` for a while, and counts it all in the metrics.

mod alive;
mod broker;
mod expiring;
mod index;
mod refresh;
mod refused;
mod revoke;

pub use self::revoke::Revalidated;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use bytes::Bytes;
use podid_singleflight::{Flight, SingleFlight};
use tokio::sync::Semaphore;

use self::broker::wait;
use self::index::{CachedEntry, CredentialIndex, FrontHasher, Prehashed};
use self::refresh::UpstreamHealth;
use self::refused::RefusedTokens;
use crate::metrics::AgentMetrics;
use crate::podcheck::PodCheck;
use crate::policy::{CachePolicy, Freshness};
use crate::token::{self, TokenDigest, TokenInfo, TokenRejection};
use crate::upstream::{CredentialSource, UpstreamError};
use podid_api::clock::Clock;

type BrokerResult = Result<Bytes, UpstreamError>;

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
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
    pub outcome: LookupOutcome,
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

/// A token that passed the sanity checks and is not in memory, or a hit
/// whose pod the kubelet must be asked about (`alive.rs`).
#[derive(Debug)]
pub struct Pending(Next);

#[derive(Debug)]
enum Next {
    Fetch {
        digest: TokenDigest,
        tag: u64,
        info: TokenInfo,
        now: SystemTime,
    },
    Hit(alive::HeldHit),
}

enum Lookup {
    Served(Served),
    TokenExpired,
    Miss,
}

/// The agent's credential cache: entries keyed by the SHA-256 of the token
/// the broker accepted, so an entry is only ever served to that token.
pub struct PodCredentialCache {
    policy: CachePolicy,
    source: Arc<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<AgentMetrics>,
    index: RwLock<CredentialIndex>,
    /// Broker calls under way, one per token digest.
    flights: SingleFlight<TokenDigest, BrokerResult, Prehashed>,
    front_hash: FrontHasher,
    refresh_permits: Arc<Semaphore>,
    health: UpstreamHealth,
    /// Tokens the broker refused, answered again without asking it.
    refused: RefusedTokens,
    /// Revocations so far (changed under the index's write lock): a broker
    /// answer that a revocation overtook is not stored (`revoke.rs`).
    revocations: AtomicU64,
    /// Whether each pod runs on this node (`alive.rs`), when checked.
    pods: Option<Arc<PodCheck>>,
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
        let health = UpstreamHealth::new(policy.unhealthy_after);
        let refused = RefusedTokens::new(policy.max_refused);
        Arc::new(PodCredentialCache {
            policy,
            source,
            clock,
            metrics,
            index: RwLock::new(CredentialIndex::default()),
            flights: SingleFlight::new(),
            front_hash: FrontHasher::default(),
            refresh_permits: permits,
            health,
            refused,
            revocations: AtomicU64::new(0),
            pods: None,
        })
    }

    /// [`PodCredentialCache::new`], serving and refreshing only pods that
    /// `pods` finds running on this node.
    pub fn with_pod_check(
        policy: CachePolicy,
        source: Arc<dyn CredentialSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<AgentMetrics>,
        pods: Arc<PodCheck>,
    ) -> Arc<Self> {
        let mut cache = Self::new(policy, source, clock, metrics);
        if let Some(fresh) = Arc::get_mut(&mut cache) {
            fresh.pods = Some(pods);
        }
        cache
    }

    /// The policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the broker answers: fewer than `unhealthy_after` consecutive
    /// broker calls failed as outages (unreachable, timeout, 5xx).
    pub fn upstream_healthy(&self) -> bool {
        self.health.is_up()
    }

    /// Consecutive broker calls that failed as outages.
    pub fn consecutive_upstream_failures(&self) -> u32 {
        self.health.consecutive_outages()
    }

    fn read(&self) -> RwLockReadGuard<'_, CredentialIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, CredentialIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
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
        let tag = self.front_hash.tag(token);
        let kept = self.read().find_kept(tag, token);
        let digest = kept.unwrap_or_else(|| token::digest(token));
        match self.lookup(&digest, token, tag, now) {
            Lookup::Served(served) => self.gate_hit(served, &digest),
            Lookup::TokenExpired => Step::Done(Err(Refusal::Token(TokenRejection::Expired))),
            Lookup::Miss => {
                if let Some(refusal) = self.refused.get(&digest, now) {
                    self.metrics.cache_refused.inc();
                    return Step::Done(Err(Refusal::Upstream(refusal)));
                }
                match token::inspect(token, now) {
                    Ok(info) => Step::Fetch(Pending(Next::Fetch {
                        digest,
                        tag,
                        info,
                        now,
                    })),
                    Err(rejection) => Step::Done(Err(Refusal::Token(rejection))),
                }
            }
        }
    }

    /// Asks the broker for `token` (or joins the call under way); for a hit
    /// whose pod's liveness is not known, asks the kubelet (`alive.rs`).
    pub async fn finish(
        self: &Arc<Self>,
        token: &str,
        pending: Pending,
    ) -> Result<Served, Refusal> {
        let (digest, tag, info, now) = match pending.0 {
            Next::Fetch {
                digest,
                tag,
                info,
                now,
            } => (digest, tag, info, now),
            Next::Hit(hit) => return self.finish_hit(hit).await,
        };
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
            let index = self.read();
            let Some(entry) = index.get(digest) else {
                return Lookup::Miss;
            };
            if entry.token_expired(now) {
                let entry = entry.clone();
                drop(index);
                self.drop_expired(digest, &entry);
                return Lookup::TokenExpired;
            }
            let freshness = self
                .policy
                .freshness(now, entry.refresh_at(), entry.serve_until());
            if freshness != Freshness::Unservable {
                index.touch(entry);
            }
            match freshness {
                Freshness::Fresh => {
                    self.metrics.cache_hit.inc();
                    return Lookup::Served(Served {
                        body: entry.body(),
                        outcome: LookupOutcome::Hit,
                    });
                }
                Freshness::Stale => entry.clone(),
                Freshness::Unservable => {
                    let entry = entry.clone();
                    drop(index);
                    self.drop_expired(digest, &entry);
                    return Lookup::Miss;
                }
            }
        };
        self.metrics.cache_stale.inc();
        tracing::debug!("serving credentials past their refresh time");
        self.start_refresh(*digest, &stale, token, tag, now);
        Lookup::Served(Served {
            body: stale.body(),
            outcome: LookupOutcome::Stale,
        })
    }

    /// Removes `entry` (under `digest`) if it is still there, as expired.
    fn drop_expired(&self, digest: &TokenDigest, entry: &Arc<CachedEntry>) {
        if self.write().remove(digest, Some(entry)) {
            self.metrics.evicted("expired", 1);
            self.update_gauge();
        }
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

    fn maintenance_pass(self: &Arc<Self>) -> Vec<Flight<BrokerResult>> {
        let now = self.clock.now();
        let plan =
            refresh::plan_maintenance(&self.read(), &self.policy, now, self.upstream_healthy());
        if !plan.expired.is_empty() {
            let mut index = self.write();
            let removed = plan
                .expired
                .iter()
                .filter(|(d, e)| index.remove(d, Some(e)))
                .count();
            drop(index);
            self.metrics.evicted("expired", removed as u64);
            self.update_gauge();
        }
        plan.due
            .iter()
            .filter_map(|(d, e)| {
                let kept = e.kept()?;
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

#[cfg(test)]
mod tests;
