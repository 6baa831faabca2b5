//! What the change feed does to the cache: drops an association's entries,
//! forgets the refused tokens, revalidates everything held. Off the hit path:
//! each takes the index's write lock once and counts a revocation, so a broker
//! answer that was under way meanwhile is answered but not stored.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use podid_singleflight::Joined;
use tokio::task::JoinSet;

use super::broker::wait;
use super::index::{CachedEntry, KeptToken, Origin};
use super::{BrokerResult, PodCredentialCache};
use crate::token::{SecretToken, TokenDigest};

/// What a revalidation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revalidated {
    /// Entries the broker answered again (their credentials replaced).
    pub refreshed: usize,
    /// Entries dropped: the broker refused them, or they kept no token to ask with.
    pub dropped: usize,
    /// Entries kept as they were: the broker could not be asked (unreachable, 5xx, throttled).
    pub unchecked: usize,
}

/// How one entry's revalidation ended.
enum Outcome {
    Refreshed,
    Dropped,
    Unchecked,
}

/// How often a revalidation waits for a broker call that was already under
/// way before it asks again itself.
const MAX_WAITS: usize = 3;

impl PodCredentialCache {
    /// Drops every entry whose credentials association `id` granted (the
    /// broker's `podIdentityAssociation.associationId`); returns how many.
    /// A broker call under way meanwhile is answered but not stored.
    pub fn drop_association(&self, id: &str) -> usize {
        let tag = self.front_hash.association(id);
        let mut index = self.write();
        self.revocations.fetch_add(1, Ordering::AcqRel);
        let dropped = index
            .of_association(tag)
            .iter()
            .filter(|digest| index.remove(digest, None))
            .count();
        drop(index);
        self.metrics.evicted("revoked", dropped as u64);
        self.update_gauge();
        dropped
    }

    /// Forgets every token the broker refused (an association was created:
    /// they may be accepted now).
    pub fn forget_refused(&self) {
        self.refused.clear();
        self.metrics.refused_tokens.set(0);
    }

    /// Asks the broker again for every entry held, now (at most
    /// `refresh_concurrency` calls at once): an answer replaces the entry, a
    /// refusal drops it, an outage keeps it. Entries that keep no token are
    /// dropped (their pods fetch again). Forgets the refused tokens too.
    pub async fn revalidate(self: &Arc<Self>) -> Revalidated {
        self.forget_refused();
        let mut held = Vec::new();
        let mut result = Revalidated::default();
        {
            let mut index = self.write();
            self.revocations.fetch_add(1, Ordering::AcqRel);
            let mut unkept = Vec::new();
            for (digest, entry) in index.iter() {
                if entry.kept().is_some() {
                    held.push((*digest, entry.clone()));
                } else {
                    unkept.push(*digest);
                }
            }
            result.dropped = unkept.iter().filter(|d| index.remove(d, None)).count();
        }
        self.metrics.evicted("revalidated", result.dropped as u64);
        self.update_gauge();
        let mut checks = JoinSet::new();
        for (digest, entry) in held {
            checks.spawn(self.clone().recheck(digest, entry));
        }
        while let Some(done) = checks.join_next().await {
            match done {
                Ok(Outcome::Refreshed) => result.refreshed += 1,
                Ok(Outcome::Dropped) => result.dropped += 1,
                Ok(Outcome::Unchecked) | Err(_) => result.unchecked += 1,
            }
        }
        result
    }

    /// One broker call for `entry` made after the revalidation began: a call
    /// already under way (begun before) is waited for first.
    async fn recheck(self: Arc<Self>, digest: TokenDigest, entry: Arc<CachedEntry>) -> Outcome {
        let Some(kept) = entry.kept() else {
            return Outcome::Dropped;
        };
        for _ in 0..MAX_WAITS {
            if let Some(flight) = self.flights.start_if_idle(&digest, || {
                let kept = KeptToken {
                    token: SecretToken::new(kept.token.expose()),
                    tag: kept.tag,
                };
                self.clone()
                    .run_flight(digest, kept, entry.claims(), Origin::Refresh)
            }) {
                return match wait(flight).await {
                    Ok(_) => Outcome::Refreshed,
                    Err(e) if e.drops_entry() => Outcome::Dropped,
                    Err(_) => Outcome::Unchecked,
                };
            }
            let under_way = self
                .flights
                .join_or_start(&digest, || Err::<std::future::Ready<BrokerResult>, ()>(()));
            if let Joined::Joined(flight) = under_way {
                let _ = wait(flight).await;
            }
            match self.read().get(&digest) {
                None => return Outcome::Dropped,
                // Replaced by a pod's fetch, made after the revalidation began.
                Some(now) if !Arc::ptr_eq(now, &entry) => return Outcome::Refreshed,
                Some(_) => {}
            }
        }
        Outcome::Unchecked
    }
}
