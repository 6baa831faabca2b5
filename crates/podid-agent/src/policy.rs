//! When cached credentials are refreshed, served stale, or given up, and the
//! retry back-off: pure functions of time (reasons in docs/agent.md).

use std::time::{Duration, SystemTime};

/// How an entry may be used at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before its refresh time: serve.
    Fresh,
    /// Past its refresh time but not near expiry: serve, and refresh.
    Stale,
    /// Near or past expiry: do not serve.
    Unservable,
}

/// The cache's size and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Most entries (pods' tokens) held; the least recently used go first.
    /// 0 disables caching (every request asks the broker; concurrent ones share a call).
    pub max_entries: usize,
    /// Most entries that keep their pod's token (~1.2 KiB each): those are
    /// refreshed before their pod asks, and their repeat requests are matched
    /// by comparing the token instead of hashing it. The others are refreshed
    /// when their pod asks past the refresh time. The default covers every
    /// pod of a node at Kubernetes' usual limits (110 pods per node by
    /// default, 250 at most on EKS's large instances) while bounding what a
    /// node with thousands of short-lived pods keeps.
    pub max_refresh_ahead: usize,
    /// Sessions longer than this are refreshed `refresh_lead` before expiry;
    /// shorter ones at half-life.
    pub long_session: Duration,
    /// How long before expiry long sessions are refreshed.
    pub refresh_lead: Duration,
    /// Entries are served (stale if need be) until this long before expiry.
    pub stale_margin: Duration,
    /// First delay before retrying a failed refresh.
    pub retry_min: Duration,
    /// Longest delay between refresh retries.
    pub retry_max: Duration,
    /// Background refreshes running at once.
    pub refresh_concurrency: usize,
    /// How often the cache looks for entries to refresh or drop.
    pub maintenance_interval: Duration,
    /// Consecutive failed broker calls (unreachable, timeout, 5xx) after which
    /// the broker counts as down (`/readyz` 503, `podid_agent_upstream_up` 0).
    pub unhealthy_after: u32,
    /// How long a token the broker refused (ResourceNotFound, AccessDenied,
    /// InvalidToken, ExpiredToken) is answered from memory, never past the
    /// token's own `exp`; zero turns this negative cache off.
    pub refused_ttl: Duration,
    /// Most refused tokens remembered (the oldest forgotten first); 0 turns it off.
    pub max_refused: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            max_entries: 10_000,
            max_refresh_ahead: 256,
            long_session: Duration::from_secs(30 * 60),
            refresh_lead: Duration::from_secs(20 * 60),
            stale_margin: Duration::from_secs(60),
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            refresh_concurrency: 8,
            maintenance_interval: Duration::from_secs(5),
            unhealthy_after: 3,
            refused_ttl: Duration::from_secs(30),
            max_refused: 4096,
        }
    }
}

impl CachePolicy {
    /// When credentials fetched at `fetched` and expiring at `expiration`
    /// should be refreshed.
    pub fn refresh_at(&self, fetched: SystemTime, expiration: SystemTime) -> SystemTime {
        let life = expiration.duration_since(fetched).unwrap_or(Duration::ZERO);
        if life > self.long_session {
            expiration
                .checked_sub(self.refresh_lead)
                .filter(|t| *t > fetched)
                .unwrap_or(fetched)
        } else {
            fetched + life / 2
        }
    }

    /// Until when credentials expiring at `expiration` may be served.
    pub fn serve_until(&self, expiration: SystemTime) -> SystemTime {
        expiration
            .checked_sub(self.stale_margin)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// How an entry with these times may be used at `now`.
    pub fn freshness(
        &self,
        now: SystemTime,
        refresh_at: SystemTime,
        serve_until: SystemTime,
    ) -> Freshness {
        if now >= serve_until {
            Freshness::Unservable
        } else if now >= refresh_at {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }

    /// Until when a refusal at `now` of a token expiring at `token_expires` is
    /// remembered: `refused_ttl`, cut at the token's expiry; `None` when not at all.
    pub fn refused_until(
        &self,
        now: SystemTime,
        token_expires: Option<SystemTime>,
    ) -> Option<SystemTime> {
        if self.refused_ttl.is_zero() || self.max_refused == 0 {
            return None;
        }
        let until = now.checked_add(self.refused_ttl)?;
        let until = token_expires.map_or(until, |exp| exp.min(until));
        (until > now).then_some(until)
    }

    /// The wait before the next refresh attempt after `failures` consecutive failures (≥ 1).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doubling = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.retry_min.saturating_mul(doubling).min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn long_sessions_refresh_twenty_minutes_before_expiry() {
        let p = CachePolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(p.refresh_at(t0, t0 + 60 * MIN), t0 + 40 * MIN);
        assert_eq!(p.refresh_at(t0, t0 + 360 * MIN), t0 + 340 * MIN);
        assert_eq!(p.refresh_at(t0, t0 + 31 * MIN), t0 + 11 * MIN);
        // What a pod is served while fresh has more than 15 minutes left.
        let exp = t0 + 60 * MIN;
        assert!(exp.duration_since(p.refresh_at(t0, exp)).unwrap() > 15 * MIN);
    }

    #[test]
    fn short_sessions_refresh_at_half_life() {
        let p = CachePolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(p.refresh_at(t0, t0 + 30 * MIN), t0 + 15 * MIN);
        assert_eq!(
            p.refresh_at(t0, t0 + 15 * MIN),
            t0 + Duration::from_secs(450)
        );
        assert_eq!(p.refresh_at(t0, t0), t0);
        assert_eq!(
            p.refresh_at(t0 + MIN, t0),
            t0 + MIN,
            "already expired: due now"
        );
    }

    #[test]
    fn freshness_windows() {
        let p = CachePolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exp = t0 + 60 * MIN;
        let (refresh, until) = (p.refresh_at(t0, exp), p.serve_until(exp));
        assert_eq!(until, exp - MIN);
        assert_eq!(p.freshness(t0, refresh, until), Freshness::Fresh);
        assert_eq!(p.freshness(t0 + 40 * MIN, refresh, until), Freshness::Stale);
        assert_eq!(
            p.freshness(exp - MIN - Duration::from_secs(1), refresh, until),
            Freshness::Stale
        );
        assert_eq!(
            p.freshness(exp - MIN, refresh, until),
            Freshness::Unservable
        );
        assert_eq!(
            p.freshness(exp + MIN, refresh, until),
            Freshness::Unservable
        );
    }

    #[test]
    fn refusals_are_remembered_for_the_ttl_but_never_past_the_tokens_exp() {
        let p = CachePolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ttl = Duration::from_secs(30);
        assert_eq!(p.refused_until(t0, None), Some(t0 + ttl));
        assert_eq!(p.refused_until(t0, Some(t0 + MIN)), Some(t0 + ttl));
        assert_eq!(
            p.refused_until(t0, Some(t0 + Duration::from_secs(10))),
            Some(t0 + Duration::from_secs(10))
        );
        assert_eq!(p.refused_until(t0, Some(t0)), None, "expired now");
        let off = CachePolicy {
            refused_ttl: Duration::ZERO,
            ..CachePolicy::default()
        };
        assert_eq!(off.refused_until(t0, None), None);
        let none = CachePolicy {
            max_refused: 0,
            ..CachePolicy::default()
        };
        assert_eq!(none.refused_until(t0, None), None);
    }

    #[test]
    fn retries_back_off() {
        let p = CachePolicy::default();
        let secs: Vec<u64> = (1..=6).map(|f| p.retry_delay(f).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(p.retry_delay(u32::MAX), p.retry_max);
    }
}
