//! A cluster's agent settings in the registry: `agentIdentity`,
//! `agentServiceAccount` and `nodeBinding`, their defaults and rules.

use podid_api::arn::printable;
use podid_api::cluster::{
    AgentIdentity, Cluster, RegisterClusterRequest, UpdateClusterRequest,
    DEFAULT_AGENT_SERVICE_ACCOUNT,
};
use podid_api::{validate, ApiError};

/// What a cluster stores of its agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentSettings {
    pub(super) identity: AgentIdentity,
    pub(super) service_account: String,
    pub(super) node_binding: bool,
}

impl AgentSettings {
    /// Puts the settings into `cluster`.
    pub(super) fn apply(self, cluster: &mut Cluster) {
        cluster.agent_identity = self.identity;
        cluster.agent_service_account = self.service_account;
        cluster.node_binding = self.node_binding;
    }
}

/// `namespace/name`, each a Kubernetes name (a DNS-1123 label and subdomain).
pub(super) fn check_service_account(value: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        ApiError::invalid_parameter(format!("agentServiceAccount '{}' {why}", printable(value)))
    };
    let (namespace, name) = crate::auth::agent_token::split_service_account(value)
        .ok_or_else(|| bad("must be namespace/name".to_owned()))?;
    validate::namespace(namespace)
        .map_err(|e| bad(format!("has a bad namespace: {}", e.message)))?;
    validate::service_account(name).map_err(|e| bad(format!("has a bad name: {}", e.message)))
}

/// Refuses node binding without token identity: only an agent token tells
/// the broker which node asks.
fn check(identity: AgentIdentity, node_binding: bool) -> Result<(), ApiError> {
    if identity == AgentIdentity::Key && node_binding {
        return Err(ApiError::invalid_parameter(
            "nodeBinding true needs agentIdentity token: with agentIdentity key the broker \
             cannot tell which node asks",
        ));
    }
    Ok(())
}

/// A registration's settings: `key` unless given, the default service
/// account, node binding on with `token` unless given.
pub(super) fn registered(req: &RegisterClusterRequest) -> Result<AgentSettings, ApiError> {
    let identity = req.agent_identity.unwrap_or_default();
    let service_account = req
        .agent_service_account
        .clone()
        .unwrap_or_else(|| DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned());
    check_service_account(&service_account)?;
    let node_binding = req.node_binding.unwrap_or(identity == AgentIdentity::Token);
    check(identity, node_binding)?;
    Ok(AgentSettings {
        identity,
        service_account,
        node_binding,
    })
}

/// The settings after `req` changes `current`'s: a change of identity
/// without `nodeBinding` turns binding on (to `token`) or off (to `key`).
/// The service account is checked by [`check_service_account`] before.
pub(super) fn updated(
    req: &UpdateClusterRequest,
    current: &Cluster,
) -> Result<AgentSettings, ApiError> {
    let identity = req.agent_identity.unwrap_or(current.agent_identity);
    let node_binding = match req.node_binding {
        Some(on) => on,
        None if identity != current.agent_identity => identity == AgentIdentity::Token,
        None => current.node_binding,
    };
    check(identity, node_binding)?;
    Ok(AgentSettings {
        identity,
        service_account: req
            .agent_service_account
            .clone()
            .unwrap_or_else(|| current.agent_service_account.clone()),
        node_binding,
    })
}

#[cfg(test)]
mod tests;
