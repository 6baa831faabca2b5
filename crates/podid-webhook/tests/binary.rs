//! The `podid webhook` subcommand as a process: a `podid server` with API
//! keys, the webhook signing its lookups with a `reader` key from the AWS
//! environment variables, its stdout "listening" line on port 0, HTTPS with a
//! test CA, and a clean exit on SIGTERM. A webhook holding a wrong secret is
//! refused by the server and admits pods unchanged with a warning.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ADMIN: (&str, &str) = ("PODIDADMIN", "admin-secret-0123456789abcdef");
const READER: (&str, &str) = ("PODIDREADER", "reader-secret-0123456789abcdef");

struct Process {
    child: Child,
    line: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `podid ARGS` with an AWS key and waits for its first stdout line.
fn spawn(args: &[&str], key: (&str, &str)) -> Process {
    let mut child = Command::new(podid_bin())
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("PODID_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podid");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Process {
        child,
        line: line.trim().to_owned(),
    }
}

/// Runs a `podid` CLI verb signed with the admin key.
fn cli(endpoint: &str, args: &[&str]) {
    let out = Command::new(podid_bin())
        .args(args)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ADMIN.0)
        .env("AWS_SECRET_ACCESS_KEY", ADMIN.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_keys(dir: &Path) -> String {
    let path = dir.join("keys.toml");
    std::fs::write(
        &path,
        format!(
            "[[key]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nrole = \"admin\"\n\n\
             [[key]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nrole = \"reader\"\n",
            ADMIN.0, ADMIN.1, READER.0, READER.1
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn webhook(files: &CertFiles, endpoint: &str, key: (&str, &str)) -> (Process, String) {
    let (cert, key_file) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let p = spawn(
        &[
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key_file,
            "--cluster-name",
            "bin",
            "--endpoint",
            endpoint,
            "--region",
            "us-east-1",
        ],
        key,
    );
    let url = p
        .line
        .strip_prefix("podid webhook listening on ")
        .unwrap_or_else(|| panic!("webhook did not start: {:?}", p.line))
        .to_owned();
    assert!(
        url.starts_with("https://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    (p, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podid_webhook_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let keys = write_keys(dir.path());
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let server = spawn(
        &[
            "server",
            "--keys-file",
            &keys,
            "--listen",
            "127.0.0.1:0",
            "--account-id",
            "111122223333",
            "--database-url",
            &db,
        ],
        ADMIN,
    );
    let endpoint = server
        .line
        .strip_prefix("podid server listening on ")
        .expect("server line")
        .to_owned();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, JWKS).unwrap();
    cli(
        &endpoint,
        &[
            "cluster",
            "register",
            "--name",
            "bin",
            "--issuer",
            "https://issuer.test",
            "--jwks-file",
            &jwks.display().to_string(),
        ],
    );
    let sa = "bin-sa";
    cli(
        &endpoint,
        &[
            "association",
            "create",
            "--cluster-name",
            "bin",
            "--namespace",
            "default",
            "--service-account",
            sa,
            "--role-arn",
            "arn:aws:iam::111122223333:role/r",
        ],
    );

    let ca = TestCa::new("podid test CA");
    let files = CertFiles::new(&ca.leaf(1, "binary"));
    let https = client(&ca.pem, false);

    // The reader key signs the lookups: injected.
    let (mut good, url) = webhook(&files, &endpoint, READER);
    let review = pod_review("uid-bin", "default", sa);
    let (answer, _) = post_review(&https, &url, &review).await;
    assert!(
        answer.response.warnings.is_empty(),
        "{:?}",
        answer.response.warnings
    );
    assert!(injected(&patched(&review, &answer)));
    let (answer, _) = post_review(
        &https,
        &url,
        &pod_review("uid-other", "default", "other-sa"),
    )
    .await;
    assert!(answer.response.patch.is_none());
    let ready = https.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // SIGTERM: a clean exit.
    let pid = good.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = good.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");

    // A wrong secret: the server refuses the lookup, the pod passes unchanged with a warning.
    let (_bad, url) = webhook(&files, &endpoint, (READER.0, "not-the-secret"));
    let (answer, _) = post_review(&https, &url, &review).await;
    assert!(answer.response.patch.is_none());
    assert!(
        answer.response.warnings[0].contains("InvalidSignatureException"),
        "{:?}",
        answer.response.warnings
    );
    drop(server);
}
