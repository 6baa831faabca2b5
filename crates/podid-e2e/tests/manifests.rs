//! The Kubernetes manifests in `deploy/`: every overlay is rendered with
//! `kubectl kustomize` (offline), each object is read into its k8s-openapi type
//! (an unknown kind or a field k8s-openapi does not know fails), and the
//! invariants the design asks for are checked on the typed objects.
//!
//! Without kubectl the tests are skipped with a message, and so is the flag
//! cross-check without a fresh podid build or when `podid VERB --help` fails,
//! unless `CI` is set: then they fail (`skip_or_fail`). `KUBECTL` names
//! another kubectl; `PODID_BIN` another podid binary for the flag cross-check
//! (default `target/debug/podid`, trusted only when newer than the sources).
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Probe, Secret,
    Service, ServiceAccount, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podid_test_support::skip_or_fail;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const NAMESPACE: &str = "podid-system";
const OVERLAYS: [&str; 3] = ["in-cluster", "central-server", "in-cluster-postgres"];
const IN_CLUSTER_ENDPOINT: &str = "http://podid-server.podid-system.svc:8080";
const CENTRAL_ENDPOINT: &str = "https://podid.example.com";
/// Secrets the operator creates; the manifests only reference them.
const OPERATOR_SECRETS: [&str; 5] = [
    "podid-server-keys",
    "podid-webhook-tls",
    "podid-webhook-key",
    "podid-agent-key",
    "podid-server-aws",
];

// ---------------------------------------------------------------- rendering

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    workspace().join("deploy")
}

/// Defines [`Object`] (every object kind the manifests may contain, typed),
/// its `meta` and `kind`, and `typed_object`, from one list of apiVersion and kind.
macro_rules! object_kinds {
    ($($api_version:literal $kind:ident,)+) => {
        /// Every object kind the manifests may contain, typed.
        #[derive(Debug)]
        enum Object {
            $($kind($kind),)+
        }

        impl Object {
            fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)+
                }
            }

            fn kind(&self) -> &'static str {
                match self {
                    $(Object::$kind(_) => stringify!($kind),)+
                }
            }
        }

        /// `doc` read into the type of its apiVersion and kind; `None` for a kind not listed.
        fn typed_object(doc: &Value, api_version: &str, kind: &str, what: &str) -> Option<Object> {
            match (api_version, kind) {
                $(($api_version, stringify!($kind)) => Some(Object::$kind(typed(doc, what))),)+
                _ => None,
            }
        }
    };
}

object_kinds! {
    "v1" Namespace,
    "v1" ServiceAccount,
    "v1" ConfigMap,
    "v1" Secret,
    "v1" Service,
    "v1" PersistentVolumeClaim,
    "apps/v1" Deployment,
    "apps/v1" DaemonSet,
    "policy/v1" PodDisruptionBudget,
    "admissionregistration.k8s.io/v1" MutatingWebhookConfiguration,
    "networking.k8s.io/v1" NetworkPolicy,
    "rbac.authorization.k8s.io/v1" Role,
    "rbac.authorization.k8s.io/v1" RoleBinding,
    "rbac.authorization.k8s.io/v1" ClusterRole,
    "rbac.authorization.k8s.io/v1" ClusterRoleBinding,
}

impl Object {
    fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    fn is_cluster_scoped(&self) -> bool {
        matches!(
            self,
            Object::Namespace(_)
                | Object::MutatingWebhookConfiguration(_)
                | Object::ClusterRole(_)
                | Object::ClusterRoleBinding(_)
        )
    }

    /// The pod template of a workload: (workload name, pod spec).
    fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            Object::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            _ => None,
        }
    }
}

/// The first place two JSON values differ, for a readable failure.
fn first_difference(path: &str, original: &Value, typed: &Value) -> Option<String> {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    None => {
                        return Some(format!(
                            "{path}.{k} is not a field k8s-openapi knows (a typo?)"
                        ))
                    }
                    Some(vb) => {
                        if let Some(d) = first_difference(&format!("{path}.{k}"), va, vb) {
                            return Some(d);
                        }
                    }
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("{path}.{k} appeared in the round trip"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb)),
        _ if original == typed => None,
        _ => Some(format!("{path}: {original} became {typed}")),
    }
}

/// Reads one document into its type and back: what does not survive the round
/// trip is a field Kubernetes would reject or drop.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> T {
    let object: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&object).expect("serialize");
    if let Some(d) = first_difference("", doc, &back) {
        panic!("{what}: {d}");
    }
    object
}

fn parse_object(doc: &Value, overlay: &str) -> Object {
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    let what = format!(
        "{overlay}: {kind} {}",
        doc["metadata"]["name"].as_str().unwrap_or("?")
    );
    typed_object(doc, api_version, kind, &what).unwrap_or_else(|| {
        panic!("{what}: unexpected kind {api_version}/{kind}: add it to this test deliberately")
    })
}

/// Splits `kubectl kustomize` output into its documents.
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every overlay, rendered; `None` when kubectl is missing outside CI.
fn rendered() -> Option<&'static BTreeMap<String, Vec<Object>>> {
    static RENDERED: OnceLock<Option<BTreeMap<String, Vec<Object>>>> = OnceLock::new();
    RENDERED.get_or_init(render_all).as_ref()
}

fn render_all() -> Option<BTreeMap<String, Vec<Object>>> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let overlays_dir = deploy().join("overlays");
    let mut names: Vec<String> = std::fs::read_dir(&overlays_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", overlays_dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for expected in OVERLAYS {
        assert!(
            names.iter().any(|n| n == expected),
            "deploy/overlays/{expected} is missing"
        );
    }
    let mut all = BTreeMap::new();
    for name in names {
        let dir = overlays_dir.join(&name);
        let output = match Command::new(&kubectl).arg("kustomize").arg(&dir).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                skip_or_fail(&format!(
                    "`{kubectl}` not found ({e}); the manifest tests need kubectl"
                ));
                return None;
            }
            Err(e) => panic!("cannot run `{kubectl} kustomize`: {e}"),
        };
        assert!(
            output.status.success(),
            "kubectl kustomize deploy/overlays/{name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let yaml = String::from_utf8(output.stdout).expect("UTF-8 output");
        let objects: Vec<Object> = documents(&yaml)
            .iter()
            .map(|doc| parse_object(doc, &name))
            .collect();
        assert!(!objects.is_empty(), "{name} renders nothing");
        all.insert(name, objects);
    }
    Some(all)
}

// ---------------------------------------------------------------- lookups

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> Option<&'a Object> {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
}

fn deployment<'a>(objects: &'a [Object], name: &str) -> Option<&'a Deployment> {
    objects.iter().find_map(|o| match o {
        Object::Deployment(d) if o.name() == name => Some(d),
        _ => None,
    })
}

fn daemonset<'a>(objects: &'a [Object], name: &str) -> Option<&'a DaemonSet> {
    objects.iter().find_map(|o| match o {
        Object::DaemonSet(d) if o.name() == name => Some(d),
        _ => None,
    })
}

fn service<'a>(objects: &'a [Object], name: &str) -> Option<&'a Service> {
    objects.iter().find_map(|o| match o {
        Object::Service(s) if o.name() == name => Some(s),
        _ => None,
    })
}

fn pod_spec_of<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a PodSpec {
    find(objects, kind, name)
        .and_then(Object::pod_spec)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Every container and init container of every workload: (workload, container).
fn all_containers(objects: &[Object]) -> Vec<(String, &Container)> {
    let mut out = Vec::new();
    for o in objects {
        if let Some(spec) = o.pod_spec() {
            let label = format!("{} {}", o.kind(), o.name());
            for c in spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
            {
                out.push((format!("{label}/{}", c.name), c));
            }
        }
    }
    out
}

/// The value of an env var as the container sees it: a literal, or a key of
/// a rendered ConfigMap. `None` for a Secret (or a missing reference).
fn env_value(objects: &[Object], container: &Container, var: &str) -> Option<String> {
    let env = container.env.iter().flatten().find(|e| e.name == var)?;
    if let Some(value) = &env.value {
        return Some(value.clone());
    }
    let cm_ref = env.value_from.as_ref()?.config_map_key_ref.as_ref()?;
    objects.iter().find_map(|o| match o {
        Object::ConfigMap(cm) if o.name() == cm_ref.name => {
            cm.data.as_ref()?.get(&cm_ref.key).cloned()
        }
        _ => None,
    })
}

/// The container's args after Kubernetes' `$(VAR)` expansion. A reference to
/// a variable the container does not define would reach the binary verbatim.
fn expanded_args(objects: &[Object], container: &Container) -> Vec<String> {
    container
        .args
        .iter()
        .flatten()
        .map(|arg| {
            let mut out = String::new();
            let mut rest = arg.as_str();
            while let Some(start) = rest.find("$(") {
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find(')')
                    .map(|e| start + e)
                    .unwrap_or_else(|| panic!("unclosed $( in {arg}"));
                let var = &rest[start + 2..end];
                let value = env_value(objects, container, var).unwrap_or_else(|| {
                    panic!(
                        "container {}: {arg} references ${var}, which it does not define",
                        container.name
                    )
                });
                out.push_str(&value);
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// The value of `--flag=value` or `--flag value`.
/// `Some` of the given words as owned strings: what a list field of a k8s object holds.
fn owned(words: &[&str]) -> Option<Vec<String>> {
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

/// Container `name` of the Deployment `workload`, whose pods the Service `spec` must select.
fn selected_container<'a>(
    objects: &'a [Object],
    spec: &ServiceSpec,
    workload: &str,
    name: &str,
    overlay: &str,
) -> &'a Container {
    let deploy = deployment(objects, workload)
        .unwrap_or_else(|| panic!("{overlay}: no Deployment {workload}"));
    let template = &deploy.spec.as_ref().expect("spec").template;
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    assert!(
        selects(spec.selector.as_ref().expect("selector"), labels),
        "{overlay}: the Service selects no pod of {workload}"
    );
    container(&template.spec.as_ref().expect("pod spec").containers, name)
}

/// The container's mount whose directory holds the file `path`.
fn mount_holding<'a>(c: &'a Container, path: &str) -> &'a VolumeMount {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| path.starts_with(&format!("{}/", m.mount_path)))
        .unwrap_or_else(|| panic!("{}: {path} is on no volume", c.name))
}

/// The pod's volume that `mount` mounts.
fn mounted_volume<'a>(pod: &'a PodSpec, mount: &VolumeMount) -> &'a Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("no volume {}", mount.name))
}

/// The capabilities the container's security context sets.
fn capabilities(c: &Container) -> &Capabilities {
    c.security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .unwrap_or_else(|| panic!("{}: no capabilities", c.name))
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&prefix) {
            Some(v.to_owned())
        } else if a == name {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

/// The container port a probe or Service port names, as a number.
fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .unwrap_or_else(|| panic!("container {} has no port named {name}", container.name)),
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let labels = labels.cloned().unwrap_or_default();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn label_selector_selects(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "only matchLabels selectors are expected"
    );
    selects(selector.match_labels.as_ref().expect("matchLabels"), labels)
}

/// The endpoint the agent or the webhook is given, after expansion.
fn endpoint_of(objects: &[Object], kind: &str, workload: &str, container_name: &str) -> String {
    let spec = pod_spec_of(objects, kind, workload);
    let c = container(&spec.containers, container_name);
    flag(&expanded_args(objects, c), "--endpoint")
        .unwrap_or_else(|| panic!("{workload} has no --endpoint"))
}

/// The image the base's kustomization sets: `newName` (or `name`) `:newTag`.
fn release_image() -> String {
    let text = std::fs::read_to_string(deploy().join("base/kustomization.yaml"))
        .expect("base kustomization");
    let k: Value = serde_norway::from_str(&text).expect("base kustomization parses");
    let images = k["images"]
        .as_array()
        .expect("base kustomization sets images");
    assert_eq!(images.len(), 1, "one image for every part");
    let image = &images[0];
    let name = image["newName"]
        .as_str()
        .or(image["name"].as_str())
        .expect("image name");
    let tag = image["newTag"].as_str().expect("image newTag");
    format!("{name}:{tag}")
}

// ---------------------------------------------------------------- tests

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
        // The node key is a "node" key from the operator's Secret.
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let env = agent
                .env
                .iter()
                .flatten()
                .find(|e| e.name == var)
                .unwrap_or_else(|| panic!("{var}"));
            let secret = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("from a Secret");
            assert_eq!(secret.name, "podid-agent-key", "{overlay}: {var}");
        }
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
fn no_part_gets_kubernetes_api_access() {
    let Some(all) = rendered() else { return };
    for (overlay, objects) in all {
        for o in objects {
            assert!(
                !matches!(
                    o,
                    Object::Role(_)
                        | Object::RoleBinding(_)
                        | Object::ClusterRole(_)
                        | Object::ClusterRoleBinding(_)
                ),
                "{overlay}: {} {}: podid's parts use podid's API keys, not the Kubernetes API",
                o.kind(),
                o.name()
            );
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
        for must in ["podid-webhook-tls", "podid-webhook-key", "podid-agent-key"] {
            assert!(referenced.contains(must), "{overlay}: {must} not used");
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

        // http://NAME.NAMESPACE.svc:PORT is a rendered Service reaching the server's port.
        let url = IN_CLUSTER_ENDPOINT.strip_prefix("http://").expect("http");
        let (host, port) = url.split_once(':').expect("port");
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

#[test]
fn args_use_flags_the_binary_has() {
    let Some(all) = rendered() else { return };
    // An explicit PODID_BIN is trusted; the default build only when it is
    // newer than every source file (a stale binary would miss new flags).
    let explicit = std::env::var_os("PODID_BIN").map(PathBuf::from);
    let bin = explicit.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join("debug/podid")
    });
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        skip_or_fail(&format!(
            "{} not built; flags not cross-checked (cargo build -p podid)",
            bin.display()
        ));
        return;
    };
    if explicit.is_none() && newest_source(&workspace().join("crates")) > built {
        skip_or_fail(&format!(
            "{} is older than the sources; flags not cross-checked (cargo build -p podid)",
            bin.display()
        ));
        return;
    }
    // (executable, subcommand path) → flags used.
    let mut checked = BTreeMap::<(String, Vec<String>), BTreeSet<String>>::new();
    for objects in all.values() {
        for (label, c) in all_containers(objects) {
            let args = c.args.clone().unwrap_or_default();
            let path: Vec<String> = args
                .iter()
                .take_while(|a| !a.starts_with('-'))
                .cloned()
                .collect();
            let flags: BTreeSet<String> = args
                .iter()
                .filter(|a| a.starts_with("--"))
                .map(|a| a.split('=').next().unwrap_or(a).to_owned())
                .collect();
            // The image's /podid (a subcommand first) or its /podid-agent.
            let program = match c.command.as_deref() {
                Some([command]) => command.trim_start_matches('/').to_owned(),
                _ => "podid".to_owned(),
            };
            assert!(
                program != "podid" || !path.is_empty(),
                "{label}: args start with a subcommand"
            );
            checked.entry((program, path)).or_default().extend(flags);
        }
    }
    for ((program, path), flags) in checked {
        let output = Command::new(bin.with_file_name(&program))
            .args(&path)
            .arg("--help")
            .output()
            .expect("run it");
        if !output.status.success() {
            skip_or_fail(&format!(
                "`{program} {} --help` fails: this binary has no such subcommand; flags unchecked\n{}",
                path.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        }
        let help = String::from_utf8_lossy(&output.stdout);
        let known: BTreeSet<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_owned)
            .collect();
        for f in flags {
            assert!(
                known.contains(&f),
                "`{program} {}` has no flag {f}; it has {known:?}",
                path.join(" ")
            );
        }
    }
}

/// The newest modification time of a `.rs` file below `dir`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                newest = newest.max(newest_source(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

#[test]
fn dockerfile_builds_podid_and_podid_agent_into_a_non_root_distroless_image() {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS build"),
        "build stage: {}",
        froms[0]
    );
    assert!(
        froms[1].contains("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime stage: {}",
        froms[1]
    );
    assert!(
        text.contains("cargo build --profile dist --locked -p podid"),
        "a locked build of podid's shipped profile"
    );
    let runtime = &lines[lines
        .iter()
        .position(|l| *l == froms[1])
        .expect("runtime stage")..];
    let copies: Vec<&&str> = runtime.iter().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies.len(),
        2,
        "the runtime stage copies the two executables only: {copies:?}"
    );
    for (copy, target) in copies.iter().zip([" /podid", " /podid-agent"]) {
        assert!(
            copy.starts_with("COPY --from=build ") && copy.ends_with(target),
            "{copy}"
        );
    }
    assert!(
        text.contains("-p podid-agent-cli"),
        "the agent-only executable is built"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.contains(" 0") && !user.contains("root"),
        "non-root: {user}"
    );
    assert_eq!(runtime.last().copied(), Some(r#"ENTRYPOINT ["/podid"]"#));

    let ignore = std::fs::read_to_string(workspace().join(".dockerignore")).expect(".dockerignore");
    let entries: BTreeSet<&str> = ignore.lines().map(str::trim).collect();
    for must in ["target/", ".venv/", "node_modules/"] {
        assert!(entries.contains(must), ".dockerignore lacks {must}");
    }
}
