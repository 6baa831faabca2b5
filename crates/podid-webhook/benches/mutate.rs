//! `cargo bench -p podid-webhook` (issue 7): the mutation of a realistic pod
//! — as a Deployment creates it: two containers, an init container and a
//! native sidecar, the service-account token volume, env, probes, resources.
//!
//! - `realistic_pod`: [`podid_webhook::mutate`] alone;
//! - `realistic_pod_with_patch_json`: and the JSONPatch serialised, as the
//!   AdmissionReview answer carries it;
//! - `no_association`: a pod whose service account has none (empty patch);
//! - `pod_clone`: a deep copy of the same pod — the machine-speed baseline
//!   the others are read against (the machine is shared: compare ratios).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;
use podid_webhook::{mutate, MutationSettings};

fn container(name: &str, image: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "FEATURE_FLAGS", "value": "a,b,c"},
        ],
        "envFrom": [{"configMapRef": {"name": "app-config"}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
            {"name": "config", "mountPath": "/etc/app"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    })
}

fn realistic_pod() -> Pod {
    let mut sidecar = container("log-shipper", "fluent/fluent-bit:3.1", 2020);
    sidecar["restartPolicy"] = "Always".into();
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5d"},
            "annotations": {"kubectl.kubernetes.io/default-container": "app", "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5d",
                                  "uid": "0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "serviceAccountName": "checkout",
            "initContainers": [container("migrate", "registry.example/checkout:1.42.0", 8081), sidecar],
            "containers": [
                container("app", "registry.example/checkout:1.42.0", 8080),
                container("proxy", "envoyproxy/envoy:v1.31.0", 9901),
            ],
            "volumes": [
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]}},
                {"name": "config", "configMap": {"name": "checkout-config"}},
                {"name": "tmp", "emptyDir": {}},
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "securityContext": {"fsGroup": 1000, "runAsUser": 1000},
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "priority": 0,
        },
    });
    serde_json::from_value(pod).expect("a valid Pod")
}

fn bench_mutate(c: &mut Criterion) {
    let pod = realistic_pod();
    let settings = MutationSettings::default();
    let seed = "0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0";
    let mutation = mutate(&pod, true, seed, &settings);
    assert!(!mutation.is_empty(), "the realistic pod gets a patch");

    let mut group = c.benchmark_group("webhook_mutate");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("realistic_pod", |b| {
        b.iter(|| mutate(black_box(&pod), true, seed, &settings))
    });
    group.bench_function("realistic_pod_with_patch_json", |b| {
        b.iter(|| {
            let mutation = mutate(black_box(&pod), true, seed, &settings);
            serde_json::to_vec(&mutation.patch).expect("JSON")
        })
    });
    group.bench_function("no_association", |b| {
        b.iter(|| mutate(black_box(&pod), false, seed, &settings))
    });
    group.bench_function("pod_clone", |b| b.iter(|| black_box(&pod).clone()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_mutate
}
criterion_main!(benches);
