//! Server-side validation of every request field: a broken rule is an
//! `InvalidParameterException` that names the field and the rule.

use crate::association::Tags;
use crate::text::printable;
use crate::ApiError;

/// Most tags a resource may carry.
pub const MAX_TAGS: usize = 50;
/// Longest tag key.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE: usize = 256;
/// Longest session policy, in characters.
pub const MAX_POLICY: usize = 2048;
/// Longest idempotency token.
pub const MAX_CLIENT_REQUEST_TOKEN: usize = 64;
/// Page size bounds of list operations.
pub const MAX_RESULTS: std::ops::RangeInclusive<i64> = 1..=100;

fn invalid(field: &str, value: &str, rule: &str) -> ApiError {
    ApiError::invalid_parameter(format!("{field} '{}' is invalid: {rule}", printable(value)))
}

/// A cluster name: 1–100 characters, `[0-9A-Za-z][A-Za-z0-9\-_]*`.
pub fn cluster_name(name: &str) -> Result<(), ApiError> {
    const RULE: &str =
        "must be 1-100 characters, start with a letter or digit and contain only letters, digits, '-' and '_'";
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 100;
    if ok {
        Ok(())
    } else {
        Err(invalid("clusterName", name, RULE))
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes namespace: a DNS-1123 label (≤ 63 characters of `[a-z0-9-]`,
/// starting and ending alphanumeric).
pub fn namespace(ns: &str) -> Result<(), ApiError> {
    if is_dns1123_label(ns) {
        Ok(())
    } else {
        Err(invalid(
            "namespace",
            ns,
            "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        ))
    }
}

/// A Kubernetes service account name: a DNS-1123 subdomain (≤ 253 characters,
/// dot-separated DNS-1123 labels).
pub fn service_account(sa: &str) -> Result<(), ApiError> {
    if sa.len() <= 253 && sa.split('.').all(is_dns1123_label) {
        Ok(())
    } else {
        Err(invalid(
            "serviceAccount",
            sa,
            "must be a DNS-1123 subdomain: at most 253 characters of lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit",
        ))
    }
}

/// An IAM role ARN: `arn:{partition}:iam::{12 digits}:role/{path}{name}`, the name
/// 1–64 characters of `[\w+=,.@-]`, the whole at most 2048 characters.
pub fn role_arn(field: &str, arn: &str) -> Result<(), ApiError> {
    const RULE: &str = "must be an IAM role ARN such as arn:aws:iam::123456789012:role/name";
    let err = || invalid(field, arn, RULE);
    if arn.len() > 2048 {
        return Err(err());
    }
    let Some(("arn", partition, "iam", "", account, resource)) = arn_parts(arn) else {
        return Err(err());
    };
    let partition_ok = !partition.is_empty()
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let account_ok = account.len() == 12 && account.bytes().all(|c| c.is_ascii_digit());
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(err());
    };
    let (path, name) = match path_and_name.rfind('/') {
        Some(i) => (&path_and_name[..=i], &path_and_name[i + 1..]),
        None => ("", path_and_name),
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    // A path is '/'-delimited printable ASCII (IAM: `(\u002F)|(\u002F[\u0021-\u007E]+\u002F)`).
    let path_ok = path.len() <= 512
        && path.bytes().all(|c| (0x21..=0x7e).contains(&c))
        && !path.contains("//");
    if partition_ok && account_ok && name_ok && path_ok {
        Ok(())
    } else {
        Err(err())
    }
}

/// The six `:`-separated parts of an ARN (`arn`, partition, service, region, account,
/// resource; the resource may hold more `:`), or `None` when there are fewer.
pub(crate) fn arn_parts(arn: &str) -> Option<(&str, &str, &str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    Some((
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ))
}

/// Resource tags: at most 50, key 1–128 characters without the reserved
/// `aws:` prefix, value at most 256 characters.
pub fn tags(tags: &Tags) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "tags: {} tags given, at most {MAX_TAGS} are allowed",
            tags.len()
        )));
    }
    for (key, value) in tags {
        tag_key(key)?;
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                "tag value of key",
                key,
                "values are at most 256 characters",
            ));
        }
    }
    Ok(())
}

/// A tag key: 1–128 characters, not starting with `aws:` (any case).
pub fn tag_key(key: &str) -> Result<(), ApiError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_TAG_KEY {
        return Err(invalid("tag key", key, "keys are 1-128 characters"));
    }
    // `get` rather than slicing: byte 4 may fall inside a multi-byte character.
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(invalid("tag key", key, "the 'aws:' prefix is reserved"));
    }
    Ok(())
}

/// A session policy: a JSON object of at most 2048 characters, allowed only
/// when session tags are disabled (STS counts session tags and the policy
/// against one packed size, so EKS allows one or the other).
pub fn policy(policy: &str, disable_session_tags: bool) -> Result<(), ApiError> {
    if policy.chars().count() > MAX_POLICY {
        return Err(ApiError::invalid_parameter(format!(
            "policy is {} characters long, at most {MAX_POLICY} are allowed",
            policy.chars().count()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => {
            return Err(ApiError::invalid_parameter(
                "policy must be a JSON policy document (a JSON object)",
            ))
        }
    }
    if !disable_session_tags {
        return Err(ApiError::invalid_parameter(
            "policy can only be set when disableSessionTags is true",
        ));
    }
    Ok(())
}

/// An idempotency token: 1–64 printable ASCII characters.
pub fn client_request_token(token: &str) -> Result<(), ApiError> {
    if (1..=MAX_CLIENT_REQUEST_TOKEN).contains(&token.len())
        && token.bytes().all(|c| (0x21..=0x7e).contains(&c))
    {
        Ok(())
    } else {
        Err(invalid(
            "clientRequestToken",
            token,
            "must be 1-64 printable ASCII characters",
        ))
    }
}

/// An association id: `a-` and 17 lowercase alphanumerics.
pub fn association_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 19
        && id.starts_with("a-")
        && id[2..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "associationId",
            id,
            "must be 'a-' followed by 17 lowercase letters or digits",
        ))
    }
}

/// A page size: 1–100.
pub fn max_results(n: i64) -> Result<(), ApiError> {
    if MAX_RESULTS.contains(&n) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "maxResults {n} is invalid: must be between 1 and 100"
        )))
    }
}

/// An issuer or JWKS URL: absolute `https://` (or `http://`, for tests and
/// in-cluster addresses) with a host, at most 2048 characters.
pub fn url(field: &str, value: &str) -> Result<(), ApiError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains(char::is_whitespace)
    });
    if host_ok && value.len() <= 2048 && !value.contains(char::is_control) {
        Ok(())
    } else {
        Err(invalid(field, value, "must be an absolute http(s) URL"))
    }
}

/// A token audience: 1–256 printable characters.
pub fn audience(value: &str) -> Result<(), ApiError> {
    if (1..=256).contains(&value.len()) && !value.contains(char::is_control) {
        Ok(())
    } else {
        Err(invalid(
            "audience",
            value,
            "must be 1-256 printable characters",
        ))
    }
}

/// A JWKS document: an object whose `keys` is a non-empty array of objects each
/// with a string `kty`. Full key checks happen where tokens are verified.
pub fn jwks(value: &serde_json::Value) -> Result<(), ApiError> {
    let keys = value.get("keys").and_then(|k| k.as_array());
    match keys {
        Some(keys) if !keys.is_empty() && keys.iter().all(|k| k.get("kty").is_some_and(|t| t.is_string())) => Ok(()),
        _ => Err(ApiError::invalid_parameter(
            "jwks must be a JSON Web Key Set: an object with a non-empty 'keys' array of keys, each with 'kty'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `check` accepts every value in `ok` and refuses every value in `bad`.
    fn sorts(check: impl Fn(&str) -> Result<(), ApiError>, ok: &[&str], bad: &[&str]) {
        for value in ok {
            assert!(check(value).is_ok(), "{value}");
        }
        for value in bad {
            assert!(check(value).is_err(), "{value}");
        }
    }

    #[test]
    fn cluster_names() {
        sorts(
            cluster_name,
            &["a", "blue", "Blue-1_x", "0cluster", &"x".repeat(100)],
            &["", "-a", "_a", "a.b", "a b", "ü", &"x".repeat(101)],
        );
    }

    #[test]
    fn namespaces_and_service_accounts() {
        sorts(
            namespace,
            &["default", "kube-system", "a", "0-9", &"a".repeat(63)],
            &["", "Default", "-a", "a-", "a.b", "a_b", &"a".repeat(64)],
        );
        sorts(
            service_account,
            &[
                "boto3",
                "my.sa",
                "a-b.c-d",
                &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
            ],
            &["", "A", "a..b", ".a", "a.", "a_b", "a/b"],
        );
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(long.len() > 253 && service_account(&long).is_err());
    }

    #[test]
    fn role_arns() {
        sorts(
            |arn| role_arn("roleArn", arn),
            &[
                "arn:aws:iam::123456789012:role/simple-pod-identity-role",
                "arn:aws-cn:iam::123456789012:role/path/to/r+=,.@_-",
                "arn:aws-us-gov:iam::123456789012:role/x",
            ],
            &[
                "",
                "role",
                "arn:aws:iam::123:role/x",
                "arn:aws:iam::123456789012:user/x",
                "arn:aws:iam:us-east-1:123456789012:role/x",
                "arn:aws:s3::123456789012:role/x",
                "arn:aws:iam::123456789012:role/",
                "arn:aws:iam::123456789012:role/bad name",
                &format!("arn:aws:iam::123456789012:role/{}", "x".repeat(65)),
            ],
        );
    }

    #[test]
    fn tag_rules() {
        let mut t = Tags::new();
        t.insert("team".into(), "ml".into());
        assert!(tags(&t).is_ok());
        t.insert("AWS:x".into(), "v".into());
        assert!(tags(&t).unwrap_err().message.contains("reserved"));
        let many: Tags = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(tags(&many).unwrap_err().message.contains("at most 50"));
        let long_key: Tags = [("k".repeat(129), String::new())].into();
        assert!(tags(&long_key).is_err());
        let long_value: Tags = [("k".into(), "v".repeat(257))].into();
        assert!(tags(&long_value).is_err());
        let edge: Tags = [("k".repeat(128), "v".repeat(256))].into();
        assert!(tags(&edge).is_ok());
        sorts(tag_key, &["チーム", "abcé", "aws", "é"], &[""]);
    }

    #[test]
    fn policy_rules() {
        let doc = r#"{"Version":"2012-10-17","Statement":[]}"#;
        assert!(policy(doc, true).is_ok());
        assert!(policy(doc, false)
            .unwrap_err()
            .message
            .contains("disableSessionTags"));
        assert!(policy("not json", true).is_err());
        assert!(policy("[1]", true).is_err());
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(2048));
        assert!(policy(&big, true).unwrap_err().message.contains("2048"));
    }

    #[test]
    fn ids_tokens_pages_urls() {
        sorts(
            association_id,
            &["a-0123456789abcdefg"],
            &["a-0123456789ABCDEFG", "b-0123456789abcdefg", "a-123", ""],
        );
        sorts(
            client_request_token,
            &["tok-1"],
            &["", &"t".repeat(65), "a b"],
        );
        assert!(max_results(1).is_ok() && max_results(100).is_ok());
        assert!(max_results(0).is_err() && max_results(101).is_err());
        sorts(
            |value| url("issuer", value),
            &["https://oidc.example.com/id/ABC"],
            &["ftp://x", "https://"],
        );
        assert!(jwks(&serde_json::json!({"keys":[{"kty":"RSA"}]})).is_ok());
        assert!(jwks(&serde_json::json!({"keys":[]})).is_err());
        assert!(jwks(&serde_json::json!([1])).is_err());
    }
}
