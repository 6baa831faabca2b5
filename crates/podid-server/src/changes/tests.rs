//! Tests of the feed's parameters.
#![allow(clippy::unwrap_used)]

use super::*;

fn parsed(query: &str) -> Result<FeedQuery, ApiError> {
    parse_query(&Some(query.to_owned()))
}

#[test]
fn defaults_without_parameters() {
    let q = parse_query(&None).unwrap();
    assert_eq!(
        q,
        FeedQuery {
            after: None,
            wait: Duration::ZERO,
            max_results: 500
        }
    );
}

#[test]
fn all_three_parameters_within_their_bounds() {
    let q = parsed("after=0&waitSeconds=30&maxResults=1").unwrap();
    assert_eq!(q.after, Some(0));
    assert_eq!(q.wait, Duration::from_secs(30));
    assert_eq!(q.max_results, 1);
    let q = parsed("after=9223372036854775807&maxResults=500").unwrap();
    assert_eq!(q.after, Some(i64::MAX));
    assert_eq!(q.max_results, 500);
}

#[test]
fn out_of_bounds_or_unknown_parameters_are_invalid() {
    for bad in [
        "after=-1",
        "after=x",
        "after=",
        "after=1.5",
        "waitSeconds=31",
        "waitSeconds=-1",
        "maxResults=0",
        "maxResults=501",
        "limit=5",
        "after=1&wait=3",
    ] {
        let e = parsed(bad).unwrap_err();
        assert_eq!(e.kind, podid_api::ErrorKind::InvalidParameter, "{bad}");
    }
    let e = parsed("waitSeconds=31").unwrap_err();
    assert_eq!(
        e.message,
        "waitSeconds '31' must be a whole number from 0 to 30"
    );
}
