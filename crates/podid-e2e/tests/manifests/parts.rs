//! Each part as designed: the webhook, the agent, the server and the
//! overlays' endpoints and storage.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::render::*;

#[test]
fn webhook_configuration_fails_open_and_skips_system_namespaces() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let Some(Object::MutatingWebhookConfiguration(config)) =
            find(objects, "MutatingWebhookConfiguration", "podid-webhook")
        else {
            panic!("{overlay}: no MutatingWebhookConfiguration")
        };
        let webhooks = config.webhooks.as_deref().unwrap_or_default();
        assert_eq!(webhooks.len(), 1, "{overlay}: one webhook");
        let w = &webhooks[0];
        assert!(
            w.name.split('.').count() >= 3,
            "{overlay}: webhook name must be fully qualified: {}",
            w.name
        );
        assert_eq!(
            w.failure_policy.as_deref(),
            Some("Ignore"),
            "{overlay}: failurePolicy"
        );
        assert_eq!(w.side_effects, "None", "{overlay}: sideEffects");
        let timeout = w.timeout_seconds.expect("timeoutSeconds set");
        assert!(
            (1..=3).contains(&timeout),
            "{overlay}: timeoutSeconds {timeout} > 3"
        );
        assert_eq!(
            w.admission_review_versions,
            ["v1"],
            "{overlay}: admissionReviewVersions"
        );

        let rules = w.rules.as_deref().unwrap_or_default();
        assert_eq!(rules.len(), 1, "{overlay}: one rule");
        let rule = &rules[0];
        assert_eq!(rule.operations, owned(&["CREATE"]), "{overlay}: operations");
        assert_eq!(rule.resources, owned(&["pods"]), "{overlay}: resources");
        assert_eq!(rule.api_groups, owned(&[""]), "{overlay}: core API group");
        assert_eq!(rule.api_versions, owned(&["v1"]), "{overlay}: apiVersions");

        let selector = w.namespace_selector.as_ref().expect("namespaceSelector");
        let excluded: BTreeSet<&str> = selector
            .match_expressions
            .iter()
            .flatten()
            .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
            .flat_map(|e| e.values.iter().flatten().map(String::as_str))
            .collect();
        for ns in [NAMESPACE, "kube-system"] {
            assert!(
                excluded.contains(ns),
                "{overlay}: namespaceSelector does not exclude {ns}"
            );
        }
        assert!(
            selector.match_labels.is_none(),
            "{overlay}: namespaces must not need a label to be served"
        );

        // The CA comes from the operator or cert-manager, never from the repository.
        assert!(
            w.client_config.url.is_none(),
            "{overlay}: the webhook is reached through its Service"
        );
        assert!(
            w.client_config.ca_bundle.is_none(),
            "{overlay}: caBundle is injected at install time"
        );
        let svc_ref = w
            .client_config
            .service
            .as_ref()
            .expect("clientConfig.service");
        assert_eq!(svc_ref.namespace, NAMESPACE);
        assert_eq!(svc_ref.path.as_deref(), Some("/mutate"));
        let svc = service(objects, &svc_ref.name)
            .unwrap_or_else(|| panic!("{overlay}: no Service {}", svc_ref.name));
        let spec = svc.spec.as_ref().expect("service spec");
        let port = spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.port == svc_ref.port.unwrap_or(443))
            .unwrap_or_else(|| {
                panic!(
                    "{overlay}: Service {} has no port {:?}",
                    svc_ref.name, svc_ref.port
                )
            });
        assert_eq!(port.port, 443);

        // The Service reaches the webhook's HTTPS port on the webhook's pods.
        let c = selected_container(objects, spec, "podid-webhook", "webhook", overlay);
        assert_eq!(
            resolve_port(c, port.target_port.as_ref().expect("targetPort")),
            8443
        );
        let args = expanded_args(objects, c);
        assert_eq!(args.first().map(String::as_str), Some("webhook"));
        assert_eq!(flag(&args, "--listen").as_deref(), Some("0.0.0.0:8443"));
    }
}

#[test]
fn webhook_runs_two_replicas_with_a_disruption_budget() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let d = deployment(objects, "podid-webhook").expect("webhook Deployment");
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2), "{overlay}");
        let Some(Object::PodDisruptionBudget(pdb)) =
            find(objects, "PodDisruptionBudget", "podid-webhook")
        else {
            panic!("{overlay}: no webhook PDB")
        };
        let pdb_spec = pdb.spec.as_ref().expect("pdb spec");
        assert_eq!(
            pdb_spec.min_available,
            Some(IntOrString::Int(1)),
            "{overlay}"
        );
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        assert!(
            label_selector_selects(pdb_spec.selector.as_ref().expect("selector"), labels),
            "{overlay}"
        );

        // TLS from the operator's Secret, mounted as a directory so renewals reach the pod.
        let pod = spec.template.spec.as_ref().expect("pod spec");
        let c = container(&pod.containers, "webhook");
        let args = expanded_args(objects, c);
        let cert = flag(&args, "--tls-cert").expect("--tls-cert");
        let key = flag(&args, "--tls-key").expect("--tls-key");
        let mount = mount_holding(c, &cert);
        assert!(key.starts_with(&format!("{}/", mount.mount_path)));
        assert_eq!(
            mount.sub_path, None,
            "a subPath mount never sees a renewed certificate"
        );
        assert_eq!(mount.read_only, Some(true));
        let volume = mounted_volume(pod, mount);
        let secret = volume.secret.as_ref().expect("tls volume is a Secret");
        assert_eq!(secret.secret_name.as_deref(), Some("podid-webhook-tls"));
    }
}

#[test]
fn agent_daemonset_matches_the_stock_agent_with_least_privilege() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        let ds = daemonset(objects, "podid-agent")
            .unwrap_or_else(|| panic!("{overlay}: no agent DaemonSet"));
        let spec = ds.spec.as_ref().expect("spec");
        let strategy = spec.update_strategy.as_ref().expect("updateStrategy");
        assert_eq!(
            strategy.type_.as_deref(),
            Some("RollingUpdate"),
            "{overlay}"
        );
        assert_eq!(
            strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.clone()),
            Some(IntOrString::String("10%".to_owned())),
            "{overlay}"
        );
        let pod = spec.template.spec.as_ref().expect("pod spec");
        assert_eq!(pod.host_network, Some(true), "{overlay}: hostNetwork");
        assert_eq!(
            pod.dns_policy.as_deref(),
            Some("ClusterFirstWithHostNet"),
            "{overlay}: dnsPolicy"
        );
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical"),
            "{overlay}"
        );
        assert!(
            pod.tolerations
                .iter()
                .flatten()
                .any(|t| t.operator.as_deref() == Some("Exists")
                    && t.key.is_none()
                    && t.effect.is_none()),
            "{overlay}: the agent must tolerate every taint"
        );

        // init: `podid-agent init` with NET_ADMIN only.
        let inits = pod.init_containers.as_deref().unwrap_or_default();
        assert_eq!(inits.len(), 1, "{overlay}: one init container");
        let init = &inits[0];
        assert_eq!(init.args, owned(&["init"]), "{overlay}");
        assert_eq!(
            init.command,
            owned(&["/podid-agent"]),
            "{overlay}: the agent-only executable"
        );
        let caps = capabilities(init);
        assert_eq!(
            caps.add,
            owned(&["NET_ADMIN"]),
            "{overlay}: init adds NET_ADMIN only"
        );
        assert_eq!(caps.drop, owned(&["ALL"]), "{overlay}: init drops ALL");

        // agent: NET_BIND_SERVICE only, probes on 127.0.0.1:2703, metrics port 2705.
        assert_eq!(pod.containers.len(), 1, "{overlay}: one agent container");
        let agent = container(&pod.containers, "agent");
        let caps = capabilities(agent);
        assert_eq!(caps.add, owned(&["NET_BIND_SERVICE"]), "{overlay}");
        assert_eq!(caps.drop, owned(&["ALL"]), "{overlay}");
        assert_eq!(
            agent.command,
            owned(&["/podid-agent"]),
            "{overlay}: the agent-only executable"
        );
        let args = expanded_args(objects, agent);
        assert_eq!(flag(&args, "--port").as_deref(), Some("80"), "{overlay}");
        assert_eq!(
            flag(&args, "--probe-port").as_deref(),
            Some("2703"),
            "{overlay}"
        );
        assert_eq!(
            flag(&args, "--metrics-port").as_deref(),
            Some("2705"),
            "{overlay}"
        );
        assert_eq!(
            flag(&args, "--bind-hosts").as_deref(),
            Some("169.254.170.23,[fd00:ec2::23]"),
            "{overlay}"
        );
        assert!(
            !flag(&args, "--cluster-name").unwrap_or_default().is_empty(),
            "{overlay}: cluster name"
        );
        for (what, probe) in [
            ("liveness", &agent.liveness_probe),
            ("readiness", &agent.readiness_probe),
        ] {
            let probe: &Probe = probe
                .as_ref()
                .unwrap_or_else(|| panic!("{overlay}: no {what} probe"));
            let get = probe.http_get.as_ref().expect("httpGet probe");
            assert_eq!(
                resolve_port(agent, &get.port),
                2703,
                "{overlay}: {what} probe port"
            );
            // The probe server listens on localhost only; the kubelet shares the
            // node's network namespace with a hostNetwork pod.
            assert_eq!(
                get.host.as_deref(),
                Some("127.0.0.1"),
                "{overlay}: {what} probe host"
            );
        }
        assert_eq!(
            agent
                .liveness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref()?.path.clone())
                .as_deref(),
            Some("/healthz")
        );
        assert_eq!(
            agent
                .readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref()?.path.clone())
                .as_deref(),
            Some("/readyz")
        );
        let ports: Vec<i32> = agent
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert!(
            ports.contains(&2705),
            "{overlay}: metrics containerPort 2705"
        );
        // A declared port is a host port under hostNetwork: port 80 would be
        // reserved on every address of the node.
        assert!(
            !ports.contains(&80),
            "{overlay}: port 80 must not be declared"
        );
        for p in agent.ports.iter().flatten() {
            assert!(
                p.host_port.is_none() || p.host_port == Some(p.container_port),
                "{overlay}: hostPort"
            );
        }
        // No key: the agent authenticates with its projected token (identity.rs).
        for e in agent.env.iter().flatten() {
            assert!(
                !e.name.starts_with("AWS_ACCESS_KEY")
                    && !e.name.starts_with("AWS_SECRET")
                    && !e.name.starts_with("AWS_SESSION"),
                "{overlay}: the agent reads a key from {}",
                e.name
            );
            assert!(
                e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_none(),
                "{overlay}: the agent reads {} from a Secret",
                e.name
            );
        }
        assert!(agent.env_from.is_none(), "{overlay}: the agent's envFrom");
    }
}

#[test]
fn every_workload_runs_the_release_image() {
    let Some(all) = rendered() else { return };
    let image = release_image();
    assert_eq!(
        image, "ghcr.io/podid/podid:0.1.0",
        "the placeholder release"
    );
    for (overlay, objects) in all {
        for (label, c) in all_containers(objects) {
            assert_eq!(
                c.image.as_deref(),
                Some(image.as_str()),
                "{overlay}: {label}"
            );
            // The image's entrypoint /podid, or its agent-only executable.
            let command = c.command.as_deref().unwrap_or_default();
            assert!(
                command.is_empty() || command == ["/podid-agent".to_owned()],
                "{overlay}: {label}: runs {command:?}"
            );
        }
    }
}

#[test]
fn in_cluster_overlays_point_at_the_server_service() {
    let Some(all) = rendered() else { return };
    for overlay in ["in-cluster", "in-cluster-postgres"] {
        let objects = &all[overlay];
        assert_eq!(
            endpoint_of(objects, "DaemonSet", "podid-agent", "agent"),
            IN_CLUSTER_ENDPOINT,
            "{overlay}"
        );
        assert_eq!(
            endpoint_of(objects, "Deployment", "podid-webhook", "webhook"),
            IN_CLUSTER_ENDPOINT,
            "{overlay}"
        );

        // https://NAME.NAMESPACE.svc[:PORT] is a rendered Service reaching the server's port.
        let url = IN_CLUSTER_ENDPOINT.strip_prefix("https://").expect("https");
        let (host, port) = url.split_once(':').unwrap_or((url, "443"));
        let (name, namespace) = host
            .strip_suffix(".svc")
            .and_then(|h| h.split_once('.'))
            .expect("svc name");
        let svc = service(objects, name).unwrap_or_else(|| panic!("{overlay}: no Service {name}"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some(namespace));
        let spec = svc.spec.as_ref().expect("spec");
        let svc_port = spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.port.to_string() == port)
            .expect("the endpoint's port");
        let c = selected_container(objects, spec, "podid-server", "server", overlay);
        let target = resolve_port(c, svc_port.target_port.as_ref().expect("targetPort"));
        let args = expanded_args(objects, c);
        assert_eq!(args.first().map(String::as_str), Some("server"));
        let listen = flag(&args, "--listen").expect("--listen");
        assert_eq!(
            listen,
            format!("0.0.0.0:{target}"),
            "{overlay}: the server listens where the Service sends"
        );
        for (what, probe) in [
            ("startup", &c.startup_probe),
            ("liveness", &c.liveness_probe),
            ("readiness", &c.readiness_probe),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{what} probe"));
            assert_eq!(
                resolve_port(c, &get.port),
                target,
                "{overlay}: server {what} probe"
            );
            assert_eq!(
                get.scheme.as_deref(),
                Some("HTTPS"),
                "{overlay}: server {what} probe speaks the server's TLS"
            );
        }
        assert_eq!(
            env_value(objects, c, "PODID_ACCOUNT_ID").map(|a| a.len()),
            Some(12),
            "{overlay}: account id"
        );
        assert!(
            env_value(objects, c, "PODID_REGION").is_some_and(|r| !r.is_empty()),
            "{overlay}: region"
        );

        // The API keys come from the operator's Secret, mounted where --keys-file points.
        let keys_file = flag(&args, "--keys-file").expect("--keys-file");
        let pod = pod_spec_of(objects, "Deployment", "podid-server");
        let mount = mount_holding(c, &keys_file);
        let volume = mounted_volume(pod, mount);
        let secret = volume.secret.as_ref().expect("keys from a Secret");
        assert_eq!(secret.secret_name.as_deref(), Some("podid-server-keys"));
        let file = keys_file
            .strip_prefix(&format!("{}/", mount.mount_path))
            .expect("inside the mount");
        assert!(
            secret.items.iter().flatten().any(|i| i.path == file) || secret.items.is_none(),
            "{overlay}: the Secret projects {file}"
        );
    }
}

#[test]
fn sqlite_server_is_one_replica_on_a_volume() {
    let Some(all) = rendered() else { return };
    let objects = &all["in-cluster"];
    let server = deployment(objects, "podid-server").expect("server");
    let spec = server.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1), "one SQLite writer");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "never two pods on one file"
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let c = container(&pod.containers, "server");
    let url = env_value(objects, c, "PODID_DATABASE_URL").expect("PODID_DATABASE_URL");
    let path = url.strip_prefix("sqlite://").expect("SQLite URL");
    let mount = mount_holding(c, path);
    assert_eq!(mount.mount_path, "/var/lib/podid");
    let volume = mounted_volume(pod, mount);
    assert!(
        volume.persistent_volume_claim.is_some(),
        "the database is on a PVC"
    );
    // The non-root server can write the volume.
    assert!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.fs_group)
            .is_some(),
        "fsGroup"
    );
    assert_eq!(
        flag(&expanded_args(objects, c), "--database-url"),
        None,
        "the URL comes from env (overridable)"
    );
}

#[test]
fn postgres_server_has_no_volume_and_several_replicas() {
    let Some(all) = rendered() else { return };
    let objects = &all["in-cluster-postgres"];
    assert!(
        find(objects, "PersistentVolumeClaim", "podid-data").is_none(),
        "no PVC with PostgreSQL"
    );
    let server = deployment(objects, "podid-server").expect("server");
    let spec = server.spec.as_ref().expect("spec");
    assert!(spec.replicas.unwrap_or(1) >= 2, "several replicas");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate")
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert!(pod
        .volumes
        .iter()
        .flatten()
        .all(|v| v.persistent_volume_claim.is_none()));
    let c = container(&pod.containers, "server");
    let env = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "PODID_DATABASE_URL")
        .expect("PODID_DATABASE_URL");
    assert_eq!(
        env.value, None,
        "the URL holds a password: from a Secret only"
    );
    let secret = env
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("from a Secret");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("podid-database", "url")
    );
    assert!(
        find(objects, "PodDisruptionBudget", "podid-server").is_some(),
        "a PDB keeps one server replica during drains"
    );
}

#[test]
fn central_server_overlay_has_no_server_and_points_outside() {
    let Some(all) = rendered() else { return };
    let objects = &all["central-server"];
    for o in objects {
        assert!(
            !o.name().starts_with("podid-server") && o.name() != "podid-data",
            "central-server: {} {} belongs to the server",
            o.kind(),
            o.name()
        );
    }
    assert!(deployment(objects, "podid-server").is_none());
    let agent = endpoint_of(objects, "DaemonSet", "podid-agent", "agent");
    let webhook = endpoint_of(objects, "Deployment", "podid-webhook", "webhook");
    assert_eq!(agent, CENTRAL_ENDPOINT);
    assert_eq!(
        webhook, CENTRAL_ENDPOINT,
        "agent and webhook share one setting"
    );
    assert!(!agent.contains(".svc"), "no in-cluster server to reach");
}
