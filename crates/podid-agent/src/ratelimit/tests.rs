//! The buckets on tokio's paused clock.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

#[tokio::test(start_paused = true)]
async fn bursts_up_to_the_rate_then_refills() {
    assert!(GcraLimiter::per_second(0).is_none());
    let limiter = GcraLimiter::per_second(10).unwrap();
    for i in 0..10 {
        assert!(limiter.try_acquire(), "request {i} of the burst");
    }
    assert!(
        !limiter.try_acquire(),
        "the 11th within the same instant is refused"
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(limiter.try_acquire(), "one token refilled after 1/rate");
    assert!(!limiter.try_acquire());
    tokio::time::advance(Duration::from_secs(5)).await;
    let allowed = (0..100).filter(|_| limiter.try_acquire()).count();
    assert_eq!(allowed, 10, "an idle bucket holds at most one burst");
}

#[tokio::test(start_paused = true)]
async fn sustained_rate_is_held() {
    let limiter = GcraLimiter::per_second(100).unwrap();
    let mut allowed = 0;
    // 1,000 attempts per second for 3 seconds.
    for _ in 0..3_000 {
        if limiter.try_acquire() {
            allowed += 1;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    assert!((300..=401).contains(&allowed), "{allowed}");
}

#[tokio::test(start_paused = true)]
async fn each_client_has_its_own_burst_and_rate() {
    let limit = ClientLimit {
        rate: 50,
        burst: 100,
        max_clients: 16,
    };
    let limiter = ClientLimiter::new(limit).unwrap();
    let (a, _) = limiter.bucket(v4(1));
    let (a_again, _) = limiter.bucket(v4(1));
    let (b, _) = limiter.bucket(v4(2));
    // Two connections of one client share its bucket.
    let first = (0..80).filter(|_| a.try_acquire()).count();
    let second = (0..80).filter(|_| a_again.try_acquire()).count();
    assert_eq!(first + second, 100, "one burst of 100 for the client");
    assert_eq!(
        (0..200).filter(|_| b.try_acquire()).count(),
        100,
        "b has its own"
    );
    // 50 per second after that: one every 20 ms.
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(a.try_acquire());
    assert!(!a.try_acquire());
    let mut allowed = 0;
    for _ in 0..10_000 {
        allowed += usize::from(a.try_acquire());
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    assert!((499..=501).contains(&allowed), "{allowed} in 10 s");
    assert_eq!(limiter.tracked(), 2);
}

#[tokio::test(start_paused = true)]
async fn off_when_the_rate_or_the_table_is_zero() {
    assert!(ClientLimiter::new(ClientLimit::OFF).is_none());
    let no_table = ClientLimit {
        max_clients: 0,
        ..ClientLimit::default()
    };
    assert!(ClientLimiter::new(no_table).is_none());
    assert_eq!(
        ClientLimit::default(),
        ClientLimit {
            rate: 50,
            burst: 100,
            max_clients: 4096
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_mapped_ipv6_address_is_its_ipv4_client() {
    let limiter = ClientLimiter::new(ClientLimit {
        rate: 1,
        burst: 1,
        max_clients: 4,
    })
    .unwrap();
    let (plain, _) = limiter.bucket(v4(7));
    let (mapped, _) = limiter.bucket(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped()));
    assert!(plain.try_acquire());
    assert!(!mapped.try_acquire(), "the same client");
    let (v6, _) = limiter.bucket(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(v6.try_acquire());
    assert_eq!(limiter.tracked(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_table_forgets_full_buckets_first_then_the_longest_unseen() {
    let limiter = ClientLimiter::new(ClientLimit {
        rate: 1,
        burst: 2,
        max_clients: 3,
    })
    .unwrap();
    let buckets: Vec<ClientBucket> = (1..=3).map(|i| limiter.bucket(v4(i)).0).collect();
    // 1 and 2 are busy (empty buckets), 3 never asked (full).
    for b in &buckets[..2] {
        assert!(b.try_acquire() && b.try_acquire() && !b.try_acquire());
    }
    limiter.bucket(v4(1)); // 1 seen again: 2 is now the longest unseen busy one.
    let (four, lookup) = limiter.bucket(v4(4));
    assert_eq!(lookup.evicted, 1, "3's full bucket goes, nothing lost");
    assert!(four.try_acquire() && four.try_acquire());
    let (one, lookup) = limiter.bucket(v4(1));
    assert_eq!(lookup.evicted, 0);
    assert!(!one.try_acquire(), "1 is still remembered as busy");
    // All three busy: 2, the longest unseen, goes.
    let (_, lookup) = limiter.bucket(v4(5));
    assert_eq!(lookup.evicted, 1);
    assert_eq!(limiter.tracked(), 3);
    let (four, _) = limiter.bucket(v4(4));
    assert!(!four.try_acquire(), "4 is still tracked, busy");
    let (two, _) = limiter.bucket(v4(2));
    assert!(two.try_acquire(), "2 was forgotten: a fresh bucket");
    // A connection keeps the bucket it got even after its client is forgotten.
    assert!(!buckets[1].try_acquire());
}
