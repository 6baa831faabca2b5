//! podid's own clients against `podid server` over HTTPS (issue 13, item 1),
//! each a real process: the CLI, the agent (aws-sdk-eksauth to the broker) and
//! the webhook (its association lookup). Each works when given the private CA
//! that signed the server's certificate (`--ca-file`, or `PODID_CA_FILE`), and
//! refuses the server without it, saying it is the certificate. A CA file that
//! cannot be used stops each at start with a message naming the file.
//!
//! The server's certificate comes from a CA made for the test (rcgen); the
//! broker asks a fake STS. Needs `target/debug/podid` (or `PODID_BIN`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podid_test_support::agent::{loopback_agent_args, AGENT_LISTENING};
use podid_test_support::fake_sts::FakeSts;
use podid_test_support::keys::aws_key_env;
use podid_test_support::tls::{CertFiles, TestCa};
use podid_test_support::{
    podid_binary, write_keys_file, ChildProcess, PodidServerLaunch, PodidServerProcess, StderrTo,
    TestKey, ADMIN, NODE, READER,
};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde_json::{json, Value};

const CLUSTER: &str = "tls";
const ISSUER: &str = "https://oidc.tls.test";
const NAMESPACE: &str = "ns";
const SERVICE_ACCOUNT: &str = "sa";
const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/tls-role";
/// What every start or call may take at most.
const LIMIT: Duration = Duration::from_secs(60);
/// The broker's own AWS key (what it signs STS calls with).
const BROKER_KEY: TestKey = TestKey {
    access_key_id: "AKIABROKERTLSTEST000",
    secret_access_key: "broker-tls-secret-0123456789abcdefghijklm",
    role: "broker",
};

/// A `podid server` on HTTPS (certificate from a test CA) whose broker asks a
/// fake STS, with [`CLUSTER`] registered and one association.
struct HttpsPodid {
    dir: tempfile::TempDir,
    ca: TestCa,
    _certs: CertFiles,
    _sts: FakeSts,
    server: PodidServerProcess,
    key: SigningKey,
}

impl HttpsPodid {
    fn start() -> HttpsPodid {
        let binary = podid_binary();
        assert!(
            binary.exists(),
            "{} not found: cargo build -p podid (or set PODID_BIN)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("podid tls-clients CA").unwrap();
        let certs = CertFiles::new(&ca.leaf(1, "podid-server").unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
        let sts = FakeSts::start().unwrap();
        let keys = write_keys_file(dir.path()).unwrap();
        let server = PodidServerLaunch::new(&binary)
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.path().join("podid.db").display()),
            ])
            .args([std::ffi::OsStr::new("--keys-file"), keys.as_os_str()])
            .args(["--sts-endpoint", &sts.url])
            .tls(&certs.cert, &certs.key)
            .aws_test_key(&BROKER_KEY)
            .env_remove("PODID_DATABASE_URL")
            .stderr(StderrTo::File(dir.path().join("server.log")))
            .start()
            .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
        assert!(
            server.endpoint.starts_with("https://127.0.0.1:"),
            "{}",
            server.endpoint
        );
        let key = SigningKey::generate(DevAlgorithm::Rs256, "tls-1").unwrap();
        HttpsPodid {
            dir,
            ca,
            _certs: certs,
            _sts: sts,
            server,
            key,
        }
    }

    fn endpoint(&self) -> &str {
        &self.server.endpoint
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `podid ARGS --endpoint E` as the admin, the CA given by `ca` (flag,
    /// env or none); its output, whatever its status.
    fn cli(&self, args: &[&str], ca: Ca<'_>) -> Output {
        let mut command = Command::new(podid_binary());
        command.args(args).args(["--endpoint", self.endpoint()]);
        with_key(&mut command, &ADMIN);
        ca.apply(&mut command);
        run(command)
    }

    /// Registers [`CLUSTER`] and associates [`NAMESPACE`]/[`SERVICE_ACCOUNT`].
    fn register(&self) {
        let jwks = self.dir.path().join("jwks.json");
        std::fs::write(&jwks, self.key.jwks().to_string()).unwrap();
        let jwks = jwks.display().to_string();
        let ca = self.ca_file();
        for args in [
            &[
                "cluster",
                "register",
                "--name",
                CLUSTER,
                "--issuer",
                ISSUER,
                "--jwks-file",
                &jwks,
            ][..],
            &[
                "association",
                "create",
                "--cluster-name",
                CLUSTER,
                "--namespace",
                NAMESPACE,
                "--service-account",
                SERVICE_ACCOUNT,
                "--role-arn",
                ROLE_ARN,
            ],
        ] {
            let out = self.cli(args, Ca::Flag(&ca));
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
    }

    /// A token of a pod of the associated service account, signed with the cluster's key.
    fn token(&self, pod: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut t = ProjectedToken::new(ISSUER, NAMESPACE, SERVICE_ACCOUNT, now);
        t.pod_name = pod.to_owned();
        t.pod_uid = format!("uid-{pod}");
        t.sign(&self.key)
    }
}

/// How a process is given the CA.
#[derive(Clone, Copy)]
enum Ca<'a> {
    None,
    Flag(&'a Path),
    Env(&'a Path),
}

impl Ca<'_> {
    fn apply(self, command: &mut Command) {
        command.env_remove("PODID_CA_FILE");
        match self {
            Ca::None => {}
            Ca::Flag(path) => {
                command.arg("--ca-file").arg(path);
            }
            Ca::Env(path) => {
                command.env("PODID_CA_FILE", path);
            }
        }
    }
}

/// The process's AWS credentials are `key` and nothing else.
fn with_key(command: &mut Command, key: &TestKey) {
    for (name, value) in aws_key_env(key.access_key_id, key.secret_access_key) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.env("PODID_LOG", "warn").stdin(Stdio::null());
}

/// Runs `command` to its end, bounded by [`LIMIT`].
fn run(mut command: Command) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("{command:?} did not finish within {LIMIT:?}");
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_trusts_the_ca_file_and_refuses_the_server_without_it() {
    let podid = HttpsPodid::start();
    podid.register(); // with --ca-file
    let list = [
        "association",
        "list",
        "--cluster-name",
        CLUSTER,
        "-o",
        "json",
    ];

    let refused = podid.cli(&list, Ca::None);
    assert!(!refused.status.success());
    let text = stderr(&refused);
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "the refusal names the certificate: {text}"
    );

    for ca in [Ca::Flag(&podid.ca_file()), Ca::Env(&podid.ca_file())] {
        let out = podid.cli(&list, ca);
        assert!(out.status.success(), "{}", stderr(&out));
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed["associations"][0]["serviceAccount"], SERVICE_ACCOUNT);
    }

    // A CA file that cannot be used: a clear error naming the file, no call.
    let empty = podid.dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let missing = podid.dir.path().join("missing.crt");
    let key_only = podid.dir.path().join("key-only.pem");
    std::fs::write(&key_only, podid.ca.leaf(2, "k").unwrap().key_pem).unwrap();
    for (path, says) in [
        (&empty, "holds no certificate"),
        (&key_only, "holds no certificate"),
        (&missing, "cannot read the CA file"),
    ] {
        let out = podid.cli(&list, Ca::Flag(path));
        assert!(!out.status.success());
        let text = stderr(&out);
        assert!(
            text.contains(says) && text.contains(&path.display().to_string()),
            "{text}"
        );
    }
}

/// Starts `podid agent` for [`CLUSTER`] on 127.0.0.1 with the node key; its
/// credential address, or its output when it exits first.
fn start_agent(podid: &HttpsPodid, ca: Ca<'_>) -> Result<(ChildProcess, String), String> {
    let mut command = Command::new(podid_binary());
    command
        .arg("agent")
        .args(loopback_agent_args(CLUSTER, podid.endpoint()));
    with_key(&mut command, &NODE);
    ca.apply(&mut command);
    let mut agent = ChildProcess::spawn("podid agent", command, true).unwrap();
    match agent.wait_for_line(AGENT_LISTENING, LIMIT) {
        Ok(addr) => Ok((agent, addr)),
        Err(e) => Err(e.to_string()),
    }
}

/// The agent's answer to a pod's credential request: status and JSON.
async fn credentials(addr: &str, token: &str) -> (u16, Value) {
    let client = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    let response = client
        .get(format!("http://{addr}/v1/credentials"))
        .header("authorization", token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_the_ca_file_gets_credentials_over_https() {
    let podid = HttpsPodid::start();
    podid.register();
    // aws-sdk-eksauth offers h2 and http/1.1 (ALPN); the server picks h2.
    let (_agent, addr) = start_agent(&podid, Ca::Flag(&podid.ca_file())).unwrap();
    let (status, body) = credentials(&addr, &podid.token("p1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["AccessKeyId"].as_str().is_some_and(|k| !k.is_empty()),
        "{body}"
    );
    assert!(body["Token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_the_ca_refuses_the_broker_and_says_why() {
    let podid = HttpsPodid::start();
    podid.register();
    let (agent, addr) = start_agent(&podid, Ca::None).unwrap();
    let (status, body) = credentials(&addr, &podid.token("p2")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["message"],
        "cannot connect to the credential broker: its TLS certificate is not trusted",
        "{body}"
    );
    // The log line is written as the call fails; its writer may lag a little.
    let deadline = Instant::now() + LIMIT;
    let log = loop {
        let log = agent.stderr();
        if log.contains("invalid peer certificate") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert!(log.contains("--ca-file"), "{log}");
}

#[test]
fn agent_does_not_start_with_a_ca_file_it_cannot_use() {
    let podid = HttpsPodid::start();
    let empty = podid.dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = podid.dir.path().join("missing.crt");
    for (path, says) in [
        (&empty, "holds no certificate"),
        (&missing, "cannot read the CA file"),
    ] {
        let Err(err) = start_agent(&podid, Ca::Env(path)) else {
            panic!("the agent started with {}", path.display());
        };
        assert!(
            err.contains(says) && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
}

/// Starts `podid webhook` (HTTPS with a certificate of the test CA) for
/// [`CLUSTER`] with the reader key; its URL, or its output when it exits first.
fn start_webhook(podid: &HttpsPodid, ca: Ca<'_>) -> Result<(ChildProcess, String), String> {
    let certs = podid.dir.path().join(format!("webhook-{}", rand_suffix()));
    std::fs::create_dir(&certs).unwrap();
    let leaf = podid.ca.leaf(3, "webhook").unwrap();
    std::fs::write(certs.join("tls.crt"), leaf.cert_pem).unwrap();
    std::fs::write(certs.join("tls.key"), leaf.key_pem).unwrap();
    let mut command = Command::new(podid_binary());
    command
        .args(["webhook", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .args(["--cluster-name", CLUSTER, "--endpoint", podid.endpoint()])
        .args(["--region", "us-east-1"]);
    with_key(&mut command, &READER);
    ca.apply(&mut command);
    let mut webhook = ChildProcess::spawn("podid webhook", command, true).unwrap();
    match webhook.wait_for_line("podid webhook listening on ", LIMIT) {
        Ok(url) => Ok((webhook, url)),
        Err(e) => Err(e.to_string()),
    }
}

fn rand_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The webhook's answer to the CREATE of a pod of `service_account`.
async fn admit(podid: &HttpsPodid, url: &str, service_account: &str) -> Value {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(podid.ca.pem.as_bytes()).unwrap())
        .timeout(LIMIT)
        .build()
        .unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "tls-review",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "tls-test"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": NAMESPACE},
                "spec": {"serviceAccountName": service_account, "containers": [{"name": "c", "image": "i"}]}
            }
        }
    });
    let response = client
        .post(format!("{url}/mutate"))
        .json(&review)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_looks_associations_up_over_https_with_the_ca_file_only() {
    let podid = HttpsPodid::start();
    podid.register();

    let (_trusting, url) = start_webhook(&podid, Ca::Flag(&podid.ca_file())).unwrap();
    let answer = admit(&podid, &url, SERVICE_ACCOUNT).await;
    assert_eq!(answer["allowed"], true);
    assert!(answer.get("warnings").is_none(), "{answer}");
    assert!(answer["patch"].is_string(), "injected: {answer}");
    let answer = admit(&podid, &url, "not-associated").await;
    assert!(answer.get("patch").is_none(), "{answer}");

    // Without the CA: the pod is admitted unchanged, and the warning says why.
    let (_untrusting, url) = start_webhook(&podid, Ca::None).unwrap();
    let answer = admit(&podid, &url, SERVICE_ACCOUNT).await;
    assert_eq!(answer["allowed"], true);
    assert!(answer.get("patch").is_none(), "{answer}");
    let warning = answer["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("invalid peer certificate: UnknownIssuer"),
        "{answer}"
    );

    // A CA file holding no certificate stops it at start.
    let key_only = podid.dir.path().join("webhook-key-only.pem");
    std::fs::write(&key_only, podid.ca.leaf(4, "k").unwrap().key_pem).unwrap();
    let Err(err) = start_webhook(&podid, Ca::Env(&key_only)) else {
        panic!("the webhook started with a CA file holding no certificate");
    };
    assert!(
        err.contains("holds no certificate") && err.contains(&key_only.display().to_string()),
        "{err}"
    );
}
