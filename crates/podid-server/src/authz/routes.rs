//! What authentication and authorisation know of each route of
//! `http_api::router`: its SigV4 signing service, the clusters it acts on,
//! its list-valued query parameters. A path not listed here is signed for
//! `eks` and refused to keys scoped to clusters.

use std::borrow::Cow;
use std::collections::HashSet;

use percent_encoding::percent_decode_str;
use podid_api::cluster::RegisterClusterRequest;

/// The signing service of EKS's API: associations, the cluster registry, audit.
pub(crate) const EKS: &str = "eks";
/// The signing service of EKS Auth: `AssumeRoleForPodIdentity`.
pub(crate) const EKS_AUTH: &str = "eks-auth";

/// The service a request to `path` must be signed for: `eks-auth` for
/// `/clusters/{name}/assume-role-for-pod-identity`, `eks` for the rest.
pub(crate) fn signing_service(path: &str) -> &'static str {
    let mut segments = path.split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(""), Some("clusters"), Some(_), Some("assume-role-for-pod-identity"), None) => {
            EKS_AUTH
        }
        _ => EKS,
    }
}

/// The clusters a request acts on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Named<'a> {
    /// These (decoded as the handlers decode them).
    Clusters(Vec<Cow<'a, str>>),
    /// Every cluster: the registry's list, the audit trail without `cluster=`.
    Every,
    /// Not known: no route, or a target that does not parse.
    Unknown,
}

/// A path segment percent-decoded as axum's `Path` extractor decodes it.
fn decoded(segment: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(segment).decode_utf8().ok()
}

fn one(segment: &str) -> Named<'_> {
    match decoded(segment) {
        Some(name) => Named::Clusters(vec![name]),
        None => Named::Unknown,
    }
}

/// The cluster of an association ARN, split as
/// `ArnScope::parse_association_arn` splits it:
/// `arn:P:eks:R:A:podidentityassociation/{cluster}/{id}`.
fn arn_cluster(arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("podidentityassociation/")?;
    Some(rest.split_once('/')?.0.to_owned())
}

/// The clusters a request with `method`, `uri` and `body` acts on: the
/// `{cluster}` or `{name}` of its path, the cluster of a `/tags/{arn}` ARN,
/// the `name` of a registration's body, the `cluster=` filters of the audit
/// trail.
pub(crate) fn clusters_named<'a>(
    method: &http::Method,
    uri: &'a http::Uri,
    body: &[u8],
) -> Named<'a> {
    let segments: Vec<&str> = uri.path().split('/').collect();
    match segments[..] {
        ["", "clusters", cluster, "pod-identity-associations"]
        | ["", "clusters", cluster, "pod-identity-associations", _]
        | ["", "clusters", cluster, "assume-role-for-pod-identity"]
        | ["", "podid", "v1", "clusters", cluster]
        | ["", "podid", "v1", "clusters", cluster, "changes"] => one(cluster),
        ["", "tags", arn] => match decoded(arn).as_deref().and_then(arn_cluster) {
            Some(cluster) => Named::Clusters(vec![Cow::Owned(cluster)]),
            None => Named::Unknown,
        },
        ["", "podid", "v1", "clusters"] if method == http::Method::POST => {
            // The registration's own parse (an empty body is `{}` to the handler: no name).
            match serde_json::from_slice::<RegisterClusterRequest>(body) {
                Ok(RegisterClusterRequest {
                    name: Some(name), ..
                }) => Named::Clusters(vec![Cow::Owned(name)]),
                _ => Named::Unknown,
            }
        }
        ["", "podid", "v1", "clusters"] => Named::Every,
        ["", "podid", "v1", "audit"] => {
            let names: Vec<Cow<'a, str>> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .filter(|(k, _)| k == "cluster")
                    .map(|(_, v)| Cow::Owned(v.into_owned()))
                    .collect();
            if names.is_empty() {
                Named::Every
            } else {
                Named::Clusters(names)
            }
        }
        _ => Named::Unknown,
    }
}

/// The query parameters a request may give more than once: the members of
/// a list (`UntagResource`'s `tagKeys=k1&tagKeys=k2`, as EKS's API has it).
fn list_parameters(method: &http::Method, path: &str) -> &'static [&'static str] {
    if method == http::Method::DELETE && path.starts_with("/tags/") {
        &["tagKeys"]
    } else {
        &[]
    }
}

/// The first query parameter named twice (decoded as the handlers decode
/// names), unless the operation takes it as a list.
pub(crate) fn repeated_query_parameter(method: &http::Method, uri: &http::Uri) -> Option<String> {
    let query = uri.query()?;
    let lists = list_parameters(method, uri.path());
    let mut seen = HashSet::new();
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, _)| name)
        .filter(|name| !lists.contains(&name.as_ref()))
        .find(|name| !seen.insert(name.clone()))
        .map(Cow::into_owned)
}
