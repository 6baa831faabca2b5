//! What podid's executables (`podid`, `podid-agent`) share: the logging
//! set-up, the async runtime, and the shutdown signal.
#![forbid(unsafe_code)]

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Targets whose debug and trace output can include request bodies (tokens)
/// and signing material: never logged below `info`, whatever is asked.
pub const SECRET_BEARING_TARGETS: [&str; 7] = [
    "aws_smithy_runtime",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "h2",
    "reqwest",
];

/// Installs the global tracing subscriber writing to stderr. A filter that
/// does not parse falls back to `info`.
pub fn init_logging(format: LogFormat, filter: &str) {
    init_logging_to(format, filter, std::io::stderr);
}

/// The same, with lines handed to a writer thread (`tracing-appender`, which
/// never drops a line) that writes them to stderr in blocks: for servers that
/// log every request. Keep the guard until the end of `main`; dropping it
/// writes what is pending.
pub fn init_logging_buffered(
    format: LogFormat,
    filter: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("podid-log")
        .finish(std::io::BufWriter::with_capacity(
            32 * 1024,
            std::io::stderr(),
        ));
    init_logging_to(format, filter, writer);
    guard
}

fn init_logging_to<W>(format: LogFormat, filter: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in SECRET_BEARING_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The multi-threaded tokio runtime every podid server runs on (one worker
/// per CPU the process may use).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Resolves at SIGTERM (Kubernetes) or Ctrl-C; servers then stop accepting
/// and drain.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
