//! The pod check in the cache (`crate::podcheck`): a hit is served only while
//! its pod runs on this node — a hash lookup on the check's cached set, the
//! kubelet asked only when the set is old or lacks the pod — and a broker call
//! (a pod's fetch, a refresh, a revalidation) is made only for a running pod.
//! An entry whose pod is gone is dropped (no ghost renewals).

use std::sync::Arc;

use super::index::EntryClaims;
use super::{Next, Pending, PodCredentialCache, Refusal, Served, Step};
use crate::podcheck::{PodCheckMode, Verdict};
use crate::token::{PodKey, TokenDigest};
use crate::upstream::UpstreamError;

/// A hit held while the kubelet is asked about its pod.
#[derive(Debug)]
pub(super) struct HeldHit {
    digest: TokenDigest,
    pod: Option<PodKey>,
    served: Served,
}

/// 403 for a token whose pod is not running here.
fn gone() -> UpstreamError {
    UpstreamError::new(
        403,
        "AccessDeniedException",
        "the pod this token belongs to is not running on this node",
    )
}

impl PodCredentialCache {
    /// What a hit becomes: served, refused, or held for the kubelet.
    pub(super) fn gate_hit(self: &Arc<Self>, served: Served, digest: &TokenDigest) -> Step {
        let Some(pods) = &self.pods else {
            return Step::Done(Ok(served));
        };
        let pod = self.read().get(digest).and_then(|e| e.claims().pod());
        match pods.cached(pod.as_ref()) {
            Some(verdict) => Step::Done(
                self.apply(verdict, digest)
                    .map(|()| served)
                    .map_err(Refusal::Upstream),
            ),
            None => Step::Fetch(Pending(Next::Hit(HeldHit {
                digest: *digest,
                pod,
                served,
            }))),
        }
    }

    /// A held hit, once the kubelet has said (or could not).
    pub(super) async fn finish_hit(self: &Arc<Self>, hit: HeldHit) -> Result<Served, Refusal> {
        let verdict = match &self.pods {
            Some(pods) => pods.check(hit.pod.as_ref()).await,
            None => Verdict::Running,
        };
        self.apply(verdict, &hit.digest)
            .map(|()| hit.served)
            .map_err(Refusal::Upstream)
    }

    /// Before a broker call for the pod of `claims` (entry `digest`).
    pub(super) async fn gate_call(
        &self,
        digest: &TokenDigest,
        claims: &EntryClaims,
    ) -> Result<(), UpstreamError> {
        let Some(pods) = &self.pods else {
            return Ok(());
        };
        let verdict = pods.check(claims.pod().as_ref()).await;
        self.apply(verdict, digest)
    }

    /// Counts `verdict`; drops the entry `digest` of a pod that is gone; the
    /// refusal when the pod gets nothing.
    fn apply(&self, verdict: Verdict, digest: &TokenDigest) -> Result<(), UpstreamError> {
        let Some(pods) = &self.pods else {
            return Ok(());
        };
        let refused = match verdict {
            Verdict::Running => {
                self.metrics.pod_check_running.inc();
                return Ok(());
            }
            Verdict::Unverified if pods.mode() == PodCheckMode::FailOpen => {
                self.metrics.pod_check("unverified_open");
                return Ok(());
            }
            Verdict::Unverified => {
                self.metrics.pod_check("unverified_closed");
                return Err(UpstreamError::unavailable(
                    "cannot check with the kubelet that the pod runs on this node (the agent fails closed)",
                ));
            }
            Verdict::Gone => {
                self.metrics.pod_check("gone");
                gone()
            }
            Verdict::NoPod => {
                self.metrics.pod_check("no_pod");
                UpstreamError::new(
                    403,
                    "AccessDeniedException",
                    "the token names no pod, so the agent cannot check that it runs on this node",
                )
            }
        };
        if self.write().remove(digest, None) {
            self.metrics.evicted("pod_gone", 1);
            self.update_gauge();
            tracing::info!("dropped the credentials of a pod that no longer runs on this node");
        }
        Err(refused)
    }
}
