//! The live-pods file of the stand-ins (`podid dev apiserver`, `podid dev kubelet`):
//! a Kubernetes `PodList` JSON document, read again on every request so that a
//! test adds or removes pods by rewriting it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;

/// A `PodList` (`{"apiVersion": "v1", "kind": "PodList", "items": [...]}`).
pub type PodList = k8s_openapi::List<Pod>;

/// The largest pods file read, in bytes (a node's pods, with room to spare).
pub const MAX_PODS_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Reads and parses the pods file.
///
/// # Errors
/// When the file cannot be read, is larger than [`MAX_PODS_FILE_BYTES`], or
/// is not a `PodList`.
pub fn read_pod_list(path: &Path) -> anyhow::Result<PodList> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the pods file {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_PODS_FILE_BYTES,
        "the pods file {} is larger than {MAX_PODS_FILE_BYTES} bytes",
        path.display()
    );
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the pods file {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("the pods file {} is not a PodList", path.display()))
}

/// The uid of `pod`, if it has one.
pub fn pod_uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref()
}

/// The uids of every pod in the list, whatever its phase (the API server
/// authenticates a pod-bound token while its pod object exists).
pub fn pod_uids(list: &PodList) -> HashSet<String> {
    list.items
        .iter()
        .filter_map(pod_uid)
        .map(str::to_owned)
        .collect()
}

/// The uids of the pods whose `status.phase` is `Running`.
pub fn running_pod_uids(list: &PodList) -> HashSet<String> {
    list.items
        .iter()
        .filter(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        })
        .filter_map(pod_uid)
        .map(str::to_owned)
        .collect()
}

/// The pod with this uid, if the list holds it.
pub fn find_pod<'a>(list: &'a PodList, uid: &str) -> Option<&'a Pod> {
    list.items.iter().find(|pod| pod_uid(pod) == Some(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PodList as `kubectl get pods -o json` prints it (trimmed).
    const LIST: &str = r#"{
      "apiVersion": "v1",
      "kind": "PodList",
      "metadata": {"resourceVersion": "1234"},
      "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-1", "namespace": "default",
                      "uid": "9f0c3b1e-0b1a-4d6e-9a57-2f7f5b0e1c11"},
         "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "nginx"}]},
         "status": {"phase": "Running"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "job-1", "namespace": "default",
                      "uid": "0d6f9a2c-7f0b-4b8e-8c3c-5c1f0e2a9b22"},
         "spec": {"nodeName": "node-a", "containers": [{"name": "job", "image": "busybox"}]},
         "status": {"phase": "Succeeded"}}
      ]
    }"#;

    fn read(text: &str) -> anyhow::Result<PodList> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pods.json");
        std::fs::write(&path, text)?;
        read_pod_list(&path)
    }

    #[test]
    fn reads_a_pod_list_and_its_uids() -> anyhow::Result<()> {
        let list = read(LIST)?;
        assert_eq!(list.items.len(), 2);
        let all = pod_uids(&list);
        assert!(all.contains("9f0c3b1e-0b1a-4d6e-9a57-2f7f5b0e1c11"));
        assert!(all.contains("0d6f9a2c-7f0b-4b8e-8c3c-5c1f0e2a9b22"));
        let running = running_pod_uids(&list);
        assert_eq!(running.len(), 1);
        assert!(running.contains("9f0c3b1e-0b1a-4d6e-9a57-2f7f5b0e1c11"));
        let pod = find_pod(&list, "0d6f9a2c-7f0b-4b8e-8c3c-5c1f0e2a9b22");
        assert_eq!(pod.and_then(|p| p.metadata.name.as_deref()), Some("job-1"));
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_a_pod_list() {
        let not_a_list = r#"{"apiVersion": "v1", "kind": "Pod", "items": []}"#;
        for text in ["", "[]", "{", not_a_list] {
            let err = read(text).err().map(|e| format!("{e:#}"));
            assert!(
                err.as_deref().is_some_and(|e| e.contains("not a PodList")),
                "{text}: {err:?}"
            );
        }
        let missing = read_pod_list(Path::new("/nonexistent/pods.json"));
        assert!(missing.is_err());
    }
}
