//! Agents' own service-account tokens, sent as `Authorization: Bearer`
//! instead of SigV4: which requests may carry one, and the check of one
//! against a cluster's keys and agent service account. Refusals never quote
//! the token.

use std::borrow::Cow;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use podid_api::arn::printable;
use podid_api::cluster::{AgentIdentity, Cluster, AGENT_AUDIENCE};
use podid_api::{ApiError, ErrorKind};
use podid_token::{ClusterTrust, KeySetError, TokenError, TokenVerifier};

use crate::authz::{Clusters, Principal, Role};

/// The prefix of the `caller` of an agent: `sa:{namespace}/{name}`.
pub(crate) const CALLER_PREFIX: &str = "sa:";

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive,
/// RFC 9110 §11.1); `None` when the request carries no bearer token (a SigV4
/// request, or none at all); `Some(Err)` when the token is not ASCII.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<Result<&str, ApiError>> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(
        std::str::from_utf8(&value[7..])
            .ok()
            .filter(|t| t.is_ascii())
            .map(str::trim)
            .ok_or_else(|| denied("the bearer token is not ASCII".to_owned())),
    )
}

/// The cluster an agent token may be presented for in this request: the
/// `{name}` (percent-decoded) of `POST /clusters/{name}/assume-role-for-pod-identity`
/// or `GET /podid/v1/clusters/{name}/changes`; `None` for any other request.
pub(crate) fn agent_route<'a>(method: &http::Method, path: &'a str) -> Option<Cow<'a, str>> {
    let segments: Vec<&str> = path.split('/').collect();
    let name = match (method, &segments[..]) {
        (&http::Method::POST, ["", "clusters", name, "assume-role-for-pod-identity"]) => name,
        (&http::Method::GET, ["", "podid", "v1", "clusters", name, "changes"]) => name,
        _ => return None,
    };
    percent_decode_str(name).decode_utf8().ok()
}

/// The refusal of a bearer token on any other request.
pub(crate) fn not_here() -> ApiError {
    denied(
        "agent tokens (Authorization: Bearer) are accepted only by \
         POST /clusters/{name}/assume-role-for-pod-identity and \
         GET /podid/v1/clusters/{name}/changes; sign other requests with SigV4"
            .to_owned(),
    )
}

fn denied(message: String) -> ApiError {
    ApiError::new(ErrorKind::AccessDenied, message)
}

/// `(namespace, name)` of a cluster's `agentServiceAccount`.
pub(crate) fn split_service_account(value: &str) -> Option<(&str, &str)> {
    value
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
}

/// Why an agent token failed the verifier, in the caller's terms.
fn refusal(cluster: &str, e: &TokenError) -> ApiError {
    match e {
        TokenError::Expired => denied(format!("the agent token for cluster {cluster} has expired")),
        TokenError::WrongAudience => denied(format!(
            "the agent token's audience does not include {AGENT_AUDIENCE}"
        )),
        TokenError::UnknownKey { .. }
        | TokenError::KeyAlgorithmMismatch { .. }
        | TokenError::BadSignature => denied(format!(
            "the agent token's signature does not verify with the keys of cluster {cluster}: {e}"
        )),
        TokenError::KeySet(KeySetError::Fetch(_) | KeySetError::NotLoaded) => ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!("the keys of cluster {cluster} cannot be fetched now: {e}"),
        ),
        _ => denied(format!(
            "the agent token is not valid for cluster {cluster}: {e}"
        )),
    }
}

/// Verifies `token` as an agent token of `cluster` (whose token trust is
/// `trust`) with `verifier` (one kept for agent tokens only): the cluster
/// must take agent tokens, the token must verify with the cluster's keys for
/// audience [`AGENT_AUDIENCE`], name the cluster's agent service account as
/// its subject, and name its node. The agent is then a `node` principal of
/// this cluster alone.
pub(crate) async fn verify(
    verifier: &TokenVerifier,
    trust: &ClusterTrust,
    cluster: &Cluster,
    token: &str,
) -> Result<Principal, ApiError> {
    let name = printable(&cluster.name);
    if cluster.agent_identity == AgentIdentity::Key {
        return Err(denied(format!(
            "cluster {name} authenticates its agents by SigV4 key (agentIdentity {}), \
             not by service-account token",
            AgentIdentity::Key.as_str()
        )));
    }
    let (namespace, account) =
        split_service_account(&cluster.agent_service_account).ok_or_else(|| {
            denied(format!(
                "cluster {name} names no valid agent service account"
            ))
        })?;
    let trust = ClusterTrust {
        audience: AGENT_AUDIENCE.to_owned(),
        ..trust.clone()
    };
    let agent = verifier
        .verify(&trust, token)
        .await
        .map_err(|e| refusal(&name, &e))?;
    if agent.namespace != namespace || agent.service_account != account {
        return Err(denied(format!(
            "the token of service account {}/{} is not the agent service account of \
             cluster {name} ({namespace}/{account})",
            printable(&agent.namespace),
            printable(&agent.service_account)
        )));
    }
    let node = agent.node_name.clone().ok_or_else(|| {
        denied(
            "the agent token names no node (kubernetes.io.node.name): \
             use a pod-bound projected token (Kubernetes 1.30 or later)"
                .to_owned(),
        )
    })?;
    Ok(Principal {
        access_key_id: format!("{CALLER_PREFIX}{namespace}/{account}"),
        role: Role::Node,
        clusters: Clusters::Only(Arc::from([cluster.name.clone()])),
        node: Some(node),
    })
}

#[cfg(test)]
mod tests;
