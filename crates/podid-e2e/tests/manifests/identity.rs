//! The agent's identity without a shared secret (issue 14): its projected
//! token of audience `podid` and the env pointing at it, its kubelet pod check
//! (URL, CA, token) and the one RBAC rule it needs, and the README registering
//! the cluster with token identity.

use k8s_openapi::api::core::v1::{Container, PodSpec, ServiceAccountTokenProjection, Volume};

use crate::render::*;

/// The audience of agent tokens (spec of issue 14, `podid_api::cluster::AGENT_AUDIENCE`).
const AGENT_AUDIENCE: &str = "podid";
/// The service account a cluster names as its agent unless told otherwise (issue 14).
const AGENT_SERVICE_ACCOUNT: (&str, &str) = ("podid-system", "podid-agent");

fn agent_pod(objects: &[Object]) -> (&PodSpec, &Container) {
    let pod = pod_spec_of(objects, "DaemonSet", "podid-agent");
    (pod, container(&pod.containers, "agent"))
}

/// The projected token source and the volume holding the file `path` of `c`.
fn token_at<'a>(
    pod: &'a PodSpec,
    c: &Container,
    path: &str,
) -> (&'a Volume, &'a ServiceAccountTokenProjection) {
    let mount = mount_holding(c, path);
    assert_eq!(mount.read_only, Some(true), "{path}: read-only mount");
    let volume = mounted_volume(pod, mount);
    let file = &path[mount.mount_path.len() + 1..];
    let token = volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .find(|t| t.path == file)
        .unwrap_or_else(|| panic!("{path}: no projected serviceAccountToken {file}"));
    (volume, token)
}

#[test]
fn the_agent_authenticates_with_its_projected_token_of_audience_podid() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let (pod, agent) = agent_pod(objects);
        let path = env_value(objects, agent, "PODID_AGENT_IDENTITY_TOKEN_FILE")
            .unwrap_or_else(|| panic!("{overlay}: PODID_AGENT_IDENTITY_TOKEN_FILE"));
        let (volume, token) = token_at(pod, agent, &path);
        assert_eq!(
            token.audience.as_deref(),
            Some(AGENT_AUDIENCE),
            "{overlay}: {}: the identity token is for podid only",
            volume.name
        );
        // Short-lived; the kubelet rotates it and the agent re-reads it.
        let lifetime = token.expiration_seconds.expect("expirationSeconds");
        assert!(
            (600..=3600).contains(&lifetime),
            "{overlay}: expirationSeconds {lifetime}"
        );
        // The token's subject is the service account the server accepts by default.
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(AGENT_SERVICE_ACCOUNT.1),
            "{overlay}"
        );
        let ds = find(objects, "DaemonSet", "podid-agent").expect("agent");
        assert_eq!(
            ds.meta().namespace.as_deref(),
            Some(AGENT_SERVICE_ACCOUNT.0)
        );
        // Nothing else authenticates the agent: no AWS key, no Secret volume.
        for v in pod.volumes.iter().flatten() {
            assert!(v.secret.is_none(), "{overlay}: Secret volume {}", v.name);
        }
        let args = expanded_args(objects, agent);
        assert_eq!(
            flag(&args, "--identity-token-file"),
            None,
            "one place: the env"
        );
    }
}

#[test]
fn the_agent_asks_its_own_nodes_kubelet_with_the_api_servers_token() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let (pod, agent) = agent_pod(objects);
        // The node's address (status.hostIP) and the kubelet's port.
        assert_eq!(
            expanded_env(objects, agent, "PODID_AGENT_KUBELET_URL").as_deref(),
            Some(format!("https://{STAND_IN_IP}:10250").as_str()),
            "{overlay}: PODID_AGENT_KUBELET_URL"
        );
        let node_ip = agent
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "NODE_IP")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(node_ip, Some("status.hostIP"), "{overlay}: NODE_IP");
        // The kubelet authenticates a token of the API server's audience
        // (no audience set), never the podid one.
        let token_file = env_value(objects, agent, "PODID_AGENT_KUBELET_TOKEN_FILE")
            .unwrap_or_else(|| "/var/run/secrets/kubernetes.io/serviceaccount/token".to_owned());
        let (volume, token) = token_at(pod, agent, &token_file);
        assert_eq!(
            token.audience, None,
            "{overlay}: {}: kubelet token",
            volume.name
        );
        // The kubelet's certificate is checked against the cluster CA.
        let ca_file = env_value(objects, agent, "PODID_AGENT_KUBELET_CA_FILE")
            .unwrap_or_else(|| panic!("{overlay}: PODID_AGENT_KUBELET_CA_FILE"));
        let mount = mount_holding(agent, &ca_file);
        let file = &ca_file[mount.mount_path.len() + 1..];
        let from_root_ca = mounted_volume(pod, mount)
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.config_map.as_ref())
            .any(|cm| {
                cm.name == "kube-root-ca.crt"
                    && cm
                        .items
                        .iter()
                        .flatten()
                        .any(|i| i.key == "ca.crt" && i.path == file)
            });
        assert!(
            from_root_ca,
            "{overlay}: {ca_file} is kube-root-ca.crt's ca.crt"
        );
        // Verification stays on in the manifests; turning it off is the operator's choice.
        assert_eq!(
            env_value(
                objects,
                agent,
                "PODID_AGENT_KUBELET_INSECURE_SKIP_TLS_VERIFY"
            ),
            None,
            "{overlay}"
        );
    }
}

#[test]
fn the_agent_may_read_its_kubelets_pods_and_nothing_else() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let Some(Object::ClusterRole(role)) = find(objects, "ClusterRole", "podid-agent") else {
            panic!("{overlay}: no ClusterRole podid-agent")
        };
        let rules = role.rules.as_deref().unwrap_or_default();
        assert_eq!(rules.len(), 1, "{overlay}: one rule");
        let rule = &rules[0];
        assert_eq!(rule.api_groups, owned(&[""]), "{overlay}: core group");
        assert_eq!(rule.verbs, vec!["get".to_owned()], "{overlay}: get only");
        assert_eq!(rule.resource_names, None, "{overlay}");
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(
            resources.iter().any(|r| r == "nodes/proxy"),
            "{overlay}: GET /pods is nodes/proxy without fine-grained kubelet authz"
        );
        for r in &resources {
            assert!(
                r == "nodes/proxy" || r == "nodes/pods",
                "{overlay}: unexpected resource {r}"
            );
        }
        let Some(Object::ClusterRoleBinding(binding)) =
            find(objects, "ClusterRoleBinding", "podid-agent")
        else {
            panic!("{overlay}: no ClusterRoleBinding podid-agent")
        };
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, "podid-agent");
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{overlay}: bound to one subject");
        let (ns, name) = AGENT_SERVICE_ACCOUNT;
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].namespace.as_deref(),
                subjects[0].name.as_str()
            ),
            ("ServiceAccount", Some(ns), name),
            "{overlay}: the agent's service account"
        );
        assert!(find(objects, "ServiceAccount", name).is_some(), "{overlay}");
    }
}

#[test]
fn readme_registers_the_cluster_with_agent_token_identity() {
    let readme = std::fs::read_to_string(deploy().join("README.md")).expect("deploy/README.md");
    let register: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("podid cluster register "))
        .collect();
    assert!(
        !register.is_empty(),
        "no `podid cluster register` in the README"
    );
    for line in register {
        assert!(
            line.contains("--agent-identity token"),
            "registration without token identity: {line}"
        );
    }
    for must in [
        "PODID_AGENT_KUBELET_INSECURE_SKIP_TLS_VERIFY",
        "nodes/proxy",
        "nodes/pods",
    ] {
        assert!(
            readme.contains(must),
            "deploy/README.md does not explain {must}"
        );
    }
    assert!(
        !readme.contains("podid-agent-key"),
        "deploy/README.md still creates an agent key Secret"
    );
}
