//! `podid dev kubelet`: a STAND-IN for a kubelet's pod listing, for tests.
//! `GET /pods` answers the pods file's `PodList` (k8s-openapi, read again on
//! every request) to callers sending the token file's bearer token (401
//! otherwise, as a kubelet answers an unauthenticated call); nothing else of
//! the kubelet is served.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use podid_listen::RequestBody;

use super::pods_file::read_pod_list;
use super::stand_in::{bearer_matches, serve, StandInArgs};

/// The path the agent asks.
pub const PODS_PATH: &str = "/pods";

/// Flags of `podid dev kubelet`.
#[derive(Debug, Args)]
pub struct KubeletArgs {
    /// The pods on this node: a Kubernetes PodList JSON file, read again on every request.
    #[arg(long)]
    pods_file: PathBuf,
    #[command(flatten)]
    serve: StandInArgs,
}

/// What every request reads.
struct StandIn {
    pods_file: PathBuf,
    token_file: PathBuf,
}

/// Runs the stand-in until SIGTERM or Ctrl-C.
pub async fn run(args: KubeletArgs) -> anyhow::Result<()> {
    // Fail at start on files that cannot be read at all.
    read_pod_list(&args.pods_file)?;
    let token_file = &args.serve.token_file;
    std::fs::metadata(token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let stand_in = Arc::new(StandIn {
        pods_file: args.pods_file,
        token_file: token_file.clone(),
    });
    serve(
        "dev kubelet",
        args.serve.listen,
        args.serve.tls(),
        move |request| {
            let stand_in = stand_in.clone();
            async move { answer(&stand_in, &request) }
        },
    )
    .await
}

/// A plain-text answer, as the kubelet gives its errors.
fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn answer(stand_in: &StandIn, request: &Request<RequestBody>) -> Response<Full<Bytes>> {
    if request.uri().path() != PODS_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "404 page not found (this stand-in serves only /pods)",
        );
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match bearer_matches(&stand_in.token_file, request) {
        Ok(true) => {}
        Ok(false) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
    let list = match read_pod_list(&stand_in.pods_file) {
        Ok(list) => list,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let body = match serde_json::to_vec(&list) {
        Ok(body) => body,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
