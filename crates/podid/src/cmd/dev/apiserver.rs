//! `podid dev apiserver`: a STAND-IN for a Kubernetes API server's `TokenReview`
//! endpoint, for tests. It authenticates tokens signed with a `podid dev cluster`
//! key whose pod is in a live-pods file; nothing else of the API is served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use podid_listen::RequestBody;
use podid_token::{verify_token, ClusterTrust, KeySet, PodIdentity, SUBJECT_PREFIX};

use super::pods_file::{find_pod, read_pod_list};

/// The path of `TokenReview` creation.
pub const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The largest request body read (the real API server allows 3 MiB; a review is a token).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Flags of `podid dev apiserver`.
#[derive(Debug, Args)]
pub struct ApiServerArgs {
    /// A directory made by `podid dev cluster create`: its key verifies the tokens.
    #[arg(long)]
    cluster_dir: PathBuf,
    /// The live pods: a Kubernetes PodList JSON file, read again on every review.
    #[arg(long)]
    pods_file: PathBuf,
    /// Address to listen on (`:0` picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File holding the bearer token callers must send (read again on every request).
    #[arg(long)]
    token_file: PathBuf,
    /// PEM certificate chain to serve HTTPS with (reloaded when it changes).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// What every request reads.
struct StandIn {
    trust: ClusterTrust,
    keys: KeySet,
    pods_file: PathBuf,
    token_file: PathBuf,
}

/// Runs the stand-in until SIGTERM or Ctrl-C.
pub async fn run(args: ApiServerArgs) -> anyhow::Result<()> {
    let (meta, key) = super::read_cluster(&args.cluster_dir)?;
    let jwks = key.jwks();
    let keys = KeySet::from_jwks(&jwks).context("the test cluster's key is not usable")?;
    // Fail at start on files that cannot be read at all.
    read_pod_list(&args.pods_file)?;
    std::fs::metadata(&args.token_file)
        .with_context(|| format!("cannot read {}", args.token_file.display()))?;
    let stand_in = Arc::new(StandIn {
        trust: ClusterTrust {
            name: meta.name,
            issuer: meta.issuer,
            audience: String::new(),
            jwks,
            jwks_uri: None,
            version: 1,
        },
        keys,
        pods_file: args.pods_file,
        token_file: args.token_file,
    });
    let tls = args.tls_cert.as_ref().zip(args.tls_key.as_ref());
    super::stand_in::serve("dev apiserver", args.listen, tls, move |request| {
        let stand_in = stand_in.clone();
        async move { answer(&stand_in, request).await }
    })
    .await
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A `Status` failure, as the API server answers errors.
fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    };
    json_response(code, &status)
}

async fn answer(stand_in: &StandIn, request: Request<RequestBody>) -> Response<Full<Bytes>> {
    if request.uri().path() != TOKEN_REVIEWS_PATH {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource (this stand-in serves only tokenreviews)",
        );
    }
    if request.method() != Method::POST {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
    }
    match super::stand_in::bearer_matches(&stand_in.token_file, &request) {
        Ok(true) => {}
        Ok(false) => return failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e),
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            // The rest of the body is not read: the connection cannot carry another request.
            let mut response = failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "the request body is too large",
            );
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return response;
        }
        Err(e) if podid_listen::is_body_timeout(&*e) => {
            return failure(
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "the body was not sent in time",
            )
        }
        Err(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "cannot read the body",
            )
        }
    };
    let mut review: TokenReview = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("the body is not a TokenReview: {e}"),
            )
        }
    };
    let token = review.spec.token.take().unwrap_or_default();
    if token.is_empty() {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
        );
    }
    let audiences = review.spec.audiences.clone().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    review.status = Some(match authenticate(stand_in, &token, &audiences, now) {
        Ok(status) => status,
        Err(error) => TokenReviewStatus {
            authenticated: Some(false),
            error: Some(error),
            ..TokenReviewStatus::default()
        },
    });
    json_response(StatusCode::CREATED, &review)
}

/// The `aud` of an unverified token (only to pick the audience it is then verified for).
fn token_audiences(token: &str) -> Vec<String> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    match payload.as_ref().and_then(|p| p.get("aud")) {
        Some(serde_json::Value::String(aud)) => vec![aud.clone()],
        Some(serde_json::Value::Array(auds)) => auds
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reviews one token as the API server does for a bound service-account token.
fn authenticate(
    stand_in: &StandIn,
    token: &str,
    requested: &[String],
    now: i64,
) -> Result<TokenReviewStatus, String> {
    let own = token_audiences(token);
    let matching: Vec<String> = if requested.is_empty() {
        own.clone()
    } else {
        requested
            .iter()
            .filter(|a| own.contains(a))
            .cloned()
            .collect()
    };
    let Some(first) = matching.first() else {
        return Err(format!(
            "[invalid bearer token, token audiences {own:?} is invalid for the target audiences {requested:?}]"
        ));
    };
    let trust = ClusterTrust {
        audience: first.clone(),
        ..stand_in.trust.clone()
    };
    let pod: PodIdentity = verify_token(token, &trust, &stand_in.keys, now)
        .map_err(|e| format!("[invalid bearer token, {e}]"))?;
    let pods = read_pod_list(&stand_in.pods_file).map_err(|e| format!("{e:#}"))?;
    let found = find_pod(&pods, &pod.pod_uid).filter(|p| {
        p.metadata.name.as_deref() == Some(pod.pod_name.as_str())
            && p.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
    });
    if found.is_none() {
        return Err(format!(
            "[invalid bearer token, pods \"{}\" not found (uid {})]",
            pod.pod_name, pod.pod_uid
        ));
    }
    let mut extra = BTreeMap::new();
    extra.insert(
        "authentication.kubernetes.io/pod-name".to_owned(),
        vec![pod.pod_name.clone()],
    );
    extra.insert(
        "authentication.kubernetes.io/pod-uid".to_owned(),
        vec![pod.pod_uid.clone()],
    );
    if let Some(node) = &pod.node_name {
        extra.insert(
            "authentication.kubernetes.io/node-name".to_owned(),
            vec![node.clone()],
        );
    }
    if let Some(jti) = &pod.jti {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={jti}")],
        );
    }
    Ok(TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(matching),
        user: Some(UserInfo {
            username: Some(format!(
                "{SUBJECT_PREFIX}{}:{}",
                pod.namespace, pod.service_account
            )),
            uid: pod.service_account_uid.clone(),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", pod.namespace),
                "system:authenticated".to_owned(),
            ]),
            extra: Some(extra),
        }),
        error: None,
    })
}
