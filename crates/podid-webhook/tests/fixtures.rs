//! The mutation on AdmissionReview fixtures (see tests/fixtures/README.md):
//! each review goes through the pure path — parse, classify, mutate, shape the
//! response, serialize — and the returned JSONPatch is applied to the
//! review's pod with the `json-patch` crate; the assertions are on the
//! resulting typed Pod.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use podid_webhook::mutate;
use podid_webhook::review::{parse_review, Admission, AdmissionReviewResponse};
use podid_webhook::{
    AssociationLookup, CertStore, MutationSettings, Webhook, WebhookError, WebhookMetrics,
    WebhookSettings,
};
use serde_json::Value;

/// The one service account without an association.
const UNASSOCIATED: &str = "unassociated";

/// What EKS Pod Identity injects, written here as AWS documents it — never
/// taken from `podid_webhook::mutate`'s constants, so a wrong constant there
/// fails these tests. Sources:
/// - EKS User Guide, "Understand how EKS Pod Identity works"
///   (docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html): the
///   two env vars, the token file, the audience `pods.eks.amazonaws.com`;
/// - AWS SDKs and Tools Reference Guide, "Container credential provider"
///   (docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html):
///   EKS sets `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
///   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`;
/// - the stock webhook, github.com/aws/amazon-eks-pod-identity-webhook:
///   `main.go`'s `--container-credentials-*` flag defaults (audience, mount
///   path, volume name, token path, full URI), `pkg/constants.go`
///   (`DefaultTokenExpiration` 86400, `DefaultMinTokenExpiration` 79200,
///   `MinTokenExpiration` 600), `pkg/handler/handler.go` (the
///   `eks.amazonaws.com/pod-identity: enabled` label, the Windows path
///   `"C:" + path with / turned into \`);
/// - the IPv6 agent address: aws/secrets-store-csi-driver-provider-aws
///   (`podIdentityAgentEndpointIPv6`) and the AWS SDK for Rust's ECS provider
///   docs (EKS Pod Identity addresses 169.254.170.23 and fd00:ec2::23);
/// - the kube-apiserver's bounds on `expirationSeconds`
///   (kubernetes `pkg/apis/core/validation`: "may not specify a duration less
///   than 10 minutes", "… larger than 2^32 seconds").
mod eks {
    use std::ops::RangeInclusive;

    pub const FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    pub const TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    pub const FULL_URI: &str = "http://169.254.170.23/v1/credentials";
    pub const FULL_URI_IPV6: &str = "http://[fd00:ec2::23]/v1/credentials";
    pub const TOKEN_FILE: &str =
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
    pub const WINDOWS_TOKEN_FILE: &str =
        r"C:\var\run\secrets\pods.eks.amazonaws.com\serviceaccount\eks-pod-identity-token";
    pub const MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
    pub const VOLUME_NAME: &str = "eks-pod-identity-token";
    pub const TOKEN_PATH: &str = "eks-pod-identity-token";
    pub const AUDIENCE: &str = "pods.eks.amazonaws.com";
    pub const LABEL: &str = "eks.amazonaws.com/pod-identity";
    /// The default lifetime, jittered down from 86400 (22 h to 24 h).
    pub const DEFAULT_EXPIRATION: RangeInclusive<i64> = 79_200..=86_400;
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the webhook answered for one fixture, and the pod before and after the patch.
struct Outcome {
    response: AdmissionReviewResponse,
    wire: Value,
    before: Pod,
    after: Pod,
    patch_ops: usize,
}

impl Outcome {
    fn containers(&self) -> Vec<(&Container, &Container)> {
        let b = self.before.spec.as_ref().unwrap();
        let a = self.after.spec.as_ref().unwrap();
        let mut pairs: Vec<(&Container, &Container)> =
            b.containers.iter().zip(a.containers.iter()).collect();
        if let (Some(bi), Some(ai)) = (b.init_containers.as_ref(), a.init_containers.as_ref()) {
            pairs.extend(bi.iter().zip(ai.iter()));
        }
        pairs
    }

    fn container(&self, name: &str) -> &Container {
        let spec = self.after.spec.as_ref().unwrap();
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    fn volume_expiration(&self) -> i64 {
        let vols = self.after.spec.as_ref().unwrap().volumes.as_ref().unwrap();
        let ours: Vec<_> = vols.iter().filter(|v| v.name == eks::VOLUME_NAME).collect();
        assert_eq!(ours.len(), 1, "exactly one {} volume", eks::VOLUME_NAME);
        let sources = ours[0]
            .projected
            .as_ref()
            .unwrap()
            .sources
            .as_ref()
            .unwrap();
        assert_eq!(sources.len(), 1);
        let token = sources[0].service_account_token.as_ref().unwrap();
        assert_eq!(token.audience.as_deref(), Some(eks::AUDIENCE));
        assert_eq!(token.path, eks::TOKEN_PATH);
        token.expiration_seconds.unwrap()
    }

    fn label(&self) -> Option<&str> {
        self.after
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(eks::LABEL))
            .map(String::as_str)
    }
}

/// Runs one fixture through the pure path.
fn admit(name: &str) -> Outcome {
    let body = fixture(name);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let review = parse_review(&body).unwrap();
    let response = match review.admission() {
        Admission::Pod(pod) => {
            let has_association = pod.service_account != UNASSOCIATED;
            let mutation = pod.mutation(has_association, &MutationSettings::default());
            AdmissionReviewResponse::allow(review.uid(), Some(&mutation.patch), mutation.warnings)
        }
        Admission::Ignore(_) => AdmissionReviewResponse::allow(review.uid(), None, Vec::new()),
        Admission::Undecodable(why) => panic!("{name}: {why}"),
    };
    // What goes over the wire, read back as the apiserver reads it.
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(wire["kind"], "AdmissionReview");
    assert_eq!(wire["response"]["uid"], raw["request"]["uid"]);
    assert_eq!(wire["response"]["allowed"], true);
    let has_patch = wire["response"].get("patch").is_some();
    assert_eq!(has_patch, wire["response"].get("patchType").is_some());
    if has_patch {
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        assert!(
            wire["response"]["patch"].is_string(),
            "patch is base64 text"
        );
    }
    let response: AdmissionReviewResponse = serde_json::from_value(wire.clone()).unwrap();
    let patch = response.patch().unwrap();
    let mut doc = raw["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch)
        .unwrap_or_else(|e| panic!("{name}: patch does not apply: {e}"));
    // Other kinds (a Deployment) are compared as JSON only.
    let is_pod = raw["request"]["object"]["kind"] == "Pod";
    if !is_pod {
        assert_eq!(doc, raw["request"]["object"]);
    }
    let as_pod = |v: Value| {
        if is_pod {
            serde_json::from_value::<Pod>(v).unwrap()
        } else {
            Pod::default()
        }
    };
    let before = as_pod(raw["request"]["object"].clone());
    let after = as_pod(doc);
    Outcome {
        response,
        wire,
        before,
        after,
        patch_ops: patch.0.len(),
    }
}

/// `c` has exactly one of each env var (with our values) and one read-only mount.
fn assert_injected(c: &Container, token_file: &str) {
    let env = c.env.as_deref().unwrap_or_default();
    for (name, value) in [
        (eks::FULL_URI_ENV, eks::FULL_URI),
        (eks::TOKEN_FILE_ENV, token_file),
    ] {
        let found: Vec<_> = env.iter().filter(|e| e.name == name).collect();
        assert_eq!(found.len(), 1, "{}: one {name}", c.name);
        assert_eq!(found[0].value.as_deref(), Some(value), "{}: {name}", c.name);
    }
    assert_mounted(c);
}

fn assert_mounted(c: &Container) {
    let mounts: Vec<_> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == eks::VOLUME_NAME)
        .collect();
    assert_eq!(mounts.len(), 1, "{}: one mount", c.name);
    assert_eq!(mounts[0].mount_path, eks::MOUNT_PATH);
    assert_eq!(mounts[0].read_only, Some(true));
}

fn assert_not_injected(c: &Container) {
    assert!(
        !c.env
            .iter()
            .flatten()
            .any(|e| e.name == eks::TOKEN_FILE_ENV),
        "{}: no token env",
        c.name
    );
    assert!(
        !c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == eks::VOLUME_NAME),
        "{}: no mount",
        c.name
    );
}

/// The pod with what the webhook adds taken out again; empty lists and maps
/// read as absent. Must equal the pod before the patch.
fn strip(pod: &Pod, injected_env: &[(&str, &str)]) -> Pod {
    let mut p = pod.clone();
    if let Some(labels) = p.metadata.labels.as_mut() {
        labels.remove(eks::LABEL);
    }
    p.metadata.labels = p.metadata.labels.filter(|l| !l.is_empty());
    let spec = p.spec.as_mut().unwrap();
    if let Some(v) = spec.volumes.as_mut() {
        v.retain(|v| v.name != eks::VOLUME_NAME);
    }
    spec.volumes = spec.volumes.take().filter(|v| !v.is_empty());
    let clean = |c: &mut Container| {
        if let Some(env) = c.env.as_mut() {
            env.retain(|e| {
                !injected_env
                    .iter()
                    .any(|(n, v)| e.name == *n && e.value.as_deref() == Some(*v))
            });
        }
        c.env = c.env.take().filter(|e| !e.is_empty());
        if let Some(m) = c.volume_mounts.as_mut() {
            m.retain(|m| m.name != eks::VOLUME_NAME);
        }
        c.volume_mounts = c.volume_mounts.take().filter(|m| !m.is_empty());
    };
    spec.containers.iter_mut().for_each(clean);
    spec.init_containers.iter_mut().flatten().for_each(clean);
    p
}

fn linux_env() -> [(&'static str, &'static str); 2] {
    [
        (eks::FULL_URI_ENV, eks::FULL_URI),
        (eks::TOKEN_FILE_ENV, eks::TOKEN_FILE),
    ]
}

/// Common checks for a mutated pod: only additions, and a second pass finds nothing to do.
fn assert_only_additions_and_idempotent(o: &Outcome, env: &[(&str, &str)]) {
    assert_eq!(strip(&o.after, env), o.before, "the patch only adds");
    let again = mutate::mutate(&o.after, true, "another-seed", &MutationSettings::default());
    assert!(again.is_empty(), "second pass: {:?}", again.patch);
}

#[test]
fn plain_pod_gets_whole_arrays() {
    let o = admit("plain-pod.json");
    assert!(
        o.before.metadata.labels.is_none() && o.before.spec.as_ref().unwrap().volumes.is_none()
    );
    assert_eq!(o.label(), Some("enabled"));
    assert!(eks::DEFAULT_EXPIRATION.contains(&o.volume_expiration()));
    assert_injected(o.container("app"), eks::TOKEN_FILE);
    // Env order: the URI first, then the token file.
    let env = o.container("app").env.as_ref().unwrap();
    assert_eq!(
        env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        [eks::FULL_URI_ENV, eks::TOKEN_FILE_ENV]
    );
    assert!(o.response.response.warnings.is_empty());
    // label, volume, env, mount: four whole-value adds.
    assert_eq!(o.patch_ops, 4);
    let text = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            o.wire["response"]["patch"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    for path in [
        "/metadata/labels",
        "/spec/volumes",
        "/spec/containers/0/env",
        "/spec/containers/0/volumeMounts",
    ] {
        assert!(
            text.contains(&format!("\"path\":\"{path}\"")),
            "{path} in {text}"
        );
    }
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn jitter_is_reproducible_per_admission() {
    let a = admit("plain-pod.json").volume_expiration();
    let b = admit("plain-pod.json").volume_expiration();
    assert_eq!(a, b, "same review, same lifetime");
    // A different admission of the same pod (another request uid) may differ;
    // the value depends only on the review.
    let other = admit("deployment-pod.json").volume_expiration();
    assert!(eks::DEFAULT_EXPIRATION.contains(&other));
}

#[test]
fn own_env_volumes_and_mounts_are_kept() {
    let o = admit("own-env-volumes-mounts.json");
    let app = o.container("app");
    assert_injected(app, eks::TOKEN_FILE);
    let env = app.env.as_ref().unwrap();
    assert_eq!(env[0].name, "AWS_REGION");
    assert_eq!(env[1].name, "POD_NAME");
    assert!(env[1].value_from.is_some());
    let vols = o.after.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    assert_eq!(vols.len(), 3);
    assert_eq!(vols[0].name, "config");
    assert!(vols[1].name.starts_with("kube-api-access-"));
    assert_eq!(
        o.after
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("tier")
            .map(String::as_str),
        Some("backend")
    );
    assert_eq!(o.label(), Some("enabled"));
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn init_containers_are_injected() {
    let o = admit("init-containers.json");
    for name in ["migrate", "wait", "app"] {
        assert_injected(o.container(name), eks::TOKEN_FILE);
    }
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn native_sidecar_keeps_its_restart_policy() {
    let o = admit("native-sidecar.json");
    let sidecar = o.container("log-shipper");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_injected(sidecar, eks::TOKEN_FILE);
    assert_injected(o.container("app"), eks::TOKEN_FILE);
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn skip_annotation_leaves_named_containers_alone() {
    let o = admit("skip-containers.json");
    assert_injected(o.container("app"), eks::TOKEN_FILE);
    for name in ["istio-proxy", "istio-init"] {
        assert_not_injected(o.container(name));
    }
    for (before, after) in o.containers() {
        if before.name != "app" {
            assert_eq!(before, after, "{} untouched", before.name);
        }
    }
    // The volume is still added (exactly once).
    assert!(eks::DEFAULT_EXPIRATION.contains(&o.volume_expiration()));
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn custom_token_expiration_is_used() {
    let o = admit("token-expiration-custom.json");
    assert_eq!(o.volume_expiration(), 3600);
    assert!(o.response.response.warnings.is_empty());
    assert_injected(o.container("app"), eks::TOKEN_FILE);
}

#[test]
fn token_expiration_below_minimum_is_raised() {
    let o = admit("token-expiration-below-minimum.json");
    assert_eq!(o.volume_expiration(), 600);
    let warnings = &o.response.response.warnings;
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("eks.amazonaws.com/token-expiration=300")
            && warnings[0].contains("600"),
        "{warnings:?}"
    );
    assert!(o.patch_ops > 0);
}

#[test]
fn host_network_pod_is_injected() {
    let o = admit("host-network.json");
    assert_eq!(o.after.spec.as_ref().unwrap().host_network, Some(true));
    assert_injected(o.container("app"), eks::TOKEN_FILE);
    assert_eq!(o.label(), Some("enabled"));
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn deployment_pod_without_a_name_is_injected() {
    let body = fixture("deployment-pod.json");
    let review = parse_review(&body).unwrap();
    let Admission::Pod(pod) = review.admission() else {
        panic!("not a pod")
    };
    assert!(pod.pod.metadata.name.is_none());
    assert_eq!(
        (pod.namespace.as_str(), pod.service_account.as_str()),
        ("shop", "s3-reader")
    );
    assert_eq!(pod.display_name(), "shop/web-7d9f8b6c5d-*");
    let o = admit("deployment-pod.json");
    assert_injected(o.container("web"), eks::TOKEN_FILE);
    assert_eq!(
        o.after.metadata.generate_name.as_deref(),
        Some("web-7d9f8b6c5d-")
    );
    let labels = o.after.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get("pod-template-hash").map(String::as_str),
        Some("7d9f8b6c5d")
    );
    assert_eq!(o.label(), Some("enabled"));
    assert_only_additions_and_idempotent(&o, &linux_env());
}

#[test]
fn windows_pod_gets_the_windows_token_path() {
    for name in ["windows-pod.json", "windows-os-field.json"] {
        let o = admit(name);
        let app = o.container("app");
        assert_injected(app, eks::WINDOWS_TOKEN_FILE);
        // Like EKS: only the env var changes; the mount path stays the Linux
        // one (checked by assert_injected), which the kubelet maps to
        // C:\var\run\... in a Windows container.
        assert_only_additions_and_idempotent(
            &o,
            &[
                (eks::FULL_URI_ENV, eks::FULL_URI),
                (eks::TOKEN_FILE_ENV, eks::WINDOWS_TOKEN_FILE),
            ],
        );
    }
}

#[test]
fn no_association_means_no_patch() {
    let o = admit("no-association.json");
    assert!(o.response.response.patch.is_none() && o.response.response.patch_type.is_none());
    assert_eq!(o.after, o.before);
    assert!(o.wire["response"].get("warnings").is_none());
}

#[test]
fn already_mutated_pod_gets_an_empty_patch() {
    let o = admit("already-mutated.json");
    assert_eq!(o.patch_ops, 0);
    assert!(o.response.response.patch.is_none());
    assert_eq!(o.after, o.before);
    assert_injected(o.container("app"), eks::TOKEN_FILE);
    assert_injected(o.container("setup"), eks::TOKEN_FILE);
}

#[test]
fn container_with_its_own_credentials_uri_keeps_it() {
    let o = admit("container-sets-credentials-uri.json");
    let custom = o.container("custom");
    let env = custom.env.as_ref().unwrap();
    assert_eq!(env.len(), 1, "no env added: {env:?}");
    assert_eq!(env[0].value.as_deref(), Some("http://127.0.0.1:9911/creds"));
    // Like EKS, the token is still mounted there.
    assert_mounted(custom);
    assert_injected(o.container("plain"), eks::TOKEN_FILE);
    assert_only_additions_and_idempotent(&o, &linux_env());
}

/// `pod` (JSON) mutated with an association: the patched pod as JSON, and
/// the mutation's warnings.
fn mutated_json(pod: Value, settings: &MutationSettings) -> (Value, Vec<String>) {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let m = mutate::mutate(&typed, true, "uid-1/default/p", settings);
    let mut doc = pod;
    json_patch::patch(&mut doc, &m.patch).unwrap();
    (doc, m.warnings)
}

/// The volume, env and mount are exactly the objects the stock webhook writes
/// in container-credentials mode (compare its
/// `pkg/handler/testdata/containercredentials/rawPodWithoutVolumes.pod.yaml`
/// expected patch, with the EKS flag defaults in place of its test values).
#[test]
fn injected_objects_are_the_ones_eks_writes() {
    let o = admit("plain-pod.json");
    let after = serde_json::to_value(&o.after).unwrap();
    let seconds = o.volume_expiration();
    assert!((79_200..=86_400).contains(&seconds), "{seconds}");
    assert_eq!(
        after["spec"]["volumes"],
        serde_json::json!([{
            "name": "eks-pod-identity-token",
            "projected": {"sources": [{"serviceAccountToken": {
                "audience": "pods.eks.amazonaws.com",
                "expirationSeconds": seconds,
                "path": "eks-pod-identity-token"
            }}]}
        }])
    );
    let app = &after["spec"]["containers"][0];
    assert_eq!(
        app["env"],
        serde_json::json!([
            {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "value": "http://169.254.170.23/v1/credentials"},
            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
             "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}
        ])
    );
    assert_eq!(
        app["volumeMounts"],
        serde_json::json!([{
            "name": "eks-pod-identity-token",
            "readOnly": true,
            "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
        }])
    );
    assert_eq!(
        after["metadata"]["labels"],
        serde_json::json!({"eks.amazonaws.com/pod-identity": "enabled"})
    );
}

/// An IPv6 cluster's agent address, as EKS documents it, reaches every
/// container; the token file does not change.
#[test]
fn ipv6_credentials_uri_is_injected_as_configured() {
    let settings = MutationSettings {
        credentials_uri: "http://[fd00:ec2::23]/v1/credentials".to_owned(),
    };
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}
    });
    let (doc, _) = mutated_json(pod, &settings);
    for path in ["/spec/initContainers/0/env", "/spec/containers/0/env"] {
        assert_eq!(
            doc.pointer(path).unwrap(),
            &serde_json::json!([
                {"name": eks::FULL_URI_ENV, "value": eks::FULL_URI_IPV6},
                {"name": eks::TOKEN_FILE_ENV, "value": eks::TOKEN_FILE}
            ]),
            "{path}"
        );
    }
}

/// `eks.amazonaws.com/token-expiration`: EKS's range is 600..=86400 seconds.
/// EKS raises a smaller value to 600, the kube-apiserver's minimum
/// (aws/amazon-eks-pod-identity-webhook `ValidateMinTokenExpiration`, its
/// testdata `rawPodMinTokenExpiration`: "0" gives 600), gives a day at the
/// most ("24hrs as that is max for EKS", its `DefaultTokenExpiration`) and
/// ignores a non-integer (the default, jittered 79200..=86400). podid lowers
/// a value above a day to 86400, with a warning, and honours an explicit
/// 86400 (EKS jitters it; 86400 is in EKS's range either way).
#[test]
fn token_expiration_annotation_gives_what_the_apiserver_accepts() {
    let expiration = |annotation: Option<&str>| {
        let mut pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}]}
        });
        if let Some(v) = annotation {
            pod["metadata"]["annotations"] =
                serde_json::json!({"eks.amazonaws.com/token-expiration": v});
        }
        let (doc, warnings) = mutated_json(pod, &MutationSettings::default());
        let source = &doc["spec"]["volumes"][0]["projected"]["sources"][0];
        let seconds = source["serviceAccountToken"]["expirationSeconds"]
            .as_i64()
            .unwrap();
        (seconds, warnings)
    };
    for (annotation, want, warned) in [
        ("600", 600, false),
        ("601", 601, false),
        ("3600", 3_600, false),
        ("86399", 86_399, false),
        ("86400", 86_400, false),
        ("599", 600, true),
        ("0", 600, true),
        ("-1", 600, true),
        ("86401", 86_400, true),
        ("4294967296", 86_400, true),
        ("99999999999", 86_400, true),
    ] {
        let (seconds, warnings) = expiration(Some(annotation));
        assert_eq!(seconds, want, "{annotation:?}");
        assert_eq!(!warnings.is_empty(), warned, "{annotation:?}: {warnings:?}");
        assert!(
            (600..=86_400).contains(&seconds),
            "{annotation:?}: {seconds} outside EKS's range"
        );
    }
    for annotation in [None, Some("1h"), Some(""), Some("3600s"), Some("1e4")] {
        let (seconds, warnings) = expiration(annotation);
        assert!(
            (79_200..=86_400).contains(&seconds),
            "{annotation:?}: {seconds} is not EKS's default 79200..=86400"
        );
        assert_eq!(warnings.is_empty(), annotation.is_none(), "{annotation:?}");
    }
}

#[test]
fn other_operations_kinds_and_dry_runs_pass_unchanged() {
    for name in [
        "update-operation.json",
        "dry-run.json",
        "other-kind-deployment.json",
    ] {
        let body = fixture(name);
        let review = parse_review(&body).unwrap();
        assert!(matches!(review.admission(), Admission::Ignore(_)), "{name}");
        let o = admit(name);
        assert!(o.response.response.patch.is_none(), "{name}");
        assert!(o.wire["response"].get("warnings").is_none(), "{name}");
    }
}

/// Every fixture again, through [`Webhook::admit`] (lookup, cache, metrics)
/// with a lookup that knows every service account but `unassociated`: the
/// same answers as the pure path.
#[tokio::test]
async fn the_webhook_answers_like_the_pure_path() {
    struct AllButOne;
    #[async_trait::async_trait]
    impl AssociationLookup for AllButOne {
        async fn has_association(&self, _ns: &str, sa: &str) -> Result<bool, WebhookError> {
            Ok(sa != UNASSOCIATED)
        }
        fn describe(&self) -> String {
            "fixture".into()
        }
    }
    let metrics = Arc::new(WebhookMetrics::new());
    let webhook = Webhook::new(
        Arc::new(AllButOne),
        Arc::new(CertStore::new(
            "/nonexistent/cert.pem",
            "/nonexistent/key.pem",
        )),
        WebhookSettings::default(),
        metrics.clone(),
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut results: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 17, "{names:?}");
    for name in &names {
        let answer = webhook.admit(&fixture(name)).await.unwrap();
        let pure = admit(name).response;
        assert_eq!(answer, pure, "{name}");
        *results
            .entry(if answer.response.patch.is_some() {
                "mutated"
            } else {
                "skipped"
            })
            .or_default() += 1;
    }
    let text = metrics.encode();
    assert!(text.contains(&format!(
        r#"podid_webhook_admissions_total{{result="mutated"}} {}"#,
        results["mutated"]
    )));
    assert!(text.contains(&format!(
        r#"podid_webhook_admissions_total{{result="skipped"}} {}"#,
        results["skipped"]
    )));
    assert!(
        text.contains(r#"podid_webhook_association_lookups_total{result="cached"}"#),
        "{text}"
    );
}
