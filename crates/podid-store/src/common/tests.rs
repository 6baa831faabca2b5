//! Tests of the parent module.

use super::*;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn merge_removes_before_adding() {
    let current = tags(&[("a", "1"), ("b", "2")]);
    let merged = merge_tags(
        &current,
        &tags(&[("a", "9"), ("c", "3")]),
        &["a".into(), "b".into()],
    );
    assert_eq!(merged.ok(), Some(tags(&[("a", "9"), ("c", "3")])));
}

#[test]
fn merge_refuses_past_the_limit() {
    let current: Tags = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(matches!(
        merge_tags(&current, &tags(&[("x", "")]), &[]),
        Err(StoreError::TooManyTags(51))
    ));
    assert!(merge_tags(&current, &tags(&[("x", "")]), &["k0".into()]).is_ok());
}

#[test]
fn corrupt_json_is_an_error() {
    for result in [
        decode_tags("a-1", "{not json").map(drop),
        decode_tags("a-1", "[1]").map(drop),
        decode_jwks("c", "").map(drop),
        decode_key_source("c", "magic").map(drop),
    ] {
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn corrupt_json_keeps_the_parser_error() {
    let err = decode_tags("a-1", "{not json").unwrap_err();
    assert!(std::error::Error::source(&err).is_some());
    assert!(
        err.to_string()
            .starts_with("stored data is corrupt: tags of association 'a-1': key must be a string"),
        "{err}"
    );
    let err = decode_key_source("c", "magic").unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(
        err.to_string(),
        "stored data is corrupt: key source of cluster 'c': unknown 'magic'"
    );
}
