//! TLS and scoped keys (issue 13): the in-cluster server serves HTTPS with the
//! certificate of a Secret, the agents and the webhook call `https://`
//! trusting the operator's CA, the cert-manager manifest issues that
//! certificate for the server's Service name, and the keys README gives the
//! webhook a key scoped to its cluster (and the agents none: issue 14).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serde::Deserialize;
use serde_json::Value;

use crate::render::*;

/// Where the agents and the webhook find the CA (the ConfigMap `podid-ca`, key `ca.crt`).
const CA_CONFIG_MAP: &str = "podid-ca";

/// The file `--flag` names is on a read-only directory mount (no subPath, so
/// an updated Secret or ConfigMap reaches the pod) of a volume projecting it:
/// the volume, and the file's name in it.
fn file_on_volume<'a>(
    pod: &'a k8s_openapi::api::core::v1::PodSpec,
    c: &Container,
    path: &str,
    what: &str,
) -> (&'a k8s_openapi::api::core::v1::Volume, String) {
    let mount = mount_holding(c, path);
    assert_eq!(
        mount.sub_path, None,
        "{what}: a subPath mount never sees updates"
    );
    assert_eq!(mount.read_only, Some(true), "{what}: read-only");
    let file = path
        .strip_prefix(&format!("{}/", mount.mount_path))
        .expect("inside the mount")
        .to_owned();
    (mounted_volume(pod, mount), file)
}

#[test]
fn in_cluster_server_serves_https_with_the_certificate_of_its_secret() {
    let Some(all) = rendered() else { return };
    for overlay in ["in-cluster", "in-cluster-postgres"] {
        let objects = &all[overlay];
        let pod = pod_spec_of(objects, "Deployment", "podid-server");
        let c = container(&pod.containers, "server");
        let args = expanded_args(objects, c);
        let cert = flag(&args, "--tls-cert").unwrap_or_else(|| panic!("{overlay}: --tls-cert"));
        let key = flag(&args, "--tls-key").unwrap_or_else(|| panic!("{overlay}: --tls-key"));
        let (cert_volume, cert_file) = file_on_volume(pod, c, &cert, overlay);
        let (key_volume, key_file) = file_on_volume(pod, c, &key, overlay);
        assert_eq!(
            cert_volume.name, key_volume.name,
            "{overlay}: certificate and key come from one Secret, updated together"
        );
        let secret = cert_volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("podid-server-tls"));
        // `kubectl create secret tls` and cert-manager both write these keys.
        assert_eq!(
            (cert_file.as_str(), key_file.as_str()),
            ("tls.crt", "tls.key")
        );
        assert!(
            secret.items.is_none(),
            "{overlay}: the whole Secret is projected"
        );

        // The Service the endpoint names is the https port.
        let svc = service(objects, "podid-server").expect("server Service");
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        assert_eq!(ports.len(), 1, "{overlay}: one port, HTTPS");
        assert_eq!(
            (ports[0].port, ports[0].name.as_deref()),
            (443, Some("https")),
            "{overlay}"
        );
        // The server's plain-HTTP listener is gone: nothing but 8443 declared.
        let declared: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
        assert!(declared.contains(&8443), "{overlay}: {declared:?}");
        assert!(!declared.contains(&8080), "{overlay}: {declared:?}");
    }
}

#[test]
fn agents_and_webhook_call_https_trusting_the_operators_ca() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for (kind, workload, name) in [
            ("DaemonSet", "podid-agent", "agent"),
            ("Deployment", "podid-webhook", "webhook"),
        ] {
            let what = format!("{overlay}: {workload}");
            let endpoint = endpoint_of(objects, kind, workload, name);
            assert!(
                endpoint.starts_with("https://"),
                "{what}: credentials cross the network in clear: {endpoint}"
            );
            let pod = pod_spec_of(objects, kind, workload);
            let c = container(&pod.containers, name);
            let ca = flag(&expanded_args(objects, c), "--ca-file")
                .unwrap_or_else(|| panic!("{what}: no --ca-file"));
            let (volume, file) = file_on_volume(pod, c, &ca, &what);
            let map = volume
                .config_map
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: the CA comes from a ConfigMap (not secret)"));
            assert_eq!(map.name, CA_CONFIG_MAP, "{what}");
            assert!(
                OPERATOR_CONFIG_MAPS.contains(&map.name.as_str()),
                "{what}: the operator makes {}",
                map.name
            );
            let items = map.items.as_deref().unwrap_or_default();
            assert!(
                items.iter().any(|i| i.key == "ca.crt" && i.path == file),
                "{what}: {ca} is the ConfigMap's ca.crt: {items:?}"
            );
            assert_ne!(
                map.optional,
                Some(true),
                "{what}: a missing CA must stop the pod"
            );
        }
    }
}

/// The cert-manager objects of `deploy/cert-manager/server-tls.yaml`, by kind and name.
fn cert_manager_objects() -> BTreeMap<(String, String), Value> {
    let path = deploy().join("cert-manager/server-tls.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut objects = BTreeMap::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).expect("YAML");
        assert_eq!(v["apiVersion"], "cert-manager.io/v1", "{v}");
        assert_eq!(v["metadata"]["namespace"], NAMESPACE, "{v}");
        let key = (
            v["kind"].as_str().expect("kind").to_owned(),
            v["metadata"]["name"].as_str().expect("name").to_owned(),
        );
        assert!(objects.insert(key, v).is_none(), "an object twice");
    }
    objects
}

#[test]
fn cert_manager_issues_the_servers_certificate_from_a_private_ca() {
    let objects = cert_manager_objects();
    let get = |kind: &str, name: &str| {
        objects
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/cert-manager/server-tls.yaml"))
    };
    let server = objects
        .values()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == "podid-server-tls")
        .expect("a Certificate writing the Secret podid-server-tls");
    let host = IN_CLUSTER_ENDPOINT
        .strip_prefix("https://")
        .expect("https")
        .split(':')
        .next()
        .expect("host");
    let names: Vec<&str> = server["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [host.to_owned(), format!("{host}.cluster.local")] {
        assert!(names.contains(&name.as_str()), "{name} not in {names:?}");
    }
    assert_ne!(
        server["spec"]["isCA"], true,
        "the server's certificate is a leaf"
    );

    // Its Issuer is a CA whose key is an isCA Certificate's, itself self-signed.
    let issuer = get(
        "Issuer",
        server["spec"]["issuerRef"]["name"]
            .as_str()
            .expect("issuerRef"),
    );
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("the server's Issuer is a CA issuer");
    assert_ne!(ca_secret, "podid-server-tls");
    let ca = objects
        .values()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .expect("the CA's Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = get(
        "Issuer",
        ca["spec"]["issuerRef"]["name"].as_str().expect("issuerRef"),
    );
    assert!(root["spec"]["selfSigned"].is_object(), "{root}");
    // The agents mount a ConfigMap, never the CA's Secret (it holds the CA's key).
    assert_ne!(ca_secret, CA_CONFIG_MAP);
}

/// `$NAME` in `text` replaced by `vars[NAME]` (or a 30-letter stand-in secret).
fn expand_shell(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        out.push_str(
            vars.get(name)
                .map(String::as_str)
                .unwrap_or("abcdefghijklmnopqrstuvwxyzABCD"),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The access key id a `kubectl create secret generic SECRET …` line of the README gives.
fn key_id_of_secret(readme: &str, secret: &str) -> String {
    let line = readme
        .lines()
        .find(|l| l.contains(&format!("create secret generic {secret} ")))
        .unwrap_or_else(|| panic!("deploy/README.md does not create {secret}"));
    line.split("--from-literal=AWS_ACCESS_KEY_ID=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{secret}: no AWS_ACCESS_KEY_ID literal"))
        .to_owned()
}

#[test]
fn readme_scopes_the_webhook_key_to_its_cluster_and_gives_agents_none() {
    let Some(all) = rendered() else { return };
    let readme = std::fs::read_to_string(deploy().join("README.md")).expect("deploy/README.md");
    let start = readme
        .find("cat > keys.toml <<EOF\n")
        .expect("the keys.toml block")
        + 22;
    let end = start + readme[start..].find("\nEOF\n").expect("its EOF");
    let cluster = readme
        .lines()
        .find_map(|l| l.strip_prefix("CLUSTER="))
        .and_then(|r| r.split_whitespace().next())
        .expect("CLUSTER=… before the block");
    // The cluster name the in-cluster overlay gives the agent.
    let objects = &all["in-cluster"];
    let agent = container(
        &pod_spec_of(objects, "DaemonSet", "podid-agent").containers,
        "agent",
    );
    assert_eq!(
        flag(&expanded_args(objects, agent), "--cluster-name").as_deref(),
        Some(cluster),
        "the README's CLUSTER is the overlay's cluster-name"
    );
    let vars = BTreeMap::from([("CLUSTER".to_owned(), cluster.to_owned())]);
    // The server's own parser reads the file the README writes.
    let keys = podid_server::keys::KeyRing::parse(&expand_shell(&readme[start..end], &vars))
        .unwrap_or_else(|e| panic!("the README's keys.toml does not load: {e}"));
    // The agents hold no key (they send their projected tokens), so the
    // file has no node key at all.
    assert!(
        !keys
            .ids()
            .iter()
            .filter_map(|id| keys.get(id))
            .any(|k| k.role.as_str() == "node"),
        "the README's keys.toml still has a node key"
    );
    let (secret, role) = ("podid-webhook-key", "reader");
    let id = key_id_of_secret(&readme, secret);
    let key = keys
        .get(&id)
        .unwrap_or_else(|| panic!("{secret}: no key {id} in the README's keys.toml"));
    assert_eq!(key.role.as_str(), role, "{secret}: {id}");
    assert!(
        key.clusters.allows(cluster),
        "{secret}: {id} acts for {cluster}"
    );
    assert!(
        !key.clusters.allows("another-cluster"),
        "{secret}: key {id} is not scoped to its cluster (clusters = [...])"
    );
    let admin = keys.get("PODIDADMIN").expect("the admin key");
    assert_eq!(admin.role.as_str(), "admin");
    assert!(
        admin.clusters.allows("another-cluster"),
        "the admin key acts for every cluster"
    );
}
