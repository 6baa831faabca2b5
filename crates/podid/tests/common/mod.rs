//! Helpers shared by the binary's integration tests: start a real `podid
//! server` process and talk to it.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const ADMIN_KEY: &str = "PODIDADMIN";
pub const ADMIN_SECRET: &str = "admin-secret-0123456789abcdef";
pub const READER_KEY: &str = "PODIDREADER";
pub const READER_SECRET: &str = "reader-secret-0123456789abcdef";

/// A running `podid server`, killed on drop.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `podid server` with `args` and waits for its "listening" line.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podid"))
            .arg("server")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--region",
                "us-east-1",
                "--account-id",
                "111122223333",
            ])
            .args(args)
            .env("PODID_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podid server");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("podid server listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: stdout {line:?}, stderr {}",
                    stderr.lock().unwrap()
                )
            })
            .to_owned();
        Server {
            child,
            endpoint,
            stderr,
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a keys file with an admin and a reader key.
pub fn write_keys(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("keys.toml");
    std::fs::write(
        &path,
        format!(
            "[[key]]\naccess_key_id = \"{ADMIN_KEY}\"\nsecret_access_key = \"{ADMIN_SECRET}\"\nrole = \"admin\"\n\n\
             [[key]]\naccess_key_id = \"{READER_KEY}\"\nsecret_access_key = \"{READER_SECRET}\"\nrole = \"reader\"\n"
        ),
    )
    .unwrap();
    path
}

pub const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"test","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;

/// The server's database URL for a test: SQLite in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("podid.db").display())
}
