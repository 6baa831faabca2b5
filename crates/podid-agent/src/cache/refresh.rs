//! The refresh rules: what a maintenance pass drops and refreshes, what a failed
//! refresh does to its entry, when the broker counts as down ([`crate::policy`] times them).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::index::{CachedEntry, CredentialIndex};
use crate::policy::{CachePolicy, Freshness};
use crate::token::TokenDigest;
use crate::upstream::UpstreamError;

/// An entry picked by a maintenance pass.
pub(crate) type Picked = (TokenDigest, Arc<CachedEntry>);

/// What one maintenance pass does.
#[derive(Default)]
pub(crate) struct MaintenancePlan {
    /// Entries near expiry, or whose token expired: dropped.
    pub(crate) expired: Vec<Picked>,
    /// Entries to refresh ahead, the most urgent first.
    pub(crate) due: Vec<Picked>,
}

/// Whether `entry` may be served at `now` (fresh or stale).
pub(crate) fn servable(policy: &CachePolicy, entry: &CachedEntry, now: SystemTime) -> bool {
    !entry.token_expired(now)
        && policy.freshness(now, entry.refresh_at(), entry.serve_until()) != Freshness::Unservable
}

/// The pass at `now`: drops entries that can no longer be served; refreshes
/// entries past their refresh time that keep their token, were served since
/// their last fetch (pods that stopped asking lapse) and whose retry time
/// has come, the soonest to lapse first — while the broker is down
/// (`broker_up` false), only `refresh_concurrency` of them.
pub(crate) fn plan_maintenance(
    index: &CredentialIndex,
    policy: &CachePolicy,
    now: SystemTime,
    broker_up: bool,
) -> MaintenancePlan {
    let mut plan = MaintenancePlan::default();
    for (digest, entry) in index.iter() {
        if entry.token_expired(now) || now >= entry.serve_until() {
            plan.expired.push((*digest, entry.clone()));
        } else if now >= entry.refresh_at()
            && entry.kept().is_some()
            && entry.used()
            && entry.retry_due(now)
        {
            plan.due.push((*digest, entry.clone()));
        }
    }
    plan.due.sort_by_key(|(_, e)| e.serve_until());
    if !broker_up {
        plan.due.truncate(policy.refresh_concurrency.max(1));
    }
    plan
}

/// What a failed refresh does to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The association is gone, the role refuses or the token is no longer
    /// good (ResourceNotFound, AccessDenied, InvalidToken, ExpiredToken):
    /// drop the entry.
    Drop,
    /// Anything else: serve the entry on, and retry after a back-off.
    ServeOn,
}

/// The rule for `error`.
pub(crate) fn after_failure(error: &UpstreamError) -> AfterFailure {
    if error.drops_entry() {
        AfterFailure::Drop
    } else {
        AfterFailure::ServeOn
    }
}

/// Counts one more failed refresh of `entry` at `now` and sets its retry
/// time (the policy's doubling back-off).
pub(crate) fn back_off(policy: &CachePolicy, entry: &CachedEntry, now: SystemTime) {
    let failures = entry.add_failure();
    entry.retry_after(now + policy.retry_delay(failures));
}

/// A change of the broker's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthChange {
    /// Still as it was.
    Same,
    /// This many outages in a row: now down.
    Down(u32),
    /// Answered again after being down.
    Up,
}

/// Consecutive broker calls that failed as outages (unreachable, timeout,
/// 5xx); the broker is down from `unhealthy_after` of them.
#[derive(Debug)]
pub(crate) struct UpstreamHealth {
    outages: AtomicU32,
    threshold: u32,
}

impl UpstreamHealth {
    /// Up, down after `unhealthy_after` outages (at least one).
    pub(crate) fn new(unhealthy_after: u32) -> Self {
        UpstreamHealth {
            outages: AtomicU32::new(0),
            threshold: unhealthy_after.max(1),
        }
    }

    /// Consecutive outages.
    pub(crate) fn consecutive_outages(&self) -> u32 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Whether the broker counts as up.
    pub(crate) fn is_up(&self) -> bool {
        self.consecutive_outages() < self.threshold
    }

    /// Notes a call's outcome (`error` if it failed).
    pub(crate) fn note(&self, error: Option<&UpstreamError>) -> HealthChange {
        if error.is_some_and(UpstreamError::is_outage) {
            let n = self
                .outages
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if n == self.threshold {
                return HealthChange::Down(n);
            }
        } else if self.outages.swap(0, Ordering::Relaxed) >= self.threshold {
            return HealthChange::Up;
        }
        HealthChange::Same
    }
}

#[cfg(test)]
mod tests;
