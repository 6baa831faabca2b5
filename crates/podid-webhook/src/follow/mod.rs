//! The cluster's associations followed on podid's change feed
//! (`GET /podid/v1/clusters/{name}/changes`) instead of asked on every admission.
//!
//! At start the follower takes the feed's position, lists the cluster's
//! associations, and then long-polls the feed from that position. An admission
//! whose service account is in the set is answered at once; one whose service
//! account is not first catches up with the feed (a `waitSeconds=0` read from
//! the current position), so an association created before the pod's admission
//! began is always seen. Until the set is loaded (start, after a `reset` or a
//! deleted cluster) admissions ask the server directly, as [`HttpLookup`] does.

pub mod view;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use podid_api::association::ListAssociationsResponse;
use podid_api::changes::{ChangesResponse, MAX_CHANGES_PER_PAGE, MAX_WAIT_SECONDS};
use podid_client::{segment, ApiClient};

use crate::lookup::{from_client, Answer, AssociationLookup, HttpLookup, ServerAccess};
use crate::metrics::{FeedRead, WebhookMetrics};
use crate::WebhookError;
pub use view::{Applied, Association, View};

/// How the follower reads the feed.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// How long one feed read waits for a change (the server allows up to 30 s).
    pub wait: Duration,
    /// Pause after a failed read or load before trying again.
    pub retry: Duration,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            wait: Duration::from_secs(20),
            retry: Duration::from_secs(1),
        }
    }
}

/// The followed set of a cluster's associations; also the webhook's
/// [`AssociationLookup`]. Run [`FollowedAssociations::follow`] beside it.
pub struct FollowedAssociations {
    /// Direct lookups while the set is not loaded; its client (bounded by the
    /// lookup timeout) also makes the admissions' catch-up reads.
    direct: HttpLookup,
    /// The follower's client: its bound covers a long poll.
    poll: ApiClient,
    cluster: String,
    settings: FollowSettings,
    view: Mutex<View>,
    metrics: Arc<WebhookMetrics>,
}

impl std::fmt::Debug for FollowedAssociations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowedAssociations")
            .field("endpoint", &self.direct.describe())
            .field("cluster", &self.cluster)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FollowedAssociations {
    /// A follower of `access`'s cluster; each admission's call to the server
    /// is bounded by `lookup_timeout`.
    pub fn new(
        access: &ServerAccess,
        lookup_timeout: Duration,
        settings: FollowSettings,
        metrics: Arc<WebhookMetrics>,
    ) -> Result<Arc<Self>, WebhookError> {
        // At least a second: a zero wait would turn the follower into a busy loop.
        let wait = settings.wait.clamp(
            Duration::from_secs(1),
            Duration::from_secs(MAX_WAIT_SECONDS),
        );
        Ok(Arc::new(FollowedAssociations {
            direct: HttpLookup::at(access, lookup_timeout)?,
            poll: access.client(wait + Duration::from_secs(10).max(lookup_timeout))?,
            cluster: access.cluster.clone(),
            settings: FollowSettings { wait, ..settings },
            view: Mutex::new(View::default()),
            metrics,
        }))
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the set is loaded and current as far as the follower knows.
    pub fn is_loaded(&self) -> bool {
        self.view().position().is_some()
    }

    /// Follows the feed until the task is dropped: loads the set, then reads
    /// the feed from its position, loading again after a `reset` or a deleted
    /// cluster and retrying (every `retry`) while the server cannot be reached.
    pub async fn follow(self: Arc<Self>) {
        let mut connected = None;
        loop {
            let step = if self.is_loaded() {
                self.read(&self.poll, self.settings.wait.as_secs(), FeedRead::Follower)
                    .await
                    .map(|_| ())
            } else {
                self.load().await
            };
            match step {
                Ok(()) => {
                    if connected != Some(true) {
                        tracing::info!(cluster = %self.cluster, position = self.view().position(),
                            "following the cluster's association changes");
                    }
                    connected = Some(true);
                    self.metrics.feed_connected(true);
                }
                Err(e) => {
                    if connected != Some(false) {
                        tracing::warn!(cluster = %self.cluster, error = %e,
                            "cannot follow the cluster's association changes; retrying");
                    }
                    connected = Some(false);
                    self.metrics.feed_connected(false);
                    tokio::time::sleep(self.settings.retry).await;
                }
            }
        }
    }

    /// Takes the feed's position, then lists the associations into the set.
    async fn load(&self) -> Result<(), WebhookError> {
        let start: ChangesResponse = self
            .poll
            .call(reqwest::Method::GET, &self.feed_path(), &[], None)
            .await
            .map_err(|e| from_client(e, "ListAssociationChanges"))?;
        let path = format!(
            "/clusters/{}/pod-identity-associations",
            segment(&self.cluster)
        );
        let mut listed = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut query = vec![("maxResults", "100".to_owned())];
            if let Some(token) = next.take() {
                query.push(("nextToken", token));
            }
            let page: ListAssociationsResponse = self
                .poll
                .call(reqwest::Method::GET, &path, &query, None)
                .await
                .map_err(|e| from_client(e, "ListPodIdentityAssociations"))?;
            listed.extend(page.associations.into_iter().map(|a| Association {
                id: a.association_id,
                namespace: a.namespace,
                service_account: a.service_account,
            }));
            match page.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        let mut view = self.view();
        view.load(listed, start.position);
        self.metrics.feed_loaded(view.accounts(), start.position);
        Ok(())
    }

    fn feed_path(&self) -> String {
        format!("/podid/v1/clusters/{}/changes", segment(&self.cluster))
    }

    /// Reads the feed from the set's position (pages until the last), waiting
    /// up to `wait_seconds` for a change, and applies what it answers.
    async fn read(
        &self,
        client: &ApiClient,
        wait_seconds: u64,
        reader: FeedRead,
    ) -> Result<Applied, WebhookError> {
        loop {
            let Some((after, generation)) = self.view().cursor() else {
                return Ok(Applied::Reload);
            };
            let query = [
                ("after", after.to_string()),
                ("waitSeconds", wait_seconds.to_string()),
            ];
            let answer: Result<ChangesResponse, _> = client
                .call(reqwest::Method::GET, &self.feed_path(), &query, None)
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    self.metrics.feed_read(reader, false);
                    let e = from_client(e, "ListAssociationChanges");
                    if matches!(e, WebhookError::Server { status: 404, .. }) {
                        // The cluster is gone: nothing is known of it any more.
                        self.view().clear();
                        self.metrics.feed_applied(&[], 0, None);
                    }
                    return Err(e);
                }
            };
            self.metrics.feed_read(reader, true);
            let mut view = self.view();
            let applied = view.apply(&answer, generation);
            self.metrics
                .feed_applied(&answer.changes, view.accounts(), view.position());
            if applied == Applied::Reload {
                tracing::info!(cluster = %self.cluster, reset = answer.reset,
                    "the followed associations are loaded again");
            }
            if applied == Applied::Reload || answer.changes.len() < MAX_CHANGES_PER_PAGE {
                return Ok(applied);
            }
        }
    }
}

#[async_trait::async_trait]
impl AssociationLookup for FollowedAssociations {
    async fn has_association(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<bool, WebhookError> {
        self.lookup(namespace, service_account)
            .await
            .map(|answer| answer.found)
    }

    fn describe(&self) -> String {
        self.direct.describe()
    }

    async fn lookup(&self, namespace: &str, service_account: &str) -> Result<Answer, WebhookError> {
        let known = self.view().contains(namespace, service_account);
        if known == Some(true) {
            return Ok(Answer {
                found: true,
                asked_server: false,
            });
        }
        // Not in the set (or no set): catch up first, so an association
        // created before this admission began is seen.
        let applied = match known {
            Some(_) => {
                self.read(self.direct.client(), 0, FeedRead::Admission)
                    .await?
            }
            None => Applied::Reload,
        };
        let now = self.view().contains(namespace, service_account);
        let found = match (applied, now) {
            (Applied::Current, Some(found)) => found,
            _ => {
                self.direct
                    .has_association(namespace, service_account)
                    .await?
            }
        };
        Ok(Answer {
            found,
            asked_server: true,
        })
    }

    fn follows_changes(&self) -> bool {
        true
    }
}
