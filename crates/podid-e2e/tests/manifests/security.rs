//! What every overlay must be: known kinds in podid-system, least privilege,
//! no Kubernetes API access, Secrets only referenced, references that resolve.

use std::collections::BTreeSet;

use crate::render::*;

#[test]
fn every_overlay_renders_only_known_kinds_and_fields() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let mut seen = BTreeSet::new();
        for o in objects {
            assert!(
                !o.name().is_empty(),
                "{overlay}: a {} without a name",
                o.kind()
            );
            assert!(
                seen.insert((o.kind(), o.name().to_owned())),
                "{overlay}: {} {} twice",
                o.kind(),
                o.name()
            );
        }
        for required in [
            ("Namespace", NAMESPACE),
            ("DaemonSet", "podid-agent"),
            ("Deployment", "podid-webhook"),
            ("Service", "podid-webhook"),
            ("MutatingWebhookConfiguration", "podid-webhook"),
            ("PodDisruptionBudget", "podid-webhook"),
        ] {
            assert!(
                find(objects, required.0, required.1).is_some(),
                "{overlay}: no {} {}",
                required.0,
                required.1
            );
        }
    }
}

#[test]
fn namespaced_objects_live_in_podid_system() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for o in objects {
            if o.is_cluster_scoped() {
                assert_eq!(
                    o.meta().namespace,
                    None,
                    "{overlay}: cluster-scoped {} {}",
                    o.kind(),
                    o.name()
                );
            } else {
                assert_eq!(
                    o.meta().namespace.as_deref(),
                    Some(NAMESPACE),
                    "{overlay}: {} {}",
                    o.kind(),
                    o.name()
                );
            }
        }
        let Some(Object::Namespace(ns)) = find(objects, "Namespace", NAMESPACE) else {
            panic!("no namespace")
        };
        // The agent needs hostNetwork and capabilities, which only "privileged" admits.
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("privileged")
        );
        let namespaces = objects.iter().filter(|o| o.kind() == "Namespace").count();
        assert_eq!(namespaces, 1, "{overlay}: only podid-system is created");
    }
}

#[test]
fn no_container_is_privileged_escalates_or_writes_its_root_filesystem() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let containers = all_containers(objects);
        assert!(containers.len() >= 3, "{overlay}: workloads found");
        for (label, c) in containers {
            let sc = c
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{overlay}: {label}: no securityContext"));
            assert_ne!(
                sc.privileged,
                Some(true),
                "{overlay}: {label} is privileged"
            );
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{overlay}: {label} allowPrivilegeEscalation"
            );
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{overlay}: {label} readOnlyRootFilesystem"
            );
            let caps = sc
                .capabilities
                .as_ref()
                .unwrap_or_else(|| panic!("{overlay}: {label}: capabilities"));
            assert_eq!(caps.drop, owned(&["ALL"]), "{overlay}: {label} drops ALL");
            let added: Vec<&str> = caps.add.iter().flatten().map(String::as_str).collect();
            let allowed: &[&str] = match label.as_str() {
                "DaemonSet podid-agent/init" => &["NET_ADMIN"],
                "DaemonSet podid-agent/agent" => &["NET_BIND_SERVICE"],
                _ => &[],
            };
            assert_eq!(added, allowed, "{overlay}: {label} capabilities");
            // Requests for scheduling, a memory limit against leaks; no CPU
            // limit (throttling would blow the SDKs' 1–2 s timeouts).
            let res = c
                .resources
                .as_ref()
                .unwrap_or_else(|| panic!("{overlay}: {label}: resources"));
            let requests = res.requests.clone().unwrap_or_default();
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{overlay}: {label} requests"
            );
            assert!(
                res.limits
                    .clone()
                    .unwrap_or_default()
                    .contains_key("memory"),
                "{overlay}: {label} memory limit"
            );
        }
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            let label = format!("{overlay}: {} {}", o.kind(), o.name());
            assert_ne!(pod.host_pid, Some(true), "{label}: hostPID");
            assert_ne!(pod.host_ipc, Some(true), "{label}: hostIPC");
            if o.name() != "podid-agent" {
                assert_ne!(
                    pod.host_network,
                    Some(true),
                    "{label}: only the agent uses the host network"
                );
            }
            for v in pod.volumes.iter().flatten() {
                assert!(v.host_path.is_none(), "{label}: hostPath volume {}", v.name);
            }
            let seccomp = pod
                .security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.as_ref());
            assert_eq!(
                seccomp.map(|s| s.type_.as_str()),
                Some("RuntimeDefault"),
                "{label}: seccomp"
            );
        }
    }
}

#[test]
fn server_and_webhook_run_as_non_root() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            if o.name() == "podid-agent" {
                // Root with one capability: see deploy/README.md.
                for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
                    let sc = c.security_context.as_ref().expect("securityContext");
                    assert_eq!(
                        sc.run_as_user,
                        Some(0),
                        "{overlay}: agent {} runs as root explicitly",
                        c.name
                    );
                }
                continue;
            }
            let psc = pod.security_context.as_ref().expect("pod securityContext");
            assert_eq!(
                psc.run_as_non_root,
                Some(true),
                "{overlay}: {} runAsNonRoot",
                o.name()
            );
            assert!(
                psc.run_as_user.is_some_and(|u| u != 0),
                "{overlay}: {} runAsUser",
                o.name()
            );
            for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
                let sc = c.security_context.as_ref().expect("securityContext");
                assert_ne!(
                    sc.run_as_non_root,
                    Some(false),
                    "{overlay}: {}/{}",
                    o.name(),
                    c.name
                );
                assert!(
                    sc.run_as_user.is_none_or(|u| u != 0),
                    "{overlay}: {}/{}",
                    o.name(),
                    c.name
                );
            }
        }
    }
}

#[test]
fn no_part_gets_kubernetes_api_access_but_the_agents_kubelet_read() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for o in objects {
            // The agent's ClusterRole and its binding (checked rule by rule in
            // identity.rs) are the only RBAC objects.
            let agents_rbac = matches!(o, Object::ClusterRole(_) | Object::ClusterRoleBinding(_))
                && o.name() == "podid-agent";
            assert!(
                agents_rbac
                    || !matches!(
                        o,
                        Object::Role(_)
                            | Object::RoleBinding(_)
                            | Object::ClusterRole(_)
                            | Object::ClusterRoleBinding(_)
                    ),
                "{overlay}: {} {}: podid's parts use podid's API, not the Kubernetes API",
                o.kind(),
                o.name()
            );
            // Only the agent carries service-account tokens (its projected ones).
            if let Some(pod) = o.pod_spec().filter(|_| o.name() != "podid-agent") {
                for v in pod.volumes.iter().flatten() {
                    let tokens = v
                        .projected
                        .iter()
                        .flat_map(|p| p.sources.iter().flatten())
                        .filter(|s| s.service_account_token.is_some())
                        .count();
                    assert_eq!(
                        tokens,
                        0,
                        "{overlay}: {}: token volume {}",
                        o.name(),
                        v.name
                    );
                }
            }
            if let Object::ServiceAccount(sa) = o {
                assert_eq!(
                    sa.automount_service_account_token,
                    Some(false),
                    "{overlay}: ServiceAccount {}",
                    o.name()
                );
            }
            if let Some(pod) = o.pod_spec() {
                assert_eq!(
                    pod.automount_service_account_token,
                    Some(false),
                    "{overlay}: {} token",
                    o.name()
                );
                let sa = pod
                    .service_account_name
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: serviceAccountName", o.name()));
                assert!(
                    find(objects, "ServiceAccount", sa).is_some(),
                    "{overlay}: {}: no ServiceAccount {sa}",
                    o.name()
                );
            }
        }
    }
}

#[test]
fn secrets_are_referenced_never_committed() {
    let Some(all) = rendered() else { return };
    let readme = std::fs::read_to_string(deploy().join("README.md")).expect("deploy/README.md");
    for (overlay, objects) in all {
        assert!(
            !objects.iter().any(|o| matches!(o, Object::Secret(_))),
            "{overlay}: a Secret in the manifests"
        );
        let mut referenced = BTreeSet::new();
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            for v in pod.volumes.iter().flatten() {
                if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                    referenced.insert(s);
                }
            }
            for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
                for e in c.env.iter().flatten() {
                    if let Some(s) = e
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                    {
                        referenced.insert(s.name.clone());
                    }
                }
                for e in c.env_from.iter().flatten() {
                    if let Some(s) = &e.secret_ref {
                        referenced.insert(s.name.clone());
                    }
                }
            }
        }
        for name in &referenced {
            assert!(
                OPERATOR_SECRETS.contains(&name.as_str()) || name == "podid-database",
                "{overlay}: unexpected Secret {name}"
            );
            assert!(
                readme.contains(name.as_str()),
                "deploy/README.md does not say how to create Secret {name}"
            );
        }
        for must in ["podid-webhook-tls", "podid-webhook-key"] {
            assert!(referenced.contains(must), "{overlay}: {must} not used");
        }
        // No agent or node key anywhere: the agents prove themselves with their tokens.
        for name in &referenced {
            assert!(
                !name.contains("agent") && !name.contains("node"),
                "{overlay}: Secret {name} looks like an agent key"
            );
        }
    }
}

#[test]
fn scrapers_reach_metrics_on_their_own_listeners_only() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            let annotations = match o {
                Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.metadata.clone()),
                Object::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.metadata.clone()),
                _ => None,
            }
            .and_then(|m| m.annotations)
            .unwrap_or_default();
            let Some(port) = annotations.get("prometheus.io/port") else {
                continue;
            };
            let what = format!("{overlay}: {}", o.name());
            let c = &pod.containers[0];
            let declared = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("metrics"))
                .unwrap_or_else(|| panic!("{what}: no port named metrics"));
            assert_eq!(port, &declared.container_port.to_string(), "{what}");
            let args = expanded_args(objects, c);
            // Each binary's metrics listener, on an address a scraper reaches
            // but never every address of a node.
            let bound = match args.first().map(String::as_str) {
                Some("server") => flag(&args, "--metrics-listen").expect("--metrics-listen"),
                _ => format!(
                    "{}:{}",
                    flag(&args, "--metrics-address").expect("--metrics-address"),
                    flag(&args, "--metrics-port").expect("--metrics-port")
                ),
            };
            let (host, bound_port) = bound.rsplit_once(':').expect("host:port");
            assert_eq!(bound_port, port, "{what}: {bound}");
            assert_ne!(host, "127.0.0.1", "{what}: a scraper cannot reach loopback");
            if pod.host_network == Some(true) {
                assert_eq!(
                    host, STAND_IN_IP,
                    "{what}: the node's own address (status.hostIP)"
                );
            }
        }
    }
}

#[test]
fn config_maps_are_rendered_or_the_operators() {
    let Some(all) = rendered() else { return };
    let readme = std::fs::read_to_string(deploy().join("README.md")).expect("deploy/README.md");
    for (overlay, objects) in all {
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            for v in pod.volumes.iter().flatten() {
                let Some(name) = v.config_map.as_ref().map(|c| c.name.as_str()) else {
                    continue;
                };
                if find(objects, "ConfigMap", name).is_some() {
                    continue;
                }
                assert!(
                    OPERATOR_CONFIG_MAPS.contains(&name),
                    "{overlay}: {}: ConfigMap {name} is neither rendered nor the operator's",
                    o.name()
                );
                assert!(
                    readme.contains(&format!("create configmap {name}")),
                    "deploy/README.md does not say how to create ConfigMap {name}"
                );
            }
        }
    }
}

#[test]
fn every_reference_resolves() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for (label, c) in all_containers(objects) {
            // ConfigMap keys exist (kustomize renames generated ConfigMaps; a
            // stale name or a typo in a key would keep the pod from starting).
            for e in c.env.iter().flatten() {
                if let Some(r) = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.config_map_key_ref.as_ref())
                {
                    assert!(
                        env_value(objects, c, &e.name).is_some(),
                        "{overlay}: {label}: {} → ConfigMap {} key {} does not exist",
                        e.name,
                        r.name,
                        r.key
                    );
                }
            }
            // Every $(VAR) in args is defined (expanded_args panics otherwise).
            let args = expanded_args(objects, c);
            assert!(
                !args.iter().any(|a| a.contains("$(")),
                "{overlay}: {label}: unexpanded {args:?}"
            );
        }
        for o in objects {
            let Some(pod) = o.pod_spec() else { continue };
            for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
                for m in c.volume_mounts.iter().flatten() {
                    assert!(
                        pod.volumes.iter().flatten().any(|v| v.name == m.name),
                        "{overlay}: {}/{}: mount of unknown volume {}",
                        o.name(),
                        c.name,
                        m.name
                    );
                }
            }
            for v in pod.volumes.iter().flatten() {
                if let Some(claim) = &v.persistent_volume_claim {
                    assert!(
                        find(objects, "PersistentVolumeClaim", &claim.claim_name).is_some(),
                        "{overlay}: {}: no PVC {}",
                        o.name(),
                        claim.claim_name
                    );
                }
            }
        }
        // Workload selectors match their own pod templates.
        for o in objects {
            let (selector, labels) = match o {
                Object::Deployment(d) => {
                    let s = d.spec.as_ref().expect("spec");
                    (
                        &s.selector,
                        s.template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
                    )
                }
                Object::DaemonSet(d) => {
                    let s = d.spec.as_ref().expect("spec");
                    (
                        &s.selector,
                        s.template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
                    )
                }
                _ => continue,
            };
            assert!(
                label_selector_selects(selector, labels),
                "{overlay}: {} selects its own pods",
                o.name()
            );
        }
    }
}
