//! One refresh round against an in-memory registry and a fetcher whose answer changes.

use std::sync::Mutex;

use async_trait::async_trait;
use podid_api::clock::SystemClock;
use podid_api::cluster::KeySource;
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde_json::json;

use super::*;
use crate::jwks::{DocumentFetcher, VerifierFetcher};

/// What [`Served`] answers: a document for every URL, or this error.
type Answer = Result<serde_json::Value, fn(&str) -> FetchError>;

/// Serves one answer for every URL.
struct Served(Mutex<Answer>);

#[async_trait]
impl DocumentFetcher for Served {
    async fn fetch_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        match &*self.0.lock().unwrap() {
            Ok(doc) => Ok(doc.clone()),
            Err(fail) => Err(fail(url)),
        }
    }
}

impl Served {
    fn serve(&self, answer: Answer) {
        *self.0.lock().unwrap() = answer;
    }
}

fn jwks_of(keys: &[&SigningKey]) -> serde_json::Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

fn cluster(name: &str, jwks: serde_json::Value, uri: Option<&str>) -> Cluster {
    Cluster {
        name: name.into(),
        issuer: "https://iss".into(),
        audience: "pods.eks.amazonaws.com".into(),
        cluster_arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{name}"),
        key_source: if uri.is_some() {
            KeySource::Uri
        } else {
            KeySource::Inline
        },
        jwks_uri: uri.map(str::to_owned),
        jwks,
        agent_identity: podid_api::cluster::AgentIdentity::Key,
        agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
        node_binding: false,
        token_review: None,
        created_at: EpochMillis(1),
        modified_at: EpochMillis(1),
    }
}

struct Setup {
    refresher: JwksRefresher,
    audit_writer: tokio::task::JoinHandle<()>,
    served: Arc<Served>,
    k: SigningKey,
    k2: SigningKey,
}

/// A registry holding `url` (keys k and k2, by URL) and `inline` (key k), a URL serving k and
/// k2, and a refresher over them.
async fn setup() -> Setup {
    let k = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let k2 = SigningKey::generate(DevAlgorithm::Es256, "k2").unwrap();
    let store = podid_store::open("sqlite::memory:").await.unwrap();
    let both = jwks_of(&[&k, &k2]);
    store
        .insert_cluster(&cluster("url", both.clone(), Some("https://iss/jwks")))
        .await
        .unwrap();
    store
        .insert_cluster(&cluster("inline", jwks_of(&[&k]), None))
        .await
        .unwrap();
    let served = Arc::new(Served(Mutex::new(Ok(both))));
    let verifier = Arc::new(TokenVerifier::new(
        Arc::new(VerifierFetcher(served.clone())),
        podid_token::system_clock(),
        100,
    ));
    let (audit, audit_writer) = crate::broker::audit::AuditSink::start(
        store.clone(),
        Default::default(),
        crate::broker::audit::AuditMode::BestEffort,
    );
    let refresher = JwksRefresher {
        store,
        verifier,
        audit,
        lookups: Arc::new(Lookups::default()),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(JwksMetrics::default()),
        interval: Duration::from_secs(1),
    };
    Setup {
        refresher,
        audit_writer,
        served,
        k,
        k2,
    }
}

impl Setup {
    async fn stored(&self, name: &str) -> Cluster {
        self.refresher
            .store
            .get_cluster(name)
            .await
            .unwrap()
            .unwrap()
    }

    async fn verify(&self, key: &SigningKey) -> Result<(), TokenError> {
        let trust = trust_of(&self.stored("url").await);
        let now = podid_token::system_clock()();
        let token = ProjectedToken::new("https://iss", "ns", "sa", now).sign(key);
        self.refresher
            .verifier
            .verify(&trust, &token)
            .await
            .map(|_| ())
    }
}

#[tokio::test]
async fn a_removed_key_is_written_to_the_registry_and_refused() {
    let s = setup().await;
    assert!(s.verify(&s.k).await.is_ok());
    // Served as registered: nothing to write; the inline cluster is not fetched.
    assert_eq!(
        s.refresher.round().await,
        [("url".to_owned(), Outcome::Unchanged)]
    );
    assert_eq!(s.stored("url").await.modified_at, EpochMillis(1));

    s.served.serve(Ok(jwks_of(&[&s.k2])));
    assert_eq!(
        s.refresher.round().await,
        [("url".to_owned(), Outcome::Changed)]
    );
    let stored = s.stored("url").await;
    assert_eq!(stored.jwks, jwks_of(&[&s.k2]));
    assert!(stored.modified_at > EpochMillis(1));
    assert_eq!(s.stored("inline").await.jwks, jwks_of(&[&s.k]));
    assert!(matches!(
        s.verify(&s.k).await,
        Err(TokenError::UnknownKey { .. })
    ));
    assert!(s.verify(&s.k2).await.is_ok());
    let refreshes = |result: &str| {
        s.refresher
            .metrics
            .refreshes
            .get_or_create(&crate::metrics::JwksRefreshLabels {
                result: result.into(),
                reason: String::new(),
            })
            .get()
    };
    assert_eq!((refreshes("unchanged"), refreshes("changed")), (1, 1));

    // The write is a change of the cluster in the audit trail, by the refresh, naming the keys.
    let store = s.refresher.store.clone();
    drop(s.refresher);
    tokio::time::timeout(Duration::from_secs(10), s.audit_writer)
        .await
        .expect("the audit writer drains and stops")
        .unwrap();
    let query = podid_store::AuditQuery {
        kind: Some(podid_api::audit::AuditKind::Change),
        limit: 10,
        ..Default::default()
    };
    let events = store.list_audit(&query).await.unwrap().events;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e.cluster.as_str(), e.caller.as_str()),
        ("url", REFRESH_CALLER)
    );
    assert_eq!(e.action.as_deref(), Some("UpdateCluster"));
    let ids = |state: &Option<AuditState>| state.as_ref().unwrap().key_ids.clone().unwrap();
    assert_eq!(
        (ids(&e.before), ids(&e.after)),
        (vec!["k".into(), "k2".into()], vec!["k2".into()])
    );
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_keys_and_says_why() {
    let s = setup().await;
    for (fail, reason) in [
        (
            (|url: &str| FetchError::Status {
                url: url.into(),
                status: 503,
            }) as fn(&str) -> FetchError,
            "fetch",
        ),
        (
            |url: &str| FetchError::NotHttps { url: url.into() },
            "not_https",
        ),
    ] {
        s.served.serve(Err(fail));
        assert_eq!(
            s.refresher.round().await,
            [("url".to_owned(), Outcome::Failed(reason))]
        );
    }
    s.served
        .serve(Ok(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})));
    assert_eq!(
        s.refresher.round().await,
        [("url".to_owned(), Outcome::Failed("keys"))]
    );
    let stored = s.stored("url").await;
    assert_eq!(stored.jwks, jwks_of(&[&s.k, &s.k2]));
    assert_eq!(stored.modified_at, EpochMillis(1));
    assert!(s.verify(&s.k).await.is_ok() && s.verify(&s.k2).await.is_ok());
}

#[tokio::test]
async fn a_cluster_changed_meanwhile_is_read_again() {
    let s = setup().await;
    s.served.serve(Ok(jwks_of(&[&s.k2])));
    let read = s.stored("url").await;
    // Someone updates the cluster (another field) after this round read it.
    let mut other = read.clone();
    other.audience = "other".into();
    other.modified_at = EpochMillis(5);
    s.refresher
        .store
        .update_cluster(&other, read.modified_at)
        .await
        .unwrap();
    let doc = jwks_of(&[&s.k2]);
    assert_eq!(
        s.refresher.write(read.clone(), doc.clone()).await,
        Outcome::Changed
    );
    let stored = s.stored("url").await;
    assert_eq!((stored.audience.as_str(), &stored.jwks), ("other", &doc));
    // A cluster whose key source changed meanwhile is left alone.
    let mut moved = stored.clone();
    moved.jwks_uri = Some("https://elsewhere/jwks".into());
    moved.modified_at = EpochMillis(stored.modified_at.0 + 1);
    s.refresher
        .store
        .update_cluster(&moved, stored.modified_at)
        .await
        .unwrap();
    assert_eq!(
        s.refresher.write(read, jwks_of(&[&s.k])).await,
        Outcome::Superseded
    );
    assert_eq!(s.stored("url").await.jwks, doc);
}
