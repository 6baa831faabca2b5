//! The refresh rules on a hand-filled index: plain `#[test]`s, no runtime.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use super::*;
use crate::cache::index::{EntryClaims, FrontHasher, KeptToken, Origin};
use crate::response::StoredAnswer;
use crate::token::{self, SecretToken, TokenInfo};

const MIN: Duration = Duration::from_secs(60);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000)
}

/// An index holding `name`'s entry fetched at t0 for an hour, used or not.
fn store(index: &mut CredentialIndex, policy: &CachePolicy, name: &str, expires_in: Duration) {
    let info = TokenInfo {
        expires: Some(t0() + 24 * 60 * MIN),
        pod_uid: Some(name.to_owned()),
    };
    let expiration = t0() + expires_in;
    let entry = CachedEntry::new(
        KeptToken {
            token: SecretToken::new(name),
            tag: FrontHasher::default().tag(name),
        },
        EntryClaims::from(&info),
        StoredAnswer::Ready(Bytes::from_static(b"x")),
        policy.refresh_at(t0(), expiration),
        policy.serve_until(expiration),
        true,
    );
    let compact = || StoredAnswer::Ready(Bytes::from_static(b"c"));
    index.store(token::digest(name), entry, Origin::Fetch, policy, compact);
}

fn names(picked: &[Picked]) -> Vec<TokenDigest> {
    picked.iter().map(|(d, _)| *d).collect()
}

#[test]
fn a_pass_refreshes_due_entries_soonest_first_and_drops_lapsed_ones() {
    let policy = CachePolicy::default();
    let mut index = CredentialIndex::default();
    store(&mut index, &policy, "long", 60 * MIN);
    store(&mut index, &policy, "short", 50 * MIN);
    store(&mut index, &policy, "lapsing", 42 * MIN);
    let plan = plan_maintenance(&index, &policy, t0() + 39 * MIN, true);
    assert!(plan.expired.is_empty());
    // Due: short (refresh at 30 min) and lapsing (at 22); not long (at 40).
    assert_eq!(
        names(&plan.due),
        [token::digest("lapsing"), token::digest("short")]
    );
    let plan = plan_maintenance(&index, &policy, t0() + 41 * MIN, true);
    assert_eq!(names(&plan.expired), [token::digest("lapsing")]);
    assert_eq!(
        names(&plan.due),
        [token::digest("short"), token::digest("long")]
    );
    // Broker down: only refresh_concurrency of them.
    let narrow = CachePolicy {
        refresh_concurrency: 1,
        ..CachePolicy::default()
    };
    let plan = plan_maintenance(&index, &narrow, t0() + 41 * MIN, false);
    assert_eq!(names(&plan.due), [token::digest("short")]);
}

#[test]
fn entries_waiting_for_their_retry_are_not_due() {
    let policy = CachePolicy::default();
    let mut index = CredentialIndex::default();
    store(&mut index, &policy, "a", 60 * MIN);
    let now = t0() + 40 * MIN;
    let entry = index.get(&token::digest("a")).unwrap().clone();
    back_off(&policy, &entry, now);
    assert!(
        plan_maintenance(&index, &policy, now + Duration::from_secs(4), true)
            .due
            .is_empty()
    );
    assert_eq!(
        plan_maintenance(&index, &policy, now + Duration::from_secs(5), true)
            .due
            .len(),
        1
    );
    // The second failure doubles the wait.
    back_off(&policy, &entry, now);
    assert!(!entry.retry_due(now + Duration::from_secs(9)));
    assert!(entry.retry_due(now + Duration::from_secs(10)));
}

#[test]
fn servable_until_the_margin_before_expiry() {
    let policy = CachePolicy::default();
    let mut index = CredentialIndex::default();
    store(&mut index, &policy, "a", 60 * MIN);
    let entry = index.get(&token::digest("a")).unwrap();
    assert!(servable(&policy, entry, t0() + 50 * MIN));
    assert!(!servable(&policy, entry, t0() + 59 * MIN));
}

#[test]
fn refusals_that_end_the_association_drop_the_entry() {
    for code in crate::upstream::DROPPING_CODES {
        let e = UpstreamError::new(400, code, "refused");
        assert_eq!(after_failure(&e), AfterFailure::Drop, "{code}");
    }
    for e in [
        UpstreamError::unavailable("down"),
        UpstreamError::new(429, "ThrottlingException", "slow down"),
    ] {
        assert_eq!(after_failure(&e), AfterFailure::ServeOn, "{e}");
    }
}

#[test]
fn the_broker_is_down_after_the_threshold_and_up_at_the_next_answer() {
    let health = UpstreamHealth::new(3);
    let outage = UpstreamError::unavailable("down");
    let refusal = UpstreamError::new(404, "ResourceNotFoundException", "gone");
    assert_eq!(health.note(Some(&outage)), HealthChange::Same);
    assert_eq!(
        health.note(Some(&refusal)),
        HealthChange::Same,
        "a refusal is an answer"
    );
    assert_eq!(health.consecutive_outages(), 0);
    assert_eq!(health.note(Some(&outage)), HealthChange::Same);
    assert_eq!(health.note(Some(&outage)), HealthChange::Same);
    assert!(health.is_up());
    assert_eq!(health.note(Some(&outage)), HealthChange::Down(3));
    assert!(!health.is_up());
    assert_eq!(health.note(Some(&outage)), HealthChange::Same);
    assert_eq!(health.note(None), HealthChange::Up);
    assert!(health.is_up());
    let strict = UpstreamHealth::new(0);
    assert_eq!(
        strict.note(Some(&outage)),
        HealthChange::Down(1),
        "at least one"
    );
}
