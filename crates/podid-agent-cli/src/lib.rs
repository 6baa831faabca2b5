//! The node agent's command line: `podid agent [init]` and the agent-only
//! `podid-agent [init]` executable (a DaemonSet with hostNetwork).
//!
//! Flags are named like the stock `eks-pod-identity-agent server`'s where they
//! mean the same. The node's own AWS key (which signs the broker calls) comes
//! from the standard AWS credential chain (`AWS_ACCESS_KEY_ID`, …).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_credential_types::provider::ProvideCredentials;
use clap::{Args, Subcommand};
use podid_agent::follow::{ChangeFollower, FeedAuth, FeedSettings, OpensOnFirstCall, StartGate};
use podid_agent::http::{HttpClient, HttpSettings, Trust};
use podid_agent::identity::IdentityToken;
use podid_agent::podcheck::{PodCheckMode, PodCheckSettings};
use podid_agent::ratelimit::ClientLimit;
use podid_agent::{
    Agent, AgentConfig, CachePolicy, CredentialSource, EksAuthUpstream, SystemClock,
    UpstreamSettings,
};

/// `podid agent [init]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentCommand {
    #[command(subcommand)]
    step: Option<AgentStep>,
    #[command(flatten)]
    args: AgentArgs,
}

/// Steps other than serving.
#[derive(Debug, Subcommand)]
enum AgentStep {
    /// Put the agent's addresses on this node (dummy link pod-id-link0 with
    /// 169.254.170.23/32 and fd00:ec2::23/128; `lo` without a dummy driver).
    /// Idempotent. Needs CAP_NET_ADMIN; run as the DaemonSet's init container.
    Init,
}

/// Runs `podid agent` or `podid agent init`.
pub async fn command(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd.step {
        Some(AgentStep::Init) => init().await,
        None => run(cmd.args).await,
    }
}

async fn init() -> anyhow::Result<()> {
    use podid_netinit::AddressOutcome;
    let report = podid_netinit::ensure_agent_addresses().await?;
    if report.fell_back_to_loopback {
        println!(
            "the kernel has no dummy link driver: using lo instead of {}",
            podid_netinit::LINK_NAME
        );
    }
    println!(
        "link {}: {}",
        report.link,
        if report.link_created {
            "created"
        } else {
            "present"
        }
    );
    for (ip, outcome) in &report.addresses {
        match outcome {
            AddressOutcome::Present => println!("address {ip}: present"),
            AddressOutcome::Added => println!("address {ip}: added"),
            AddressOutcome::Failed(why) => {
                println!("address {ip}: NOT added ({why}); serving without it")
            }
        }
    }
    println!(
        "{}",
        if report.changed() {
            "changed"
        } else {
            "nothing to change"
        }
    );
    Ok(())
}

/// Flags of `podid agent`; each has an environment variable too.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Name of the cluster this node belongs to, as registered with podid.
    #[arg(long, short = 'c', env = "PODID_AGENT_CLUSTER_NAME", required = true)]
    cluster_name: Option<String>,
    /// EKS Auth endpoint: podid's server URL (default: AWS EKS Auth in the region).
    #[arg(long, env = "PODID_AGENT_ENDPOINT")]
    endpoint: Option<String>,
    /// Addresses to serve credentials on, comma-separated (IPv6 with or without
    /// brackets). One that cannot be bound is skipped; at least one must bind.
    #[arg(
        long,
        short = 'b',
        env = "PODID_AGENT_BIND_HOSTS",
        value_delimiter = ',',
        default_value = "169.254.170.23,[fd00:ec2::23]",
        value_parser = parse_bind_host
    )]
    bind_hosts: Vec<IpAddr>,
    /// Port of the credential listeners (0 picks a free port; bound addresses are printed).
    #[arg(long, short = 'p', default_value_t = 80, env = "PODID_AGENT_PORT")]
    port: u16,
    /// Port of `/healthz` and `/readyz` on localhost.
    #[arg(long, default_value_t = 2703, env = "PODID_AGENT_PROBE_PORT")]
    probe_port: u16,
    /// Address of the metrics server (0.0.0.0 to let scrapers on other hosts in).
    #[arg(long, default_value = "127.0.0.1", env = "PODID_AGENT_METRICS_ADDRESS")]
    metrics_address: IpAddr,
    /// Port of `/metrics`.
    #[arg(long, default_value_t = 2705, env = "PODID_AGENT_METRICS_PORT")]
    metrics_port: u16,
    /// Most pods' credentials held in memory (least recently used go first); 0 disables caching.
    #[arg(long, default_value_t = 10_000, env = "PODID_AGENT_MAX_CACHE_SIZE")]
    max_cache_size: usize,
    /// Most pods whose token the agent keeps, to refresh their credentials
    /// before they ask (~1.2 KiB each); the others are refreshed when they ask.
    #[arg(long, default_value_t = CachePolicy::default().max_refresh_ahead, env = "PODID_AGENT_MAX_REFRESH_AHEAD")]
    max_refresh_ahead: usize,
    /// Seconds a token the broker refused (ResourceNotFound, AccessDenied,
    /// InvalidToken, ExpiredToken) is answered from memory, never past its
    /// `exp`; 0 turns this negative cache off.
    #[arg(long, default_value_t = CachePolicy::default().refused_ttl.as_secs(), env = "PODID_AGENT_REFUSED_TTL_SECS")]
    refused_ttl_secs: u64,
    /// Most refused tokens remembered (the oldest forgotten first).
    #[arg(long, default_value_t = CachePolicy::default().max_refused, env = "PODID_AGENT_MAX_REFUSED")]
    max_refused: usize,
    /// Requests per second each credential listener accepts (429 beyond); 0 = unlimited.
    #[arg(long, default_value_t = 0, env = "PODID_AGENT_RATE_LIMIT")]
    rate_limit: u32,
    /// Requests per second each source address (pod) may send (429 beyond),
    /// checked before anything else; 0 turns the per-client limit off.
    #[arg(long, default_value_t = ClientLimit::default().rate, env = "PODID_AGENT_CLIENT_RATE_LIMIT")]
    client_rate_limit: u32,
    /// Requests a source address may send at once after being quiet.
    #[arg(long, default_value_t = ClientLimit::default().burst, env = "PODID_AGENT_CLIENT_BURST")]
    client_burst: u32,
    /// Source addresses the per-client limit tracks at once (beyond it,
    /// those whose bucket is full again are forgotten, then the longest unseen).
    #[arg(long, default_value_t = ClientLimit::default().max_clients, env = "PODID_AGENT_CLIENT_LIMIT_MAX_CLIENTS")]
    client_limit_max_clients: usize,
    /// Refresh credentials this many seconds before they expire (sessions
    /// longer than this; shorter ones at half-life). Default: 1200 for sessions
    /// over 30 minutes, so pods always get more than 15 minutes of validity.
    #[arg(long, env = "PODID_AGENT_REFRESH_LEAD_SECS")]
    refresh_lead_secs: Option<u64>,
    /// Region used to sign broker calls (default: the AWS region chain, else us-east-1).
    #[arg(long, env = "PODID_AGENT_REGION")]
    region: Option<String>,
    /// PEM file of a private CA to trust, besides the system roots, for an
    /// https:// --endpoint (e.g. the CA that signed podid server's certificate).
    #[arg(long, env = "PODID_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The agent's own projected service-account token (audience `podid`):
    /// sent to podid's server as `Authorization: Bearer` instead of a SigV4
    /// signature, so no AWS credentials are loaded; read again when kubelet
    /// rotates it. Needs --endpoint.
    #[arg(long, env = "PODID_AGENT_IDENTITY_TOKEN_FILE")]
    identity_token_file: Option<PathBuf>,
    /// Follow the cluster's change feed (true|false) and drop revoked
    /// credentials at once. Default: true with --endpoint (podid's server),
    /// false without (AWS's EKS Auth has no feed).
    #[arg(long, env = "PODID_AGENT_FOLLOW_CHANGES", action = clap::ArgAction::Set)]
    follow_changes: Option<bool>,
    /// Whether each token's pod runs on this node (docs/agent.md, "Pod check").
    #[command(flatten, next_help_heading = "Pod check")]
    pod_check: PodCheckArgs,
    /// Limits of each credential listener.
    #[command(flatten, next_help_heading = "Credential listener limits")]
    listen: CredentialListenArgs,
}

/// Flags of the pod check: asks the node's kubelet which pods run here.
#[derive(Debug, Args)]
pub struct PodCheckArgs {
    /// The node's kubelet, e.g. https://$(NODE_IP):10250: before serving or
    /// refreshing a pod's credentials the agent checks in its `GET /pods`
    /// that the pod runs on this node. Off when not given.
    #[arg(long, env = "PODID_AGENT_KUBELET_URL")]
    kubelet_url: Option<String>,
    /// PEM CA bundle the kubelet's serving certificate must chain to (only
    /// it; default: the system roots).
    #[arg(long, env = "PODID_AGENT_KUBELET_CA_FILE")]
    kubelet_ca_file: Option<PathBuf>,
    /// Bearer token sent to the kubelet (read again when it changes); its
    /// service account needs `get` on nodes/proxy.
    #[arg(long, env = "PODID_AGENT_KUBELET_TOKEN_FILE", default_value = podid_agent::podcheck::DEFAULT_KUBELET_TOKEN_FILE)]
    kubelet_token_file: PathBuf,
    /// Accept any kubelet certificate (kubelets serving a self-signed one).
    #[arg(
        long,
        env = "PODID_AGENT_KUBELET_INSECURE_SKIP_TLS_VERIFY",
        conflicts_with = "kubelet_ca_file"
    )]
    kubelet_insecure_skip_tls_verify: bool,
    /// When the kubelet cannot be asked: refuse (503, not ready) or serve.
    #[arg(long, env = "PODID_AGENT_POD_CHECK", value_enum, default_value_t = PodCheckFlag::FailClosed)]
    pod_check: PodCheckFlag,
    /// Milliseconds a list of the kubelet's pods is used before asking again.
    #[arg(long, env = "PODID_AGENT_POD_CHECK_CACHE_MS", default_value_t = 1000)]
    pod_check_cache_ms: u64,
}

/// `--pod-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PodCheckFlag {
    /// Serve as if the pod ran here.
    FailOpen,
    /// Refuse until the kubelet answers again.
    FailClosed,
}

impl PodCheckArgs {
    /// The pod check's settings; `None` without --kubelet-url.
    fn settings(&self) -> anyhow::Result<Option<PodCheckSettings>> {
        let Some(url) = &self.kubelet_url else {
            return Ok(None);
        };
        if self.pod_check_cache_ms == 0 {
            bail!("--pod-check-cache-ms must be at least 1");
        }
        if url.starts_with("http://") {
            tracing::warn!(
                "--kubelet-url is plain http: the kubelet token crosses the network in clear"
            );
        }
        if self.kubelet_insecure_skip_tls_verify {
            tracing::warn!(
                "--kubelet-insecure-skip-tls-verify: the kubelet's certificate is not checked"
            );
        }
        Ok(Some(PodCheckSettings {
            kubelet_url: url.clone(),
            ca_file: self.kubelet_ca_file.clone(),
            token_file: self.kubelet_token_file.clone(),
            insecure_skip_tls_verify: self.kubelet_insecure_skip_tls_verify,
            mode: match self.pod_check {
                PodCheckFlag::FailOpen => PodCheckMode::FailOpen,
                PodCheckFlag::FailClosed => PodCheckMode::FailClosed,
            },
            cache: Duration::from_millis(self.pod_check_cache_ms),
        }))
    }
}

podid_listen::listen_args! {
    /// The limits of each credential listener (`PODID_AGENT_` variables).
    pub struct CredentialListenArgs {
        prefix: "PODID_AGENT_",
        defaults: podid_listen::ListenLimits::agent(),
    }
}

/// A `--bind-hosts` item that is not an IP address.
#[derive(Debug, thiserror::Error)]
#[error("'{text}' is not an IP address")]
pub struct BindHostError {
    text: String,
    #[source]
    source: std::net::AddrParseError,
}

fn parse_bind_host(s: &str) -> Result<IpAddr, BindHostError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse().map_err(|source| BindHostError {
        text: s.to_owned(),
        source,
    })
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let cluster_name = args.cluster_name.clone().unwrap_or_default();
    if cluster_name.trim().is_empty() {
        bail!("--cluster-name must not be empty");
    }
    if let Some(endpoint) = &args.endpoint {
        let url = url::Url::parse(endpoint)
            .with_context(|| format!("--endpoint '{endpoint}' is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--endpoint must be an http:// or https:// URL");
        }
    }
    if args.endpoint.is_none() {
        if args.identity_token_file.is_some() {
            bail!("--identity-token-file needs --endpoint (podid's server): AWS's EKS Auth takes SigV4 only");
        }
        if args.follow_changes == Some(true) {
            bail!("--follow-changes needs --endpoint (podid's server): AWS's EKS Auth has no change feed");
        }
    }
    let identity = match &args.identity_token_file {
        Some(path) => Some(Arc::new(IdentityToken::open(path)?)),
        None => None,
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if identity.is_some() {
        // The token is the agent's proof: no AWS credentials are looked for.
        loader = loader.no_credentials();
    }
    let mut ca = None;
    if let Some(path) = &args.ca_file {
        // Every HTTPS call of the SDK config (the broker's included) trusts it.
        let bundle = podid_ca::CaBundle::read(path)?;
        tracing::info!(ca_file = %path.display(), certificates = bundle.certificates().len(), "trusting a private CA besides the system roots");
        loader = loader.http_client(bundle.sdk_http_client()?);
        ca = Some(bundle);
    }
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        tracing::warn!("no AWS region configured (--region or AWS_REGION); signing for us-east-1");
        sdk = sdk
            .into_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
    }
    match (&identity, sdk.credentials_provider()) {
        (Some(identity), _) => tracing::info!(
            token_file = %identity.path().display(),
            "authenticating to the server with the agent's identity token"
        ),
        (None, Some(provider)) => {
            if let Err(e) = provider.provide_credentials().await {
                tracing::warn!(error = %e, "the node's AWS credentials cannot be loaded yet; broker calls fail until they can");
            }
        }
        (None, None) => tracing::warn!("no AWS credentials provider: broker calls are unsigned"),
    }
    let settings = UpstreamSettings::default();
    let endpoint = args.endpoint.as_deref();
    let upstream = match &identity {
        Some(identity) => EksAuthUpstream::with_identity_token(
            &sdk,
            endpoint,
            cluster_name.clone(),
            &settings,
            identity.clone(),
        ),
        None => EksAuthUpstream::new(&sdk, endpoint, cluster_name.clone(), &settings),
    };
    let follower = match endpoint {
        Some(endpoint) if args.follow_changes.unwrap_or(true) => {
            change_follower(endpoint, &cluster_name, identity, &sdk, ca)?
        }
        _ => None,
    };
    let config = AgentConfig {
        bind_hosts: args.bind_hosts,
        port: args.port,
        probe_port: args.probe_port,
        metrics_address: args.metrics_address,
        metrics_port: args.metrics_port,
        rate_limit: args.rate_limit,
        client_limit: ClientLimit {
            rate: args.client_rate_limit,
            burst: args.client_burst,
            max_clients: args.client_limit_max_clients,
        },
        limits: args.listen.limits()?,
        cache: match args.refresh_lead_secs {
            Some(lead) => CachePolicy {
                max_entries: args.max_cache_size,
                max_refresh_ahead: args.max_refresh_ahead,
                refresh_lead: Duration::from_secs(lead),
                long_session: Duration::from_secs(lead),
                refused_ttl: Duration::from_secs(args.refused_ttl_secs),
                max_refused: args.max_refused,
                ..CachePolicy::default()
            },
            None => CachePolicy {
                max_entries: args.max_cache_size,
                max_refresh_ahead: args.max_refresh_ahead,
                refused_ttl: Duration::from_secs(args.refused_ttl_secs),
                max_refused: args.max_refused,
                ..CachePolicy::default()
            },
        },
        pod_check: args.pod_check.settings()?,
        ..AgentConfig::default()
    };
    // The follower starts with the first broker call: an idle agent holds nothing to revoke.
    let gate = Arc::new(StartGate::default());
    let source: Arc<dyn CredentialSource> = match follower {
        Some(_) => Arc::new(OpensOnFirstCall::new(Arc::new(upstream), gate.clone())),
        None => Arc::new(upstream),
    };
    let mut agent = Agent::bind(config, source, Arc::new(SystemClock)).await?;
    if let Some(follower) = follower {
        agent.follow_changes(follower.start_on(gate));
    }
    // One machine-readable line per listener on stdout, for scripts and tests
    // that start the agent on port 0.
    for addr in agent.credential_addrs() {
        tracing::info!(%addr, "serving credentials");
        println!("podid agent listening on {addr}");
    }
    println!("podid agent probes on {}", agent.probe_addr());
    println!("podid agent metrics on {}", agent.metrics_addr());
    tracing::info!(
        cluster = %cluster_name,
        endpoint = args.endpoint.as_deref().unwrap_or("AWS EKS Auth"),
        region = sdk.region().map(|r| r.as_ref()).unwrap_or(""),
        "agent ready"
    );
    agent.serve(podid_runtime::shutdown_signal()).await?;
    Ok(())
}

/// The follower of `cluster`'s change feed at `endpoint`, proving itself as
/// the broker calls do; `None` (said) when the agent has no proof to give.
fn change_follower(
    endpoint: &str,
    cluster: &str,
    identity: Option<Arc<IdentityToken>>,
    sdk: &aws_config::SdkConfig,
    ca: Option<podid_ca::CaBundle>,
) -> anyhow::Result<Option<ChangeFollower>> {
    let auth = match (identity, sdk.credentials_provider()) {
        (Some(identity), _) => FeedAuth::Bearer(identity),
        (None, Some(credentials)) => FeedAuth::SigV4 {
            credentials,
            region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        },
        (None, None) => {
            tracing::warn!(
                "no AWS credentials and no identity token: the change feed is not followed"
            );
            return Ok(None);
        }
    };
    let trust = if endpoint.starts_with("http://") {
        // This client calls only the endpoint and follows no redirects: over
        // http:// it never makes a TLS connection, so no roots are loaded.
        Trust::InsecureSkipVerify
    } else {
        Trust::System(ca)
    };
    let mut settings = HttpSettings::new(trust);
    settings.max_answer_bytes = 4 * 1024 * 1024;
    let client = HttpClient::new(settings).context("cannot set up the change feed's client")?;
    tracing::info!(cluster, "following the cluster's change feed");
    Ok(Some(ChangeFollower::new(
        client,
        auth,
        FeedSettings::new(endpoint, cluster),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_hosts_take_brackets_or_not() {
        assert_eq!(
            parse_bind_host("169.254.170.23").unwrap().to_string(),
            "169.254.170.23"
        );
        assert_eq!(
            parse_bind_host("[fd00:ec2::23]").unwrap().to_string(),
            "fd00:ec2::23"
        );
        assert_eq!(
            parse_bind_host("fd00:ec2::23").unwrap().to_string(),
            "fd00:ec2::23"
        );
        let err = parse_bind_host(" localhost ").unwrap_err();
        assert_eq!(err.to_string(), "'localhost' is not an IP address");
        assert!(std::error::Error::source(&err).is_some());
    }
}
