//! Sessions on tokio's paused clock: expiry, the cap, key changes, CSRF and
//! the sign-in limit.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

const KEYS: &str = r#"
[[key]]
access_key_id = "ADMIN1"
secret_access_key = "admin-secret-0123456789"
role = "admin"
[[key]]
access_key_id = "READER1"
secret_access_key = "reader-secret-0123456789"
role = "reader"
clusters = ["blue"]
"#;

fn ring() -> KeyRing {
    KeyRing::parse(KEYS).unwrap()
}

#[test]
fn the_pair_is_checked_whole() {
    let ring = ring();
    assert!(check_pair(&ring, "ADMIN1", "admin-secret-0123456789").is_some());
    assert!(check_pair(&ring, "ADMIN1", "admin-secret-012345678").is_none());
    assert!(check_pair(&ring, "ADMIN1", "reader-secret-0123456789").is_none());
    assert!(check_pair(&ring, "NOBODY", "admin-secret-0123456789").is_none());
    assert!(check_pair(&ring, "ADMIN1", "").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_when_idle_for_30_minutes() {
    let (ring, sessions) = (ring(), Sessions::default());
    let id = sessions.start(ring.get("READER1").unwrap());
    assert_eq!(URL_SAFE_NO_PAD.decode(&id).unwrap().len(), 32);
    let key = sessions.get(&id, &ring).unwrap();
    assert_eq!((key.key_id.as_str(), key.role), ("READER1", Role::Reader));
    assert!(key.clusters.allows("blue") && !key.clusters.allows("green"));
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    assert!(sessions.get(&id, &ring).is_some(), "used within 30 min");
    tokio::time::advance(Duration::from_secs(30 * 60)).await;
    assert!(sessions.get(&id, &ring).is_none(), "idle for 30 min");
    assert_eq!(sessions.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_12_hours_after_sign_in_even_when_used() {
    let (ring, sessions) = (ring(), Sessions::default());
    let id = sessions.start(ring.get("ADMIN1").unwrap());
    for _ in 0..(12 * 60 / 20 - 1) {
        tokio::time::advance(Duration::from_secs(20 * 60)).await;
        assert!(sessions.get(&id, &ring).is_some());
    }
    tokio::time::advance(Duration::from_secs(20 * 60)).await;
    assert!(sessions.get(&id, &ring).is_none());
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_the_oldest_session_is_dropped() {
    let (ring, sessions) = (ring(), Sessions::default());
    let key = ring.get("ADMIN1").unwrap();
    let first = sessions.start(key);
    let second = sessions.start(key);
    for _ in 2..MAX_SESSIONS {
        sessions.start(key);
    }
    assert_eq!(sessions.len(), MAX_SESSIONS);
    let newest = sessions.start(key);
    assert_eq!(sessions.len(), MAX_SESSIONS);
    assert!(sessions.get(&first, &ring).is_none());
    assert!(sessions.get(&second, &ring).is_some());
    assert!(sessions.get(&newest, &ring).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_removed_or_changed_key_ends_its_sessions_and_logout_ends_one() {
    let (ring, sessions) = (ring(), Sessions::default());
    let admin = sessions.start(ring.get("ADMIN1").unwrap());
    let reader = sessions.start(ring.get("READER1").unwrap());
    // READER1 removed, ADMIN1 kept.
    let reloaded =
        KeyRing::parse(&KEYS[..KEYS.find("[[key]]\naccess_key_id = \"READER1\"").unwrap()])
            .unwrap();
    assert!(sessions.get(&reader, &reloaded).is_none());
    assert!(sessions.get(&reader, &ring).is_none(), "ended for good");
    assert!(sessions.get(&admin, &reloaded).is_some());
    // A rotated secret or a changed role ends it too.
    let rotated =
        KeyRing::parse(&KEYS.replace("admin-secret-0123456789", "admin-secret-rotated-0000"))
            .unwrap();
    let other = sessions.start(ring.get("ADMIN1").unwrap());
    assert!(sessions.get(&admin, &rotated).is_none());
    let demoted =
        KeyRing::parse(&KEYS.replacen("role = \"admin\"", "role = \"reader\"", 1)).unwrap();
    assert!(sessions.get(&other, &demoted).is_none());
    let last = sessions.start(ring.get("ADMIN1").unwrap());
    sessions.end(&last);
    assert!(sessions.get(&last, &ring).is_none());
    assert!(sessions.get("not-a-session", &ring).is_none());
}

#[test]
fn csrf_tokens_are_per_session_and_must_match() {
    let (ring, sessions) = (ring(), Sessions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let a = sessions
        .get(&sessions.start(ring.get("ADMIN1").unwrap()), &ring)
        .unwrap();
    let b = sessions
        .get(&sessions.start(ring.get("ADMIN1").unwrap()), &ring)
        .unwrap();
    assert_ne!(a.csrf_token, b.csrf_token);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a.csrf_token).unwrap().len(), 32);
    assert!(csrf_matches(&a, Some(&a.csrf_token)));
    assert!(!csrf_matches(&a, Some(&b.csrf_token)));
    assert!(!csrf_matches(&a, Some("")));
    assert!(!csrf_matches(&a, None));
}

#[tokio::test(start_paused = true)]
async fn five_failures_a_minute_per_source_then_limited() {
    let limiter = LoginLimiter::default();
    let (one, two) = (
        Some("10.0.0.1".parse().unwrap()),
        Some("10.0.0.2".parse().unwrap()),
    );
    for _ in 0..MAX_FAILURES {
        assert!(!limiter.is_limited(one));
        limiter.failed(one);
    }
    assert!(limiter.is_limited(one));
    assert!(!limiter.is_limited(two), "per source");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(limiter.is_limited(one));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!limiter.is_limited(one), "a new minute");
    limiter.failed(one);
    assert!(!limiter.is_limited(one));
}

/// A flood of distinct sources within one window (IPv6 makes that cheap)
/// cannot grow the limiter past its bound.
#[tokio::test(start_paused = true)]
async fn a_flood_of_sources_stays_within_the_bound() {
    let limiter = LoginLimiter::default();
    for i in 0..(MAX_SOURCES as u32 + 500) {
        limiter.failed(Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(i),
        ))));
    }
    let remembered = limiter.failures.lock().unwrap().len();
    assert!(remembered <= MAX_SOURCES, "{remembered} sources remembered");
}
