//! The broker-call side of the cache: one flight per token digest (joined by
//! whoever else asks meanwhile), its answer stored or its failure applied
//! (drop, back off, remember the refusal), the broker's health noted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use podid_singleflight::{Flight, Joined};

use super::index::{CachedEntry, EntryClaims, KeptToken, Origin};
use super::refresh::{self, AfterFailure, HealthChange};
use super::refused;
use super::{BrokerResult, LookupOutcome, PodCredentialCache, Served};
use crate::response::{credentials_body, StoredAnswer};
use crate::token::{SecretToken, TokenDigest, TokenInfo};
use crate::upstream::{FetchedCredentials, UpstreamError};

impl PodCredentialCache {
    /// Asks the broker for `token` (one flight per digest), or joins the
    /// flight under way, or finds the answer a flight just stored.
    pub(super) async fn fetch(
        self: &Arc<Self>,
        digest: TokenDigest,
        tag: u64,
        token: &str,
        info: TokenInfo,
        now: SystemTime,
    ) -> Result<Served, UpstreamError> {
        let joined = self.flights.join_or_start(&digest, || {
            // A flight that just finished has stored its entry before
            // leaving the table: look again under the table's lock.
            if let Some(body) = self.peek(&digest, now) {
                return Err(body);
            }
            let kept = KeptToken {
                token: SecretToken::new(token),
                tag,
            };
            let claims = EntryClaims::from(&info);
            Ok(self.clone().run_flight(digest, kept, claims, Origin::Fetch))
        });
        let (flight, outcome) = match joined {
            Joined::Declined(body) => {
                self.metrics.cache_hit.inc();
                return Ok(Served {
                    body,
                    outcome: LookupOutcome::Hit,
                });
            }
            Joined::Started(flight) => {
                self.metrics.cache_miss.inc();
                (flight, LookupOutcome::Miss)
            }
            Joined::Joined(flight) => {
                self.metrics.cache_joined.inc();
                (flight, LookupOutcome::Joined)
            }
        };
        let body = wait(flight).await?;
        Ok(Served { body, outcome })
    }

    /// A servable entry's body, without touching it (for the single-flight re-check).
    fn peek(&self, digest: &TokenDigest, now: SystemTime) -> Option<Bytes> {
        let index = self.read();
        let entry = index.get(digest)?;
        refresh::servable(&self.policy, entry, now).then(|| entry.body())
    }

    /// Starts a background refresh of `entry` (whose token is `token`, with
    /// fast-hash tag `tag`) unless one is under way or its retry time has not
    /// come.
    pub(super) fn start_refresh(
        self: &Arc<Self>,
        digest: TokenDigest,
        entry: &CachedEntry,
        token: &str,
        tag: u64,
        now: SystemTime,
    ) -> Option<Flight<BrokerResult>> {
        if !entry.retry_due(now) {
            return None;
        }
        self.flights.start_if_idle(&digest, || {
            let kept = KeptToken {
                token: SecretToken::new(token),
                tag,
            };
            self.clone()
                .run_flight(digest, kept, entry.claims(), Origin::Refresh)
        })
    }

    /// One broker call for `kept`'s token, its answer stored under `digest`.
    pub(super) async fn run_flight(
        self: Arc<Self>,
        digest: TokenDigest,
        kept: KeptToken,
        claims: EntryClaims,
        origin: Origin,
    ) -> BrokerResult {
        let _permit = match origin {
            Origin::Refresh => self.refresh_permits.clone().acquire_owned().await.ok(),
            Origin::Fetch => None,
        };
        // Only for a pod running on this node (a gone pod's entry is dropped).
        self.gate_call(&digest, &claims).await?;
        let revocations = self.revocations.load(Ordering::Acquire);
        let started = tokio::time::Instant::now();
        let result = self.source.fetch(kept.token.expose()).await;
        self.metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        self.note_upstream(result.as_ref().err());
        let now = self.clock.now();
        match result {
            Ok(credentials) => {
                let asked = Asked {
                    origin,
                    revocations,
                };
                self.store(digest, kept, claims, &credentials, now, asked)
            }
            Err(e) => {
                self.failed(&digest, &e, now, origin);
                self.remember_refusal(digest, &e, claims.expires(), now);
                Err(e)
            }
        }
    }

    /// Applies the refresh policy to a failed call.
    fn failed(&self, digest: &TokenDigest, e: &UpstreamError, now: SystemTime, origin: Origin) {
        self.metrics.upstream_error(&e.code);
        match refresh::after_failure(e) {
            AfterFailure::Drop => {
                if self.write().remove(digest, None) {
                    self.metrics.evicted("dropped", 1);
                    self.update_gauge();
                }
                if origin == Origin::Refresh {
                    self.metrics.refresh("dropped");
                    tracing::info!(code = %e.code, "refresh refused: cached credentials dropped");
                }
            }
            AfterFailure::ServeOn if origin == Origin::Refresh => {
                self.metrics.refresh("failed");
                if let Some(entry) = self.read().get(digest) {
                    refresh::back_off(&self.policy, entry, now);
                }
                tracing::warn!(
                    code = %e.code,
                    status = e.status,
                    "refresh failed; serving cached credentials"
                );
            }
            AfterFailure::ServeOn => {}
        }
    }

    /// Remembers the broker's refusal of a token expiring at `token_expires`
    /// (if it is one to remember) for the policy's time.
    fn remember_refusal(
        &self,
        digest: TokenDigest,
        e: &UpstreamError,
        token_expires: Option<SystemTime>,
        now: SystemTime,
    ) {
        if !refused::remembered(e) {
            return;
        }
        let Some(until) = self.policy.refused_until(now, token_expires) else {
            return;
        };
        let evicted = self.refused.remember(digest, e, until, now);
        self.metrics.evicted("refused", evicted as u64);
        self.metrics
            .refused_tokens
            .set(i64::try_from(self.refused.len()).unwrap_or(i64::MAX));
    }

    /// Notes a call's outcome in the broker's health (logged when it changes).
    fn note_upstream(&self, error: Option<&UpstreamError>) {
        match self.health.note(error) {
            HealthChange::Down(failures) => tracing::warn!(
                failures,
                "the credential broker is unreachable; serving cached credentials"
            ),
            HealthChange::Up => tracing::info!("the credential broker answers again"),
            HealthChange::Same => {}
        }
        self.metrics
            .upstream_up
            .set(i64::from(self.upstream_healthy()));
    }

    /// Stores the broker's answer (unless a revocation overtook the call);
    /// returns its body.
    fn store(
        &self,
        digest: TokenDigest,
        kept: KeptToken,
        claims: EntryClaims,
        credentials: &FetchedCredentials,
        now: SystemTime,
        asked: Asked,
    ) -> BrokerResult {
        let origin = asked.origin;
        if credentials.expiration <= now {
            return Err(UpstreamError::internal(
                "the credential broker answered expired credentials",
            ));
        }
        let body = credentials_body(credentials);
        let serve_until = self.policy.serve_until(credentials.expiration);
        if origin == Origin::Refresh {
            self.metrics.refresh("ok");
        }
        if self.policy.max_entries == 0 || now >= serve_until {
            return Ok(body);
        }
        let entry = CachedEntry::new(
            kept,
            claims,
            StoredAnswer::Ready(body.clone()),
            self.policy.refresh_at(now, credentials.expiration),
            serve_until,
            origin == Origin::Fetch,
        )
        .with_association(
            credentials
                .association_id
                .as_deref()
                .map(|id| self.front_hash.association(id)),
        );
        let mut index = self.write();
        if self.revocations.load(Ordering::Acquire) != asked.revocations {
            // A revocation came while the broker answered: answer, keep nothing.
            return Ok(body);
        }
        let stored = index.store(digest, entry, origin, &self.policy, || {
            StoredAnswer::compact(body.clone(), credentials.session_token.expose())
        });
        if stored.evicted_lru > 0 {
            self.metrics.evicted("lru", stored.evicted_lru);
        }
        if stored.replaced {
            self.metrics.evicted("replaced", 1);
        }
        if stored.stored {
            self.metrics
                .cached_entries
                .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
        }
        Ok(body)
    }
}

/// How a broker call was made: for a pod or a refresh, and after how many revocations.
#[derive(Debug, Clone, Copy)]
struct Asked {
    origin: Origin,
    revocations: u64,
}

/// A flight's result; a flight whose task ended without one (it panicked)
/// is an internal error.
pub(super) async fn wait(flight: Flight<BrokerResult>) -> BrokerResult {
    flight.wait().await.unwrap_or_else(|| {
        Err(UpstreamError::internal(
            "the credential request was abandoned",
        ))
    })
}
