//! Rendering the overlays into typed objects, and the lookups the checks share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Secret, Service,
    ServiceAccount, ServiceSpec, Volume, VolumeMount,
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

pub(crate) const NAMESPACE: &str = "podid-system";
pub(crate) const OVERLAYS: [&str; 3] = ["in-cluster", "central-server", "in-cluster-postgres"];
pub(crate) const IN_CLUSTER_ENDPOINT: &str = "https://podid-server.podid-system.svc";
pub(crate) const CENTRAL_ENDPOINT: &str = "https://podid.example.com";
/// Secrets the operator creates; the manifests only reference them.
/// (The agents hold no key: they authenticate with their projected tokens.)
pub(crate) const OPERATOR_SECRETS: [&str; 5] = [
    "podid-server-keys",
    "podid-server-tls",
    "podid-webhook-tls",
    "podid-webhook-key",
    "podid-server-aws",
];
/// ConfigMaps the operator creates (not secret, but install-specific).
pub(crate) const OPERATOR_CONFIG_MAPS: [&str; 1] = ["podid-ca"];

// ---------------------------------------------------------------- rendering

pub(crate) fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn deploy() -> PathBuf {
    workspace().join("deploy")
}

/// Defines [`Object`] (every object kind the manifests may contain, typed),
/// its `meta` and `kind`, and `typed_object`, from one list of apiVersion and kind.
macro_rules! object_kinds {
    ($($api_version:literal $kind:ident,)+) => {
        /// Every object kind the manifests may contain, typed.
        #[derive(Debug)]
        pub(crate) enum Object {
            $($kind($kind),)+
        }

        impl Object {
            pub(crate) fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)+
                }
            }

            pub(crate) fn kind(&self) -> &'static str {
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
    pub(crate) fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    pub(crate) fn is_cluster_scoped(&self) -> bool {
        matches!(
            self,
            Object::Namespace(_)
                | Object::MutatingWebhookConfiguration(_)
                | Object::ClusterRole(_)
                | Object::ClusterRoleBinding(_)
        )
    }

    /// The pod template of a workload: (workload name, pod spec).
    pub(crate) fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            Object::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            _ => None,
        }
    }
}

/// The first place two JSON values differ, for a readable failure.
pub(crate) fn first_difference(path: &str, original: &Value, typed: &Value) -> Option<String> {
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
pub(crate) fn typed<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> T {
    let object: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&object).expect("serialize");
    if let Some(d) = first_difference("", doc, &back) {
        panic!("{what}: {d}");
    }
    object
}

pub(crate) fn parse_object(doc: &Value, overlay: &str) -> Object {
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
pub(crate) fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every overlay, rendered; `None` when kubectl is missing outside CI.
pub(crate) fn rendered() -> Option<&'static BTreeMap<String, Vec<Object>>> {
    static RENDERED: OnceLock<Option<BTreeMap<String, Vec<Object>>>> = OnceLock::new();
    RENDERED.get_or_init(render_all).as_ref()
}

pub(crate) fn render_all() -> Option<BTreeMap<String, Vec<Object>>> {
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

pub(crate) fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> Option<&'a Object> {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
}

pub(crate) fn deployment<'a>(objects: &'a [Object], name: &str) -> Option<&'a Deployment> {
    objects.iter().find_map(|o| match o {
        Object::Deployment(d) if o.name() == name => Some(d),
        _ => None,
    })
}

pub(crate) fn daemonset<'a>(objects: &'a [Object], name: &str) -> Option<&'a DaemonSet> {
    objects.iter().find_map(|o| match o {
        Object::DaemonSet(d) if o.name() == name => Some(d),
        _ => None,
    })
}

pub(crate) fn service<'a>(objects: &'a [Object], name: &str) -> Option<&'a Service> {
    objects.iter().find_map(|o| match o {
        Object::Service(s) if o.name() == name => Some(s),
        _ => None,
    })
}

pub(crate) fn pod_spec_of<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a PodSpec {
    find(objects, kind, name)
        .and_then(Object::pod_spec)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub(crate) fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Every container and init container of every workload: (workload, container).
pub(crate) fn all_containers(objects: &[Object]) -> Vec<(String, &Container)> {
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

/// What the kubelet puts in an env var from `status.hostIP` or `status.podIP`
/// (a documentation address, RFC 5737).
pub(crate) const STAND_IN_IP: &str = "192.0.2.1";

/// The value of an env var as the container sees it: a literal, a key of a
/// rendered ConfigMap, or [`STAND_IN_IP`] for the pod's or node's address.
/// `None` for a Secret (or a missing reference).
pub(crate) fn env_value(objects: &[Object], container: &Container, var: &str) -> Option<String> {
    let env = container.env.iter().flatten().find(|e| e.name == var)?;
    if let Some(value) = &env.value {
        return Some(value.clone());
    }
    if let Some(field) = env.value_from.as_ref()?.field_ref.as_ref() {
        return matches!(field.field_path.as_str(), "status.hostIP" | "status.podIP")
            .then(|| STAND_IN_IP.to_owned());
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
pub(crate) fn expanded_args(objects: &[Object], container: &Container) -> Vec<String> {
    container
        .args
        .iter()
        .flatten()
        .map(|arg| expand(objects, container, arg))
        .collect()
}

/// An env var's value after Kubernetes' `$(VAR)` expansion (a literal may
/// name variables defined before it); `None` as for [`env_value`].
pub(crate) fn expanded_env(objects: &[Object], container: &Container, var: &str) -> Option<String> {
    env_value(objects, container, var).map(|v| expand(objects, container, &v))
}

/// `text` with each `$(VAR)` replaced by the container's value of VAR.
fn expand(objects: &[Object], container: &Container, text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(')')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unclosed $( in {text}"));
        let var = &rest[start + 2..end];
        let value = env_value(objects, container, var).unwrap_or_else(|| {
            panic!(
                "container {}: {text} references ${var}, which it does not define",
                container.name
            )
        });
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The value of `--flag=value` or `--flag value`.
/// `Some` of the given words as owned strings: what a list field of a k8s object holds.
pub(crate) fn owned(words: &[&str]) -> Option<Vec<String>> {
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

/// Container `name` of the Deployment `workload`, whose pods the Service `spec` must select.
pub(crate) fn selected_container<'a>(
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
pub(crate) fn mount_holding<'a>(c: &'a Container, path: &str) -> &'a VolumeMount {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| path.starts_with(&format!("{}/", m.mount_path)))
        .unwrap_or_else(|| panic!("{}: {path} is on no volume", c.name))
}

/// The pod's volume that `mount` mounts.
pub(crate) fn mounted_volume<'a>(pod: &'a PodSpec, mount: &VolumeMount) -> &'a Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("no volume {}", mount.name))
}

/// The capabilities the container's security context sets.
pub(crate) fn capabilities(c: &Container) -> &Capabilities {
    c.security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .unwrap_or_else(|| panic!("{}: no capabilities", c.name))
}

pub(crate) fn flag(args: &[String], name: &str) -> Option<String> {
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
pub(crate) fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
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

pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let labels = labels.cloned().unwrap_or_default();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(crate) fn label_selector_selects(
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
pub(crate) fn endpoint_of(
    objects: &[Object],
    kind: &str,
    workload: &str,
    container_name: &str,
) -> String {
    let spec = pod_spec_of(objects, kind, workload);
    let c = container(&spec.containers, container_name);
    flag(&expanded_args(objects, c), "--endpoint")
        .unwrap_or_else(|| panic!("{workload} has no --endpoint"))
}

/// The image the base's kustomization sets: `newName` (or `name`) `:newTag`.
pub(crate) fn release_image() -> String {
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
