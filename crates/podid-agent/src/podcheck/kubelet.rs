//! The node's kubelet as the source of running pods: `GET {kubelet}/pods`
//! with the agent's bearer token (as SPIRE's Kubernetes workload attestor
//! asks it), answered with a k8s-openapi `PodList`.

use std::time::Duration;

use async_trait::async_trait;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use http::{HeaderMap, StatusCode, Uri};
use k8s_openapi::api::core::v1::Pod;

use super::{PodCheckSettings, PodSource, RunningPods};
use crate::error::AgentError;
use crate::http::{parse_url, HttpClient, HttpSettings, Trust};
use crate::identity::IdentityToken;

/// The kubelet's answer to `GET /pods`.
pub type PodList = k8s_openapi::List<Pod>;

/// The pods of `list` that run: every pod with a uid whose phase is not
/// `Succeeded` or `Failed` (`Pending` pods run their init containers).
pub fn running_pods(list: &PodList) -> RunningPods {
    RunningPods::from_uids(
        list.items
            .iter()
            .filter(|pod| {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .filter_map(|pod| pod.metadata.uid.as_deref())
            .filter(|uid| !uid.is_empty()),
    )
}

/// Lists this node's pods from its kubelet.
pub struct KubeletPods {
    client: HttpClient,
    url: Uri,
    /// The bearer token, read again when its file changes.
    token: IdentityToken,
}

impl std::fmt::Debug for KubeletPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletPods")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KubeletPods {
    /// Asks `{settings.kubelet_url}/pods`; its CA and token files are read now.
    pub fn new(settings: &PodCheckSettings) -> Result<KubeletPods, AgentError> {
        let config = |what: String| AgentError::PodCheckConfig { what };
        let base = settings.kubelet_url.trim_end_matches('/');
        let url = parse_url(&format!("{base}/pods"))
            .map_err(|e| config(format!("--kubelet-url: {e}")))?;
        let trust = match (&settings.ca_file, settings.insecure_skip_tls_verify) {
            (Some(_), true) => {
                return Err(config(
                    "give --kubelet-ca-file or --kubelet-insecure-skip-tls-verify, not both".into(),
                ))
            }
            (Some(path), false) => {
                Trust::Only(podid_ca::CaBundle::read(path).map_err(|e| config(e.to_string()))?)
            }
            (None, true) => Trust::InsecureSkipVerify,
            (None, false) => Trust::System(None),
        };
        let client = HttpClient::new(HttpSettings {
            connect_timeout: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            ..HttpSettings::new(trust)
        })
        .map_err(|e| config(e.to_string()))?;
        Ok(KubeletPods {
            client,
            url,
            token: IdentityToken::open(&settings.token_file)
                .map_err(|e| AgentError::KubeletToken(Box::new(e)))?,
        })
    }
}

#[async_trait]
impl PodSource for KubeletPods {
    async fn running_pods(&self) -> Result<RunningPods, AgentError> {
        let mut headers = HeaderMap::new();
        let token = self
            .token
            .authorization()
            .map_err(|e| AgentError::KubeletToken(Box::new(e)))?;
        headers.insert(AUTHORIZATION, token);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let answer = self
            .client
            .get(&self.url, &headers)
            .await
            .map_err(|e| AgentError::KubeletUnreachable(Box::new(e)))?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(AgentError::KubeletUnauthorized {
                    status: answer.status.as_u16(),
                })
            }
            status => {
                return Err(AgentError::KubeletStatus {
                    status: status.as_u16(),
                })
            }
        }
        let list: PodList = serde_json::from_slice(&answer.body).map_err(AgentError::NotPodList)?;
        Ok(running_pods(&list))
    }
}
