//! How tests and benchmarks run a `podid-agent` on the loopback: its flags
//! and the lines it prints its addresses on.

/// The line with the credential listener's address.
pub const AGENT_LISTENING: &str = "podid agent listening on ";

/// The line with the probe listener's address.
pub const AGENT_PROBES: &str = "podid agent probes on ";

/// The line with the metrics listener's address.
pub const AGENT_METRICS: &str = "podid agent metrics on ";

/// The flags of an agent for `cluster` asking `endpoint` (region
/// us-east-1) with all three listeners on 127.0.0.1, port 0.
pub fn loopback_agent_args(cluster: &str, endpoint: &str) -> Vec<String> {
    [
        "--cluster-name",
        cluster,
        "--endpoint",
        endpoint,
        "--region",
        "us-east-1",
        "--bind-hosts",
        "127.0.0.1",
        "--port",
        "0",
        "--probe-port",
        "0",
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Asks an agent's credential endpoint `url` with `token` as the
/// `Authorization` header: the status and the JSON body (`Null` if not JSON).
pub async fn ask_credentials(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let response = client
        .get(url)
        .header("authorization", token)
        .send()
        .await
        .expect("the agent answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}
