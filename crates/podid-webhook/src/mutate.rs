//! The mutation: a pure function from a Pod (and whether its service account
//! has an association) to the JSONPatch that gives it EKS Pod Identity.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The env var naming the agent's credentials URL.
pub const CREDENTIALS_FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The env var naming the token file the SDKs send as `Authorization`.
pub const TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// The agent's IPv4 credentials URL (EKS's default).
pub const DEFAULT_CREDENTIALS_URI: &str = "http://169.254.170.23/v1/credentials";
/// The token's audience.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";
/// The projected volume's name.
pub const VOLUME_NAME: &str = "eks-pod-identity-token";
/// The token's file name inside the volume.
pub const TOKEN_PATH: &str = "eks-pod-identity-token";
/// Where the volume is mounted (on Windows too, see the module docs).
pub const MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
/// The token file on Linux.
pub const TOKEN_FILE: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
/// The token file on Windows.
pub const WINDOWS_TOKEN_FILE: &str =
    r"C:\var\run\secrets\pods.eks.amazonaws.com\serviceaccount\eks-pod-identity-token";
/// The label marking a mutated pod.
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";
/// The label's value.
pub const POD_IDENTITY_LABEL_VALUE: &str = "enabled";
/// Pod annotation: comma-separated names of containers to leave alone.
pub const SKIP_CONTAINERS_ANNOTATION: &str = "eks.amazonaws.com/skip-containers";
/// Pod annotation: the token's `expirationSeconds`.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "eks.amazonaws.com/token-expiration";
/// The shortest token lifetime EKS uses, in seconds: the kube-apiserver's minimum (EKS's webhook,
/// `aws/amazon-eks-pod-identity-webhook`, raises a smaller annotation to it).
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
/// The longest token lifetime EKS uses, in seconds: a day ("24hrs as that is max for EKS", the
/// EKS webhook's `DefaultTokenExpiration`). A longer-lived token would outlive what EKS allows.
pub const MAX_TOKEN_EXPIRATION: i64 = 86_400;
/// The lifetime chosen when the pod asks for none: EKS's jitter range, in seconds.
pub const DEFAULT_TOKEN_EXPIRATION: RangeInclusive<i64> = 79_200..=86_400;

/// What the mutation can be configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationSettings {
    /// The value of `AWS_CONTAINER_CREDENTIALS_FULL_URI`
    /// (default [`DEFAULT_CREDENTIALS_URI`]; IPv6-only clusters use
    /// `http://[fd00:ec2::23]/v1/credentials`).
    pub credentials_uri: String,
}

impl Default for MutationSettings {
    fn default() -> Self {
        MutationSettings {
            credentials_uri: DEFAULT_CREDENTIALS_URI.to_owned(),
        }
    }
}

/// The outcome of [`mutate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The operations to apply; empty when the pod needs nothing.
    pub patch: Patch,
    /// The token lifetime written into a new volume (also computed when the
    /// volume exists already and nothing is written).
    pub token_expiration: i64,
    /// Whether the pod was treated as a Windows pod.
    pub windows: bool,
    /// Messages for the user (AdmissionResponse `warnings`), e.g. an
    /// expiration annotation that was not used as written.
    pub warnings: Vec<String>,
}

impl Mutation {
    /// Whether the pod is changed at all.
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// The pod's service account: `spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`, else `default`.
pub fn service_account(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.and_then(|s| s.service_account.as_deref())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_owned()
}

/// Whether the pod runs on Windows: node selector `kubernetes.io/os` or
/// `beta.kubernetes.io/os` is `windows` (EKS's check), or `spec.os.name` is.
pub fn is_windows(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let selector = spec.node_selector.as_ref();
    let selected = ["kubernetes.io/os", "beta.kubernetes.io/os"]
        .iter()
        .any(|key| {
            selector
                .and_then(|s| s.get(*key))
                .is_some_and(|v| v == "windows")
        });
    selected || spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// The names in `eks.amazonaws.com/skip-containers` (comma-separated,
/// surrounding blanks trimmed, empty items ignored).
pub fn skipped_containers(pod: &Pod) -> BTreeSet<String> {
    annotation(pod, SKIP_CONTAINERS_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The token lifetime in seconds, and a warning when the annotation was not
/// used as written.
///
/// - `eks.amazonaws.com/token-expiration` holding an integer is used as is
///   inside EKS's range, [`MIN_TOKEN_EXPIRATION`] to [`MAX_TOKEN_EXPIRATION`]
///   (600 to 86,400); outside it the value is clamped into it, with a
///   warning: a smaller value (0 and negatives too) is raised to 600, as EKS
///   does, a larger one lowered to 86,400. An explicit `86400` is honoured
///   (EKS cannot tell it from its default and jitters it).
/// - Absent, or not an integer (ignored, as EKS does): EKS's jitter, a value
///   in 79200–86400 so that tokens of pods created together do not all expire
///   together. Here it is derived from `seed` (SHA-256) rather than drawn at
///   random, so one admission always gives one answer: callers pass the
///   AdmissionRequest uid (unique per admission) with the pod's namespace and
///   name or generateName.
pub fn token_expiration(pod: &Pod, seed: &str) -> (i64, Option<String>) {
    let jitter = || {
        let digest = Sha256::digest(seed.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let span = (DEFAULT_TOKEN_EXPIRATION.end() - DEFAULT_TOKEN_EXPIRATION.start() + 1) as u64;
        DEFAULT_TOKEN_EXPIRATION.start() + (u64::from_be_bytes(first) % span) as i64
    };
    let Some(raw) = annotation(pod, TOKEN_EXPIRATION_ANNOTATION) else {
        return (jitter(), None);
    };
    match raw.trim().parse::<i64>() {
        Ok(v) if (MIN_TOKEN_EXPIRATION..=MAX_TOKEN_EXPIRATION).contains(&v) => (v, None),
        Ok(v) => {
            let (side, clamped) = if v < MIN_TOKEN_EXPIRATION {
                ("below the minimum", MIN_TOKEN_EXPIRATION)
            } else {
                ("above the maximum", MAX_TOKEN_EXPIRATION)
            };
            (
                clamped,
                Some(format!(
                    "podid: {TOKEN_EXPIRATION_ANNOTATION}={v} is {side} of EKS's range \
                     ({MIN_TOKEN_EXPIRATION}-{MAX_TOKEN_EXPIRATION} seconds); using {clamped} seconds"
                )),
            )
        }
        Err(_) => {
            let chosen = jitter();
            let shown: String = raw.chars().take(40).collect();
            (
                chosen,
                Some(format!(
                    "podid: {TOKEN_EXPIRATION_ANNOTATION}={shown:?} is not a number of seconds; using {chosen}"
                )),
            )
        }
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Computes the patch for `pod`. `has_association` says whether its service
/// account has an association in the cluster: without one the patch is
/// empty. `seed` feeds the default token lifetime (see [`token_expiration`]).
///
/// What is injected matches EKS's pod identity webhook
/// (`aws/amazon-eks-pod-identity-webhook`, container-credentials mode):
///
/// - env `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
///   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` in every container and init
///   container, except containers named in `eks.amazonaws.com/skip-containers`
///   and containers that already set either variable (they keep their own
///   values and get neither; like EKS they still get the token mount, so a
///   container that points one variable elsewhere can still read the token);
/// - the projected volume `eks-pod-identity-token` (service-account token,
///   audience `pods.eks.amazonaws.com`, path `eks-pod-identity-token`), added
///   once, never when a volume of that name exists;
/// - its read-only mount at `/var/run/secrets/pods.eks.amazonaws.com/serviceaccount`,
///   not added to a container that already mounts a volume of that name or
///   mounts anything at that path (a second mount at one path makes the pod
///   invalid);
/// - the label `eks.amazonaws.com/pod-identity: enabled`.
///
/// Nothing else is touched: patches add to arrays (`…/-`) or create absent
/// arrays whole, so every other field — a native sidecar's
/// `restartPolicy: Always` included — stays as it was, and a pod that already
/// has everything gets an empty patch.
///
/// **Windows pods** (node selector `kubernetes.io/os` or
/// `beta.kubernetes.io/os` = `windows`, as EKS checks, or `spec.os.name` =
/// `windows`, which EKS does not check): as in EKS, only the token-file env
/// var changes, to `C:\var\run\secrets\pods.eks.amazonaws.com\serviceaccount\eks-pod-identity-token`;
/// the mount path stays `/var/run/secrets/pods.eks.amazonaws.com/serviceaccount`,
/// which the Windows kubelet mounts at `C:\var\run\…` on the container's
/// system drive.
///
/// **Token lifetime** (`expirationSeconds`): see [`token_expiration`].
pub fn mutate(
    pod: &Pod,
    has_association: bool,
    seed: &str,
    settings: &MutationSettings,
) -> Mutation {
    let windows = is_windows(pod);
    let (token_expiration, expiration_warning) = token_expiration(pod, seed);
    let mut mutation = Mutation {
        patch: Patch(Vec::new()),
        token_expiration,
        windows,
        warnings: Vec::new(),
    };
    let Some(spec) = pod.spec.as_ref() else {
        return mutation;
    };
    if !has_association {
        return mutation;
    }
    let ops = &mut mutation.patch.0;

    // The label. `add` on an existing member replaces it (RFC 6902 4.1).
    let labels = pod.metadata.labels.as_ref();
    match labels {
        None => ops.push(add(
            ptr(["metadata", "labels"]),
            serde_json::json!({ POD_IDENTITY_LABEL: POD_IDENTITY_LABEL_VALUE }),
        )),
        Some(l)
            if l.get(POD_IDENTITY_LABEL).map(String::as_str) != Some(POD_IDENTITY_LABEL_VALUE) =>
        {
            ops.push(add(
                ptr(["metadata", "labels", POD_IDENTITY_LABEL]),
                Value::String(POD_IDENTITY_LABEL_VALUE.to_owned()),
            ))
        }
        Some(_) => {}
    }

    // The volume, once.
    let volume = token_volume(token_expiration);
    match spec.volumes.as_ref() {
        None => ops.push(add(ptr(["spec", "volumes"]), to_value(&[volume]))),
        Some(vols) if !vols.iter().any(|v| v.name == VOLUME_NAME) => {
            ops.push(add(ptr(["spec", "volumes", "-"]), to_value(&volume)))
        }
        Some(_) => {}
    }

    // Env and mount, per container.
    let token_file = if windows {
        WINDOWS_TOKEN_FILE
    } else {
        TOKEN_FILE
    };
    let env = [
        EnvVar {
            name: CREDENTIALS_FULL_URI_ENV.to_owned(),
            value: Some(settings.credentials_uri.clone()),
            ..Default::default()
        },
        EnvVar {
            name: TOKEN_FILE_ENV.to_owned(),
            value: Some(token_file.to_owned()),
            ..Default::default()
        },
    ];
    let skipped = skipped_containers(pod);
    let groups: [(&str, &[Container]); 2] = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", &spec.containers),
    ];
    for (field, containers) in groups {
        for (index, container) in containers.iter().enumerate() {
            if skipped.contains(&container.name) {
                continue;
            }
            container_ops(ops, field, index, container, &env);
        }
    }

    if let Some(w) = expiration_warning {
        let meta = &pod.metadata;
        tracing::warn!(
            namespace = meta.namespace.as_deref().unwrap_or("-"),
            pod = meta.name.as_deref().or(meta.generate_name.as_deref()).unwrap_or("-"),
            token_expiration,
            warning = %w,
            "token expiration annotation not used as written"
        );
        mutation.warnings.push(w);
    }
    mutation
}

fn container_ops(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    index: usize,
    container: &Container,
    env: &[EnvVar; 2],
) {
    let index = index.to_string();
    let base = ["spec", field, index.as_str()];
    let own_env = container.env.as_deref().unwrap_or_default();
    let sets_either = own_env
        .iter()
        .any(|e| e.name == CREDENTIALS_FULL_URI_ENV || e.name == TOKEN_FILE_ENV);
    if !sets_either {
        match container.env.as_ref() {
            None => ops.push(add(ptr(base.into_iter().chain(["env"])), to_value(env))),
            Some(_) => {
                for var in env {
                    ops.push(add(
                        ptr(base.into_iter().chain(["env", "-"])),
                        to_value(var),
                    ));
                }
            }
        }
    }
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let mounted = mounts
        .iter()
        .any(|m| m.name == VOLUME_NAME || same_path(&m.mount_path, MOUNT_PATH));
    if !mounted {
        let mount = VolumeMount {
            name: VOLUME_NAME.to_owned(),
            mount_path: MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..Default::default()
        };
        match container.volume_mounts.as_ref() {
            None => ops.push(add(
                ptr(base.into_iter().chain(["volumeMounts"])),
                to_value(&[mount]),
            )),
            Some(_) => ops.push(add(
                ptr(base.into_iter().chain(["volumeMounts", "-"])),
                to_value(&mount),
            )),
        }
    }
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The projected token volume.
pub fn token_volume(expiration_seconds: i64) -> Volume {
    Volume {
        name: VOLUME_NAME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(AUDIENCE.to_owned()),
                    expiration_seconds: Some(expiration_seconds),
                    path: TOKEN_PATH.to_owned(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A JSON pointer from unescaped tokens: `/` in a token becomes `~1` and `~`
/// becomes `~0` (RFC 6901).
fn ptr<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    // Serializing k8s-openapi types into a Value cannot fail: they are plain
    // structs of strings, numbers and maps with string keys.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn label_paths_escape_the_slash() {
        let p = pod(
            serde_json::json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a"}]}}),
        );
        let m = mutate(&p, true, "seed", &MutationSettings::default());
        let text = serde_json::to_string(&m.patch).unwrap();
        assert!(
            text.contains(r#""path":"/metadata/labels/eks.amazonaws.com~1pod-identity""#),
            "{text}"
        );
    }

    #[test]
    fn no_association_no_patch() {
        let p = pod(serde_json::json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}));
        assert!(mutate(&p, false, "seed", &MutationSettings::default()).is_empty());
    }

    /// A container that already mounts the token volume elsewhere, or mounts
    /// another volume at the token's path, gets no second mount (the API
    /// server refuses two mounts at one path).
    #[test]
    fn an_existing_mount_of_the_volume_or_the_path_is_kept() {
        let dir = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
        let p = pod(serde_json::json!({"metadata": {}, "spec": {"containers": [
            {"name": "by-name", "volumeMounts": [{"name": "eks-pod-identity-token", "mountPath": "/custom"}]},
            {"name": "by-path", "volumeMounts": [{"name": "mine", "mountPath": format!("{dir}/")}]},
            {"name": "neither", "volumeMounts": [{"name": "mine", "mountPath": "/data"}]},
        ]}}));
        let m = mutate(&p, true, "seed", &MutationSettings::default());
        let text = serde_json::to_string(&m.patch).unwrap();
        let mounts: Vec<&str> = [
            "/spec/containers/0/volumeMounts",
            "/spec/containers/1/volumeMounts",
            "/spec/containers/2/volumeMounts",
        ]
        .into_iter()
        .filter(|path| text.contains(&format!(r#""path":"{path}/-""#)))
        .collect();
        assert_eq!(mounts, ["/spec/containers/2/volumeMounts"], "{text}");
    }

    /// The jitter reaches both ends of EKS's 22 h to 24 h range.
    #[test]
    fn jitter_covers_the_whole_range() {
        let p = pod(serde_json::json!({"metadata": {}, "spec": {"containers": []}}));
        let values: Vec<i64> = (0..100_000)
            .map(|i| token_expiration(&p, &format!("uid-{i}")).0)
            .collect();
        assert_eq!(values.iter().min(), Some(&79_200));
        assert_eq!(values.iter().max(), Some(&86_400));
    }

    #[test]
    fn jitter_is_deterministic_and_in_range() {
        let p = pod(serde_json::json!({"metadata": {}, "spec": {"containers": []}}));
        let mut seen = BTreeSet::new();
        for i in 0..500 {
            let seed = format!("uid-{i}");
            let (a, w) = token_expiration(&p, &seed);
            assert!(w.is_none());
            assert_eq!(a, token_expiration(&p, &seed).0);
            // EKS's default lifetime, jittered: 22 h to 24 h.
            assert!((79_200..=86_400).contains(&a), "{a}");
            seen.insert(a);
        }
        assert!(
            seen.len() > 400,
            "jitter spreads: {} distinct values",
            seen.len()
        );
    }

    #[test]
    fn expiration_annotation_rules() {
        let with = |v: &str| {
            pod(
                serde_json::json!({"metadata": {"annotations": {"eks.amazonaws.com/token-expiration": v}}, "spec": {"containers": []}}),
            )
        };
        assert_eq!(token_expiration(&with("3600"), "s"), (3600, None));
        assert_eq!(token_expiration(&with(" 86400 "), "s"), (86400, None));
        assert_eq!(token_expiration(&with("600"), "s"), (600, None));
        let (v, w) = token_expiration(&with("599"), "s");
        assert_eq!(v, 600);
        assert!(w.unwrap().contains("below the minimum"));
        assert_eq!(token_expiration(&with("-5"), "s").0, 600);
        // EKS's longest token: a day.
        let (v, w) = token_expiration(&with("99999999999"), "s");
        assert_eq!(v, 86_400);
        assert!(w
            .unwrap()
            .contains("above the maximum of EKS's range (600-86400 seconds)"));
        let (v, w) = token_expiration(&with("1h"), "s");
        assert!((79_200..=86_400).contains(&v), "{v}");
        assert!(w.unwrap().contains("not a number"));
    }

    #[test]
    fn service_account_fallbacks() {
        let sa =
            |spec: Value| service_account(&pod(serde_json::json!({"metadata": {}, "spec": spec})));
        assert_eq!(sa(serde_json::json!({"containers": []})), "default");
        assert_eq!(
            sa(serde_json::json!({"containers": [], "serviceAccount": "old"})),
            "old"
        );
        assert_eq!(
            sa(
                serde_json::json!({"containers": [], "serviceAccount": "old", "serviceAccountName": "new"})
            ),
            "new"
        );
    }

    #[test]
    fn skip_list_is_trimmed() {
        let p = pod(serde_json::json!({
            "metadata": {"annotations": {"eks.amazonaws.com/skip-containers": " a, b ,,c"}},
            "spec": {"containers": []}
        }));
        assert_eq!(
            skipped_containers(&p).into_iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}
