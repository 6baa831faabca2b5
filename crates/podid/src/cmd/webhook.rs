//! `podid webhook`: the admission webhook that injects pod identity.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use podid_webhook::mutate::DEFAULT_CREDENTIALS_URI;
use podid_webhook::{
    AssociationLookup, CertStore, FollowSettings, FollowedAssociations, HttpLookup,
    MutationSettings, ServerAccess, Webhook, WebhookMetrics, WebhookSettings,
};

/// Flags of `podid webhook`; each has an environment variable too.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// HTTPS address to listen on (`:0` picks a free port; the bound address is printed).
    #[arg(long, default_value = "0.0.0.0:8443", env = "PODID_WEBHOOK_LISTEN")]
    listen: SocketAddr,
    /// PEM certificate chain (leaf first); reloaded when the file changes.
    #[arg(long, env = "PODID_WEBHOOK_TLS_CERT")]
    tls_cert: PathBuf,
    /// PEM private key of the certificate; reloaded when the file changes.
    #[arg(long, env = "PODID_WEBHOOK_TLS_KEY")]
    tls_key: PathBuf,
    /// The name this cluster is registered under in podid.
    #[arg(long, env = "PODID_CLUSTER_NAME")]
    cluster_name: String,
    /// podid's server, e.g. https://podid.podid-system:8080. The webhook signs
    /// its calls with the AWS credentials of its environment (a `reader` key:
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE).
    #[arg(long, env = "PODID_ENDPOINT")]
    endpoint: String,
    /// Region used in request signatures.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// PEM file of a private CA to trust, besides the built-in roots, for an
    /// https:// --endpoint (e.g. the CA that signed podid server's certificate).
    #[arg(long, env = "PODID_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Bound on one association lookup, in milliseconds; past it the pod is
    /// admitted without pod identity and with a warning. Keep it well under
    /// the MutatingWebhookConfiguration's timeoutSeconds.
    #[arg(long, default_value_t = 1500, env = "PODID_WEBHOOK_LOOKUP_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(100..=25_000))]
    lookup_timeout_ms: u64,
    /// Follow the cluster's association changes (podid's change feed) and
    /// answer admissions from them, asking the server only to catch up before
    /// a "no association"; false: ask the server on every admission.
    #[arg(long, default_value_t = true, env = "PODID_WEBHOOK_FOLLOW_CHANGES",
          action = clap::ArgAction::Set)]
    follow_changes: bool,
    /// How long one read of the change feed waits for a change, in seconds.
    #[arg(long, default_value_t = 20, env = "PODID_WEBHOOK_FOLLOW_WAIT_SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=30))]
    follow_wait_seconds: u64,
    /// With --follow-changes false: how long a positive lookup answer is
    /// reused, in seconds (0: never). Negative answers are never reused, so a
    /// new association is seen at once.
    #[arg(long, default_value_t = 30, env = "PODID_WEBHOOK_CACHE_SECONDS")]
    cache_seconds: u64,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, default_value_t = 2, env = "PODID_WEBHOOK_TLS_RELOAD_SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_seconds: u64,
    /// Value of AWS_CONTAINER_CREDENTIALS_FULL_URI (IPv6-only clusters:
    /// http://[fd00:ec2::23]/v1/credentials).
    #[arg(long, default_value = DEFAULT_CREDENTIALS_URI, env = "PODID_WEBHOOK_CREDENTIALS_URI")]
    credentials_uri: String,
    /// Limits of the HTTPS listener.
    #[command(flatten, next_help_heading = "Listener limits")]
    limits: super::listen::WebhookLimitArgs,
}

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let uri = url::Url::parse(&args.credentials_uri)
        .with_context(|| format!("--credentials-uri '{}' is not a URL", args.credentials_uri))?;
    if uri.scheme() != "http" {
        bail!("--credentials-uri must be an http:// URL (the agent's link-local address)");
    }
    let ca = args
        .ca_file
        .as_deref()
        .map(podid_client::CaBundle::read)
        .transpose()?;
    let credentials = podid_client::credentials_from_environment().await;
    if credentials.is_none() {
        tracing::warn!(
            "no AWS credentials found: calls to podid are unsigned \
             (only a server run with --insecure-no-auth accepts them)"
        );
    }
    let timeout = Duration::from_millis(args.lookup_timeout_ms);
    let access = ServerAccess {
        endpoint: args.endpoint.clone(),
        cluster: args.cluster_name.clone(),
        region: args.region.clone(),
        credentials,
        ca,
    };
    let metrics = Arc::new(WebhookMetrics::new());
    let (lookup, follower): (Arc<dyn AssociationLookup>, _) = if args.follow_changes {
        let settings = FollowSettings {
            wait: Duration::from_secs(args.follow_wait_seconds),
            ..FollowSettings::default()
        };
        let followed = FollowedAssociations::new(&access, timeout, settings, metrics.clone())?;
        let task = tokio::spawn(followed.clone().follow());
        (followed, Some(task))
    } else {
        (Arc::new(HttpLookup::at(&access, timeout)?), None)
    };
    let settings = WebhookSettings {
        mutation: MutationSettings {
            credentials_uri: args.credentials_uri.clone(),
        },
        lookup_timeout: timeout,
        positive_ttl: Duration::from_secs(args.cache_seconds),
        reload_interval: Duration::from_secs(args.tls_reload_seconds),
        limits: args.limits.limits()?,
        ..WebhookSettings::default()
    };
    let certs = Arc::new(CertStore::new(&args.tls_cert, &args.tls_key));
    let webhook = Arc::new(Webhook::new(lookup, certs, settings, metrics));
    tracing::info!(
        cluster = %args.cluster_name,
        endpoint = %args.endpoint,
        lookup_timeout_ms = args.lookup_timeout_ms,
        follow_changes = args.follow_changes,
        cache_seconds = args.cache_seconds,
        ca_file = args.ca_file.as_ref().map(|p| p.display().to_string()),
        "webhook starting"
    );
    podid_webhook::serve(
        webhook,
        args.listen,
        super::announce_listening("webhook", "https"),
        podid_runtime::shutdown_signal(),
    )
    .await?;
    if let Some(task) = follower {
        task.abort();
    }
    Ok(())
}
