//! Which caller may ask for which pod: a cluster whose agents use token
//! identity takes only agent tokens, and with node binding on, only for pods
//! of the agent's own node.

use podid_api::arn::printable;
use podid_api::cluster::{AgentIdentity, Cluster};
use podid_api::{ApiError, ErrorKind};
use podid_token::PodIdentity;

fn denied(message: String) -> ApiError {
    ApiError::new(ErrorKind::AccessDenied, message)
}

/// Refuses a caller without an agent token (`caller_node` is the node it
/// proved) when the cluster authenticates its agents by token.
pub(super) fn check_caller(cluster: &Cluster, caller_node: Option<&str>) -> Result<(), ApiError> {
    if cluster.agent_identity == AgentIdentity::Token && caller_node.is_none() {
        return Err(denied(format!(
            "cluster {} authenticates its agents by service-account token",
            printable(&cluster.name)
        )));
    }
    Ok(())
}

/// With node binding on, refuses a pod token that names no node or a node
/// other than the calling agent's.
pub(super) fn check_pod(
    cluster: &Cluster,
    pod: &PodIdentity,
    caller_node: Option<&str>,
) -> Result<(), ApiError> {
    if !cluster.node_binding {
        return Ok(());
    }
    let name = printable(&cluster.name);
    match (pod.node_name.as_deref(), caller_node) {
        (None, _) => Err(denied(format!(
            "the pod's token names no node (kubernetes.io.node.name), and cluster {name} \
             serves a pod only through its own node's agent"
        ))),
        (Some(_), None) => Err(denied(format!(
            "cluster {name} serves a pod only through its own node's agent, \
             and the caller proved no node"
        ))),
        (Some(pod_node), Some(agent_node)) if pod_node != agent_node => Err(denied(format!(
            "the pod's token names node {} but the agent runs on node {}",
            printable(pod_node),
            printable(agent_node)
        ))),
        _ => Ok(()),
    }
}

/// A registered cluster `c` for tests, with these agent settings.
#[cfg(test)]
pub(crate) fn sample_cluster(identity: AgentIdentity, node_binding: bool) -> Cluster {
    Cluster {
        name: "c".into(),
        issuer: "https://issuer.test".into(),
        audience: "pods.eks.amazonaws.com".into(),
        cluster_arn: "arn:aws:eks:us-east-1:111122223333:cluster/c".into(),
        key_source: podid_api::cluster::KeySource::Inline,
        jwks_uri: None,
        jwks: serde_json::json!({"keys": []}),
        agent_identity: identity,
        agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
        node_binding,
        token_review: None,
        created_at: podid_api::EpochMillis(1),
        modified_at: podid_api::EpochMillis(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::sample_cluster as cluster;

    fn pod(node: Option<&str>) -> PodIdentity {
        PodIdentity {
            namespace: "ns".into(),
            service_account: "sa".into(),
            service_account_uid: None,
            pod_name: "p".into(),
            pod_uid: "uid-p".into(),
            node_name: node.map(str::to_owned),
            issuer: "https://issuer.test".into(),
            expires_at: 0,
            issued_at: None,
            jti: None,
        }
    }

    fn message(result: Result<(), ApiError>) -> String {
        let e = result.expect_err("refused");
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        e.message
    }

    #[test]
    fn token_clusters_take_only_agent_tokens() {
        let token = cluster(AgentIdentity::Token, true);
        assert_eq!(
            message(check_caller(&token, None)),
            "cluster c authenticates its agents by service-account token"
        );
        assert!(check_caller(&token, Some("node-a")).is_ok());
        assert!(check_caller(&cluster(AgentIdentity::Key, false), None).is_ok());
    }

    #[test]
    fn node_binding_compares_the_pod_node_with_the_agent_node() {
        let bound = cluster(AgentIdentity::Token, true);
        assert!(check_pod(&bound, &pod(Some("node-a")), Some("node-a")).is_ok());
        assert_eq!(
            message(check_pod(&bound, &pod(Some("node-a")), Some("node-b"))),
            "the pod's token names node node-a but the agent runs on node node-b"
        );
        assert!(message(check_pod(&bound, &pod(None), Some("node-a"))).contains("names no node"));
        assert!(message(check_pod(&bound, &pod(Some("node-a")), None)).contains("proved no node"));
        let loose = cluster(AgentIdentity::Token, false);
        assert!(check_pod(&loose, &pod(Some("node-a")), Some("node-b")).is_ok());
        assert!(check_pod(&loose, &pod(None), Some("node-b")).is_ok());
    }
}
