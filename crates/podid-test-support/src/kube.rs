//! The Kubernetes stand-ins of `podid dev` as tests use them: a live-pods
//! file (a `PodList`, written here as literal JSON in the Kubernetes API's
//! shape, not through podid's types) and a `podid dev apiserver` process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::ChildProcess;
use crate::tls::write_atomically;
use crate::HarnessError;

/// What `podid dev apiserver` prints once listening.
pub const APISERVER_LISTENING: &str = "podid dev apiserver listening on ";

/// One pod of a pods file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPod {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `status.phase` (`Running`, `Pending`, `Succeeded`, …).
    pub phase: String,
}

impl TestPod {
    /// A running pod `name` of `namespace` on `node` with this uid.
    pub fn running(name: &str, namespace: &str, uid: &str, node: &str) -> TestPod {
        TestPod {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: uid.to_owned(),
            node: node.to_owned(),
            phase: "Running".to_owned(),
        }
    }
}

/// The `PodList` of `pods`, as `GET /api/v1/pods` (or a kubelet's `/pods`) answers it.
pub fn pod_list(pods: &[TestPod]) -> Value {
    let items: Vec<Value> = pods
        .iter()
        .map(|p| {
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "spec": {"nodeName": p.node, "containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": p.phase},
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Writes the pods file (whole, by rename: a reader never sees half of it).
///
/// # Errors
/// When the file cannot be written.
pub fn write_pods_file(path: &Path, pods: &[TestPod]) -> Result<(), HarnessError> {
    write_atomically(path, pod_list(pods).to_string().as_bytes())
}

/// A running `podid dev apiserver`, killed on drop.
#[derive(Debug)]
pub struct DevApiServer {
    /// The process.
    pub process: ChildProcess,
    /// `https://ADDR` (or `http://` without TLS).
    pub url: String,
}

/// How to start `podid dev apiserver`.
#[derive(Debug, Clone)]
pub struct DevApiServerLaunch {
    /// The `podid` binary.
    pub binary: PathBuf,
    /// A `podid dev cluster create` directory.
    pub cluster_dir: PathBuf,
    /// The pods file.
    pub pods_file: PathBuf,
    /// The file of the bearer token callers must send.
    pub token_file: PathBuf,
    /// Certificate and key files for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl DevApiServerLaunch {
    /// Starts it on 127.0.0.1:0 and waits (bounded: 60 s) for its address.
    ///
    /// # Errors
    /// When it cannot start or prints no address in time.
    pub fn start(&self) -> Result<DevApiServer, HarnessError> {
        let mut command = Command::new(&self.binary);
        command
            .args(["dev", "apiserver", "--listen", "127.0.0.1:0"])
            .arg("--cluster-dir")
            .arg(&self.cluster_dir)
            .arg("--pods-file")
            .arg(&self.pods_file)
            .arg("--token-file")
            .arg(&self.token_file)
            .stdin(Stdio::null());
        if let Some((cert, key)) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut process = ChildProcess::spawn("podid dev apiserver", command, true)?;
        let url = process.wait_for_line(APISERVER_LISTENING, Duration::from_secs(60))?;
        Ok(DevApiServer { process, url })
    }
}
