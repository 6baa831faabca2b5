//! The kubelet's `PodList` read from a literal answer, and the check's cache,
//! relist and single-call rules on tokio's paused clock with a fake source.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Semaphore;

use super::*;

/// `GET https://NODE:10250/pods` as a kubelet answers it (trimmed): the list's
/// items carry no kind; one pod of each phase, a terminating one, a static
/// pod's mirror annotations, one without a uid.
const KUBELET_PODS: &str = r#"{
  "kind": "PodList",
  "apiVersion": "v1",
  "metadata": {},
  "items": [
    {"metadata": {"name": "web-7d4b9c-x2x4z", "namespace": "shop", "uid": "5a3e6f0c-1f2b-4c1d-9e8a-0b7c6d5e4f30",
                  "labels": {"app": "web"}, "annotations": {"kubernetes.io/config.seen": "2025-05-01T10:00:00Z", "kubernetes.io/config.source": "api"}},
     "spec": {"serviceAccountName": "web", "nodeName": "node-a",
              "containers": [{"name": "web", "image": "nginx:1.27", "resources": {}}],
              "volumes": [{"name": "eks-pod-identity-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": "eks-pod-identity-token"}}]}}]},
     "status": {"phase": "Running", "hostIP": "10.0.1.7", "podIP": "10.0.1.23", "qosClass": "BestEffort",
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "", "state": {"running": {"startedAt": "2025-05-01T10:00:02Z"}}}]}},
    {"metadata": {"name": "init-waits", "namespace": "shop", "uid": "6b4f7a1d-2a3c-4d2e-8f9b-1c8d7e6f5a41"},
     "spec": {"containers": [{"name": "app", "image": "app"}]},
     "status": {"phase": "Pending"}},
    {"metadata": {"name": "migrate-28712", "namespace": "shop", "uid": "7c5a8b2e-3b4d-4e3f-9a0c-2d9e8f7a6b52"},
     "spec": {"containers": [{"name": "job", "image": "migrate"}]},
     "status": {"phase": "Succeeded"}},
    {"metadata": {"name": "crashed", "namespace": "shop", "uid": "8d6b9c3f-4c5e-4f4a-8b1d-3e0f9a8b7c63"},
     "spec": {"containers": [{"name": "app", "image": "app"}]},
     "status": {"phase": "Failed", "reason": "Evicted"}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "leaving", "namespace": "shop", "uid": "9e7cad40-5d6f-4a5b-9c2e-4f1a0b9c8d74",
                  "deletionTimestamp": "2025-05-01T11:00:00Z", "deletionGracePeriodSeconds": 30},
     "spec": {"containers": [{"name": "app", "image": "app"}]},
     "status": {"phase": "Running"}},
    {"metadata": {"name": "just-admitted", "namespace": "shop", "uid": "af8dbe51-6e7a-4b6c-8d3f-5a2b1c0d9e85"},
     "spec": {"containers": [{"name": "app", "image": "app"}]}},
    {"metadata": {"name": "no-uid", "namespace": "shop"},
     "spec": {"containers": [{"name": "app", "image": "app"}]},
     "status": {"phase": "Running"}}
  ]
}"#;

fn key(uid: &str) -> PodKey {
    pod_key(uid)
}

#[test]
fn a_kubelet_pod_list_gives_the_running_pods() {
    let list: PodList = serde_json::from_str(KUBELET_PODS).unwrap();
    assert_eq!(list.items.len(), 7);
    let running = running_pods(&list);
    for uid in [
        "5a3e6f0c-1f2b-4c1d-9e8a-0b7c6d5e4f30", // Running
        "6b4f7a1d-2a3c-4d2e-8f9b-1c8d7e6f5a41", // Pending: init containers run
        "9e7cad40-5d6f-4a5b-9c2e-4f1a0b9c8d74", // terminating: still runs its grace period
        "af8dbe51-6e7a-4b6c-8d3f-5a2b1c0d9e85", // no status yet
    ] {
        assert!(running.contains(&key(uid)), "{uid}");
    }
    for uid in [
        "7c5a8b2e-3b4d-4e3f-9a0c-2d9e8f7a6b52", // Succeeded
        "8d6b9c3f-4c5e-4f4a-8b1d-3e0f9a8b7c63", // Failed
    ] {
        assert!(!running.contains(&key(uid)), "{uid}");
    }
    assert_eq!(running.len(), 4);
}

#[test]
fn what_is_not_a_pod_list_is_refused() {
    for text in [
        "",
        "Unauthorized",
        "[]",
        r#"{"kind": "Pod", "apiVersion": "v1", "items": []}"#,
        r#"{"kind": "PodList", "apiVersion": "v2", "items": []}"#,
        r#"{"kind": "PodList", "items": [{"metadata": {"uid": 7}}]}"#,
    ] {
        assert!(serde_json::from_str::<PodList>(text).is_err(), "{text}");
    }
    let empty: PodList =
        serde_json::from_str(r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}"#)
            .unwrap_or_default();
    assert!(running_pods(&empty).is_empty());
}

/// Lists what it is told, counting calls; optionally held until released.
struct FakePods {
    uids: Mutex<Result<Vec<String>, u16>>,
    calls: AtomicUsize,
    gate: Option<Semaphore>,
}

impl FakePods {
    fn new(uids: &[&str], gated: bool) -> Arc<FakePods> {
        Arc::new(FakePods {
            uids: Mutex::new(Ok(uids.iter().map(|u| (*u).to_owned()).collect())),
            calls: AtomicUsize::new(0),
            gate: gated.then(|| Semaphore::new(0)),
        })
    }

    fn set(&self, uids: Result<&[&str], u16>) {
        *self.uids.lock().unwrap() = uids.map(|u| u.iter().map(|s| (*s).to_owned()).collect());
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PodSource for FakePods {
    async fn running_pods(&self) -> Result<RunningPods, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            let _ = gate.acquire().await.unwrap();
        }
        match &*self.uids.lock().unwrap() {
            Ok(uids) => Ok(RunningPods::from_uids(uids.iter().map(String::as_str))),
            Err(401) => Err(AgentError::KubeletUnauthorized { status: 401 }),
            Err(status) => Err(AgentError::KubeletStatus { status: *status }),
        }
    }
}

fn check(source: &Arc<FakePods>, mode: PodCheckMode) -> (Arc<PodCheck>, Arc<AgentMetrics>) {
    let metrics = Arc::new(AgentMetrics::new());
    let check = PodCheck::with_source(
        source.clone(),
        mode,
        Duration::from_millis(1000),
        metrics.clone(),
    );
    (check, metrics)
}

#[tokio::test(start_paused = true)]
async fn a_listed_pod_runs_from_the_cache_until_the_list_is_old() {
    let source = FakePods::new(&["a"], false);
    let (check, metrics) = check(&source, PodCheckMode::FailClosed);
    assert_eq!(check.state().status, "unknown");
    assert_eq!(check.cached(Some(&key("a"))), None);
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Running);
    assert_eq!(source.calls(), 1);
    assert_eq!(check.cached(Some(&key("a"))), Some(Verdict::Running));
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Running);
    assert_eq!(source.calls(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(check.cached(Some(&key("a"))), None, "a list is kept 1 s");
    source.set(Ok(&[]));
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Gone);
    assert_eq!(source.calls(), 2);
    assert_eq!(check.state().pods, Some(0));
    assert!(metrics.encode().contains("podid_agent_kubelet_up 1"));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_pod_is_listed_again_unless_the_list_is_younger_than_250_ms() {
    let source = FakePods::new(&["a"], false);
    let (check, _) = check(&source, PodCheckMode::FailClosed);
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Running);
    tokio::time::advance(Duration::from_millis(249)).await;
    // A list this young lacking the pod: gone, without asking again.
    assert_eq!(check.cached(Some(&key("gone"))), Some(Verdict::Gone));
    assert_eq!(check.check(Some(&key("gone"))).await, Verdict::Gone);
    assert_eq!(source.calls(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    // Older: perhaps a new pod. It is listed now, and served at once.
    source.set(Ok(&["a", "new"]));
    assert_eq!(check.cached(Some(&key("new"))), None);
    assert_eq!(check.check(Some(&key("new"))).await, Verdict::Running);
    assert_eq!(source.calls(), 2);
    assert_eq!(check.check(Some(&key("gone"))).await, Verdict::Gone);
    assert_eq!(source.calls(), 2, "the new list is younger than 250 ms");
    assert_eq!(check.check(None).await, Verdict::NoPod);
    assert_eq!(source.calls(), 2, "a token without a pod costs no list");
}

#[tokio::test(start_paused = true)]
async fn callers_share_one_kubelet_call() {
    let source = FakePods::new(&["a"], true);
    let (check, _) = check(&source, PodCheckMode::FailClosed);
    let mut waiting = tokio::task::JoinSet::new();
    for i in 0..50 {
        let check = check.clone();
        let pod = if i % 2 == 0 { "a" } else { "b" };
        waiting.spawn(async move { (pod, check.check(Some(&key(pod))).await) });
    }
    podid_test_support::yield_until("the first list to start", || source.calls() == 1).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(source.calls(), 1);
    source.gate.as_ref().unwrap().add_permits(1_000);
    while let Some(done) = waiting.join_next().await {
        let (pod, verdict) = done.unwrap();
        let expected = if pod == "a" {
            Verdict::Running
        } else {
            Verdict::Gone
        };
        assert_eq!(verdict, expected, "{pod}");
    }
    assert_eq!(source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_kubelet_is_remembered_said_and_asked_again() {
    let source = FakePods::new(&["a"], false);
    source.set(Err(401));
    let (check, metrics) = check(&source, PodCheckMode::FailClosed);
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Unverified);
    let state = check.state();
    assert_eq!(state.status, "unauthorized");
    assert!(
        state
            .error
            .as_deref()
            .is_some_and(|e| e.contains("nodes/proxy")),
        "{state:?}"
    );
    assert!(
        !check.ready(),
        "fail-closed with the kubelet down is not ready"
    );
    // Remembered for the cache time: no call per request.
    assert_eq!(check.cached(Some(&key("a"))), Some(Verdict::Unverified));
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Unverified);
    assert_eq!(source.calls(), 1);
    let text = metrics.encode();
    assert!(text.contains("podid_agent_kubelet_up 0"), "{text}");
    assert!(
        text.contains("podid_agent_kubelet_lists_total{result=\"unauthorized\"} 1"),
        "{text}"
    );
    source.set(Err(500));
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Unverified);
    assert_eq!(check.state().status, "down");
    source.set(Ok(&["a"]));
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(check.check(Some(&key("a"))).await, Verdict::Running);
    assert_eq!(check.state().status, "up");
    assert!(check.ready());
    let (open, _) = self::check(&FakePods::new(&[], false), PodCheckMode::FailOpen);
    assert!(open.ready(), "fail-open is ready whatever the kubelet says");
}

#[tokio::test(start_paused = true)]
async fn the_probe_lists_while_no_pod_asks() {
    let source = FakePods::new(&["a"], false);
    let (check, _) = check(&source, PodCheckMode::FailClosed);
    let probe = tokio::spawn(check.clone().run_probe(Duration::from_secs(10)));
    podid_test_support::yield_until("the first probe", || source.calls() == 1).await;
    assert_eq!(check.state().status, "up");
    tokio::time::advance(Duration::from_secs(10)).await;
    podid_test_support::yield_until("the second probe", || source.calls() == 2).await;
    probe.abort();
}
