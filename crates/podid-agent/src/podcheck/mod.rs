//! "Pods that are gone get nothing": the set of pods running on this node,
//! listed from the node's kubelet (`kubelet.rs`), kept for a short time and
//! listed again by one call at a time, and the verdict on one pod.
//!
//! A pod counts as running while the kubelet lists it with a phase other
//! than `Succeeded` or `Failed` (a terminating pod — `deletionTimestamp` set —
//! still runs its containers through its grace period, and may need
//! credentials to shut down cleanly). docs/agent.md, "Pod check".

mod kubelet;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::fast::RandomState;
use podid_singleflight::SingleFlight;
use tokio::time::Instant;

use crate::error::AgentError;
use crate::metrics::AgentMetrics;
use crate::token::{pod_key, PodKey};

pub use kubelet::{running_pods, KubeletPods, PodList};

/// Where the agent's service-account token is mounted (its default kubelet credential).
pub const DEFAULT_KUBELET_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A list younger than this is trusted to be missing a pod: an unknown pod
/// within it is gone, not new (bounds the lists a gone pod's retries cause).
pub const MIN_RELIST: Duration = Duration::from_millis(250);

/// What the agent does when the kubelet cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodCheckMode {
    /// Serve as if the pod were running.
    FailOpen,
    /// Refuse (503) until the kubelet answers again.
    FailClosed,
}

impl PodCheckMode {
    /// `fail-open` or `fail-closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PodCheckMode::FailOpen => "fail-open",
            PodCheckMode::FailClosed => "fail-closed",
        }
    }
}

/// How the pod check asks the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCheckSettings {
    /// The kubelet, e.g. `https://10.0.1.7:10250` (`/pods` is appended).
    pub kubelet_url: String,
    /// PEM CA bundle the kubelet's serving certificate is checked against
    /// (only it: not the system roots).
    pub ca_file: Option<PathBuf>,
    /// The bearer token sent to the kubelet, read again when the file changes.
    pub token_file: PathBuf,
    /// Accept any kubelet certificate (self-signed kubelet certificates).
    pub insecure_skip_tls_verify: bool,
    /// What an unreachable kubelet means.
    pub mode: PodCheckMode,
    /// How long a list is used before the kubelet is asked again.
    pub cache: Duration,
}

impl PodCheckSettings {
    /// The defaults for `kubelet_url`: the mounted token, fail-closed, 1 s.
    pub fn new(kubelet_url: impl Into<String>) -> Self {
        PodCheckSettings {
            kubelet_url: kubelet_url.into(),
            ca_file: None,
            token_file: PathBuf::from(DEFAULT_KUBELET_TOKEN_FILE),
            insecure_skip_tls_verify: false,
            mode: PodCheckMode::FailClosed,
            cache: Duration::from_millis(1000),
        }
    }
}

/// The pods running on this node, by [`PodKey`].
#[derive(Debug, Default, Clone)]
pub struct RunningPods(HashSet<PodKey, RandomState>);

impl RunningPods {
    /// The set of these uids.
    pub fn from_uids<'a>(uids: impl IntoIterator<Item = &'a str>) -> Self {
        RunningPods(uids.into_iter().map(pod_key).collect())
    }

    /// Whether the pod is in it.
    pub fn contains(&self, pod: &PodKey) -> bool {
        self.0.contains(pod)
    }

    /// How many pods.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the running pods come from (the kubelet; a fake in tests).
#[async_trait]
pub trait PodSource: Send + Sync + 'static {
    /// The pods running on this node now.
    async fn running_pods(&self) -> Result<RunningPods, AgentError>;
}

/// The verdict on one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It runs on this node.
    Running,
    /// It does not (any more).
    Gone,
    /// The token names no pod: nothing to check.
    NoPod,
    /// The kubelet cannot be asked (then the mode decides).
    Unverified,
}

/// What the last list said.
#[derive(Debug, Clone)]
enum Known {
    /// Nothing asked yet.
    Nothing,
    /// These pods, listed at this time.
    Listed(Arc<RunningPods>, Instant),
    /// The last list failed at this time, for this reason.
    Failed(Instant, Arc<str>, &'static str),
}

type Listing = Result<Arc<RunningPods>, ()>;

/// The kubelet's state as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletState {
    /// `unknown` (not asked yet), `up`, `unauthorized` (the kubelet refused
    /// the agent's token) or `down`.
    pub status: &'static str,
    /// The last failure's reason, when down.
    pub error: Option<String>,
    /// Running pods in the last list, when up.
    pub pods: Option<usize>,
}

/// The pod check: a cached list of running pods, one kubelet call at a time.
pub struct PodCheck {
    source: Arc<dyn PodSource>,
    mode: PodCheckMode,
    cache: Duration,
    known: RwLock<Known>,
    flight: SingleFlight<(), Listing>,
    metrics: Arc<AgentMetrics>,
}

impl std::fmt::Debug for PodCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCheck")
            .field("mode", &self.mode)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl PodCheck {
    /// A check asking the kubelet as `settings` say.
    pub fn new(
        settings: &PodCheckSettings,
        metrics: Arc<AgentMetrics>,
    ) -> Result<Arc<PodCheck>, AgentError> {
        let source = KubeletPods::new(settings)?;
        Ok(Self::with_source(
            Arc::new(source),
            settings.mode,
            settings.cache,
            metrics,
        ))
    }

    /// A check asking `source`, lists kept for `cache`.
    pub fn with_source(
        source: Arc<dyn PodSource>,
        mode: PodCheckMode,
        cache: Duration,
        metrics: Arc<AgentMetrics>,
    ) -> Arc<PodCheck> {
        Arc::new(PodCheck {
            source,
            mode,
            cache,
            known: RwLock::new(Known::Nothing),
            flight: SingleFlight::new(),
            metrics,
        })
    }

    /// What an unreachable kubelet means.
    pub fn mode(&self) -> PodCheckMode {
        self.mode
    }

    /// The verdict on `pod` from what is known, without asking the kubelet;
    /// `None` when the kubelet must be asked. A hash lookup and a clock read.
    pub fn cached(&self, pod: Option<&PodKey>) -> Option<Verdict> {
        let Some(pod) = pod else {
            return Some(Verdict::NoPod);
        };
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        match &*known {
            Known::Listed(pods, at) => {
                let age = at.elapsed();
                if age >= self.cache {
                    None
                } else if pods.contains(pod) {
                    Some(Verdict::Running)
                } else if age < MIN_RELIST {
                    Some(Verdict::Gone)
                } else {
                    // Perhaps a pod newer than the list: ask again.
                    None
                }
            }
            // A failure is remembered as long as a list would be (or MIN_RELIST).
            Known::Failed(at, _, _) if at.elapsed() < self.cache.max(MIN_RELIST) => {
                Some(Verdict::Unverified)
            }
            _ => None,
        }
    }

    /// The verdict on `pod`, asking the kubelet (or joining the call under
    /// way) when what is known does not say.
    pub async fn check(self: &Arc<Self>, pod: Option<&PodKey>) -> Verdict {
        if let Some(verdict) = self.cached(pod) {
            return verdict;
        }
        match (self.list().await, pod) {
            (Ok(pods), Some(pod)) if pods.contains(pod) => Verdict::Running,
            (Ok(_), Some(_)) => Verdict::Gone,
            (Ok(_), None) => Verdict::NoPod,
            (Err(()), _) => Verdict::Unverified,
        }
    }

    /// Lists the running pods now (one call at a time; callers meanwhile
    /// share it) and remembers the outcome.
    pub async fn list(self: &Arc<Self>) -> Listing {
        let check = self.clone();
        let flight = match self
            .flight
            .join_or_start(&(), || Ok::<_, ()>(async move { check.list_now().await }))
        {
            podid_singleflight::Joined::Started(f) | podid_singleflight::Joined::Joined(f) => f,
            podid_singleflight::Joined::Declined(()) => return Err(()),
        };
        flight.wait().await.unwrap_or(Err(()))
    }

    async fn list_now(self: Arc<Self>) -> Listing {
        let started = Instant::now();
        let result = self.source.running_pods().await;
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(pods) => {
                if !matches!(*known, Known::Listed(..)) {
                    tracing::info!(pods = pods.len(), "the kubelet lists this node's pods");
                }
                let pods = Arc::new(pods);
                *known = Known::Listed(pods.clone(), started);
                self.metrics.kubelet_up.set(1);
                self.metrics.kubelet_list("ok");
                Ok(pods)
            }
            Err(e) => {
                let reason = error_text(&e);
                if !matches!(*known, Known::Failed(..)) {
                    tracing::warn!(error = %reason, mode = self.mode.as_str(), "cannot list this node's pods from the kubelet");
                }
                *known = Known::Failed(Instant::now(), reason.into(), e.pod_check_kind());
                self.metrics.kubelet_up.set(0);
                self.metrics.kubelet_list(e.pod_check_kind());
                Err(())
            }
        }
    }

    /// The kubelet's state for `/readyz`.
    pub fn state(&self) -> KubeletState {
        match &*self.known.read().unwrap_or_else(PoisonError::into_inner) {
            Known::Nothing => KubeletState {
                status: "unknown",
                error: None,
                pods: None,
            },
            Known::Listed(pods, _) => KubeletState {
                status: "up",
                error: None,
                pods: Some(pods.len()),
            },
            Known::Failed(_, reason, kind) => KubeletState {
                status: if *kind == "unauthorized" {
                    "unauthorized"
                } else {
                    "down"
                },
                error: Some(reason.to_string()),
                pods: None,
            },
        }
    }

    /// `/readyz`'s `podCheck`: `{"mode", "kubelet", "error"?, "runningPods"?}`.
    pub fn detail(&self) -> serde_json::Value {
        let state = self.state();
        let mut detail = serde_json::json!({
            "mode": self.mode.as_str(),
            "kubelet": state.status,
        });
        if let Some(error) = state.error {
            detail["error"] = error.into();
        }
        if let Some(pods) = state.pods {
            detail["runningPods"] = pods.into();
        }
        detail
    }

    /// Whether the agent is ready as far as the pod check goes: not when
    /// fail-closed and the kubelet's last answer was a failure.
    pub fn ready(&self) -> bool {
        self.mode == PodCheckMode::FailOpen
            || !matches!(
                *self.known.read().unwrap_or_else(PoisonError::into_inner),
                Known::Failed(..)
            )
    }

    /// Lists once now, then again whenever no list was made for `every`
    /// (so `/readyz` follows the kubelet while no pod asks). Runs forever.
    pub async fn run_probe(self: Arc<Self>, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let last = match &*self.known.read().unwrap_or_else(PoisonError::into_inner) {
                Known::Listed(_, at) | Known::Failed(at, _, _) => Some(*at),
                Known::Nothing => None,
            };
            if last.is_none_or(|at| at.elapsed() >= every) {
                let _ = self.list().await;
            }
        }
    }
}

/// The error and its causes on one line (no token is ever in them).
fn error_text(e: &AgentError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests;
