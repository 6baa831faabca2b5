//! `podid dev kubelet` as tests run it: the stand-in kubelet on the loopback,
//! serving HTTPS with a certificate of a test CA made for it, with its pods
//! file (`crate::kube`) and the token file its callers must match.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::kube::{write_pods_file, TestPod};
use crate::process::ChildProcess;
use crate::tls::{write_atomically, CertFiles, TestCa};
use crate::HarnessError;

/// What `podid dev kubelet` prints once listening.
pub const KUBELET_LISTENING: &str = "podid dev kubelet listening on ";

/// The bearer token the stand-in expects (its token file's contents).
pub const KUBELET_TOKEN: &str = "kubelet-caller-token-for-tests";

/// A stand-in kubelet's files: pods, token, CA and serving certificate.
pub struct DevKubeletFiles {
    /// The directory holding them (removed on drop).
    pub dir: tempfile::TempDir,
    /// The pods file.
    pub pods_file: PathBuf,
    /// The token callers must send.
    pub token_file: PathBuf,
    /// The CA that signed the serving certificate, PEM.
    pub ca_file: PathBuf,
    certs: CertFiles,
}

impl std::fmt::Debug for DevKubeletFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKubeletFiles")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// A running `podid dev kubelet` (killed on drop) and its `https://ADDR`.
#[derive(Debug)]
pub struct DevKubelet {
    /// The process.
    pub process: ChildProcess,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
}

impl DevKubeletFiles {
    /// New files: `pods` in the pods file, [`KUBELET_TOKEN`] in the token
    /// file, a new CA and its certificate for `localhost` and 127.0.0.1.
    ///
    /// # Errors
    /// When a file or a certificate cannot be made.
    pub fn new(pods: &[TestPod]) -> Result<DevKubeletFiles, HarnessError> {
        let dir = tempfile::tempdir().map_err(|source| HarnessError::Io {
            what: "creating the kubelet's directory".to_owned(),
            source,
        })?;
        let ca = TestCa::new("podid test kubelet CA")?;
        let certs = CertFiles::new(&ca.leaf(1, "kubelet")?)?;
        let files = DevKubeletFiles {
            pods_file: dir.path().join("pods.json"),
            token_file: dir.path().join("caller-token"),
            ca_file: dir.path().join("kubelet-ca.crt"),
            certs,
            dir,
        };
        write_atomically(&files.ca_file, ca.pem.as_bytes())?;
        write_atomically(&files.token_file, KUBELET_TOKEN.as_bytes())?;
        files.set_pods(pods)?;
        Ok(files)
    }

    /// Replaces the pods the stand-in lists (its next answer has them).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn set_pods(&self, pods: &[TestPod]) -> Result<(), HarnessError> {
        write_pods_file(&self.pods_file, pods)
    }

    /// Starts `binary dev kubelet` on `listen` (127.0.0.1:0 for any port)
    /// and waits (bounded: 60 s) for its address.
    ///
    /// # Errors
    /// When it cannot start or prints no address in time.
    pub fn start(&self, binary: &Path, listen: SocketAddr) -> Result<DevKubelet, HarnessError> {
        let mut command = Command::new(binary);
        command
            .args(["dev", "kubelet", "--listen", &listen.to_string()])
            .arg("--pods-file")
            .arg(&self.pods_file)
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--tls-cert")
            .arg(&self.certs.cert)
            .arg("--tls-key")
            .arg(&self.certs.key)
            .stdin(Stdio::null());
        let mut process = ChildProcess::spawn("podid dev kubelet", command, true)?;
        let url = process.wait_for_line(KUBELET_LISTENING, Duration::from_secs(60))?;
        let addr = url
            .trim_start_matches("https://")
            .parse()
            .map_err(|source| HarnessError::Address {
                what: "podid dev kubelet".to_owned(),
                line: url.clone(),
                source,
            })?;
        Ok(DevKubelet { process, url, addr })
    }
}
