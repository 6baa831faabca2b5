//! `podid-bench console`: the render time of the web console's association table with
//! 10,000 associations over several clusters, first page and a filtered page, through a
//! real `podid server` with a session cookie, beside the store query alone (method:
//! docs/benchmarks.md, "Console").

use std::time::Instant;

use anyhow::Context;
use podid_api::association::Tags;
use podid_api::EpochMillis;
use podid_store::{AssociationStore, OverviewQuery, StoredAssociation};
use podid_test_support::console_pages::{cells, ConsoleSession};
use podid_test_support::{write_keys_file, PodidServerLaunch, READER};

use crate::machine::Machine;
use crate::report::{median, percentile, verdict, ReportTable};

/// `podid-bench console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Associations in the store.
    #[arg(long, default_value_t = 10_000)]
    associations: usize,
    /// Clusters they are spread over.
    #[arg(long, default_value_t = 5)]
    clusters: usize,
    /// Renders (and store queries) measured per page.
    #[arg(long, default_value_t = 200)]
    renders: usize,
    /// The target: a page's median render in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    target_ms: f64,
    /// The podid binary (default: target/debug/podid beside this one).
    #[arg(long)]
    podid: Option<std::path::PathBuf>,
}

/// The pages measured: (name, query string, the store's filters).
fn pages() -> Vec<(&'static str, &'static str, OverviewQuery)> {
    let first = OverviewQuery {
        limit: 50,
        ..OverviewQuery::default()
    };
    let filtered = OverviewQuery {
        namespace: Some("team-3".into()),
        role: Some("role/app-1".into()),
        ..first.clone()
    };
    vec![
        ("first page", "", first),
        (
            "filtered page",
            "?namespace=team-3&role=role%2Fapp-1",
            filtered,
        ),
    ]
}

/// Milliseconds of each of `n` runs of `step`.
async fn timed<F, Fut>(n: usize, mut step: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        step().await?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// `podid-bench console`: true when every page's median is under the target.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<bool> {
    println!("{}", Machine::read().describe());
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let store = podid_store::open(&db).await.context("opening the store")?;
    let filled = Instant::now();
    fill(&*store, &args).await?;
    println!(
        "filled {} associations over {} clusters in {:.1} s",
        args.associations,
        args.clusters,
        filled.elapsed().as_secs_f64()
    );
    let keys = write_keys_file(dir.path())?;
    let binary = args
        .podid
        .clone()
        .unwrap_or_else(podid_test_support::podid_binary);
    let server = PodidServerLaunch::new(binary)
        .args([
            "--database-url",
            &db,
            "--keys-file",
            keys.to_str().unwrap_or_default(),
        ])
        .log("warn")
        .start()
        .context("starting podid server")?;
    let session = ConsoleSession::sign_in(
        &server.endpoint,
        READER.access_key_id,
        READER.secret_access_key,
    )
    .await;

    let mut table = ReportTable::new(&[
        "page",
        "rows",
        "store median ms",
        "store p99 ms",
        "render median ms",
        "render p99 ms",
        "target",
    ]);
    let mut pass = true;
    for (name, query, filters) in pages() {
        let path = format!("/console/associations{query}");
        // One warm-up each, and the row count the page shows.
        let rows = cells(&session.get(&path).await.body, "association-id").len();
        let found = store.list_all_associations(&filters).await?.items.len();
        anyhow::ensure!(
            rows == found,
            "{name}: the page shows {rows} rows, the store {found}"
        );
        let store_ms = timed(args.renders, || async {
            store.list_all_associations(&filters).await?;
            Ok(())
        })
        .await?;
        let render_ms = timed(args.renders, || async {
            let answer = session.get(&path).await;
            anyhow::ensure!(answer.status == 200, "{path}: {}", answer.status);
            Ok(())
        })
        .await?;
        let mut sorted_store = store_ms.clone();
        sorted_store.sort_by(f64::total_cmp);
        let mut sorted_render = render_ms.clone();
        sorted_render.sort_by(f64::total_cmp);
        let ok = median(&render_ms) < args.target_ms;
        pass &= ok;
        table.row(vec![
            name.to_owned(),
            rows.to_string(),
            format!("{:.2}", median(&store_ms)),
            format!("{:.2}", percentile(&sorted_store, 99.0)),
            format!("{:.2}", median(&render_ms)),
            format!("{:.2}", percentile(&sorted_render, 99.0)),
            format!("< {} ms {}", args.target_ms, verdict(ok)),
        ]);
    }
    println!(
        "{} renders per page over HTTP on 127.0.0.1 (a reader's session), the store query alone in this process",
        args.renders
    );
    println!("{}", table.render());
    server.terminate(std::time::Duration::from_secs(10));
    Ok(pass)
}

/// `args.clusters` clusters and `args.associations` associations: namespaces
/// `team-0..9`, roles `app-0..49`, modified times spread over a day.
async fn fill(store: &dyn AssociationStore, args: &ConsoleArgs) -> anyhow::Result<()> {
    let jwks: serde_json::Value = serde_json::from_str(podid_test_support::TEST_JWKS)?;
    let base = 1_700_000_000_000_i64;
    for c in 0..args.clusters {
        let name = format!("cluster-{c}");
        store
            .insert_cluster(&podid_api::cluster::Cluster {
                issuer: format!("https://issuer.test/{name}"),
                audience: "pods.eks.amazonaws.com".into(),
                cluster_arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{name}"),
                key_source: podid_api::cluster::KeySource::Inline,
                jwks_uri: None,
                jwks: jwks.clone(),
                agent_identity: podid_api::cluster::AgentIdentity::Key,
                agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
                node_binding: false,
                token_review: None,
                created_at: EpochMillis(base),
                modified_at: EpochMillis(base),
                name,
            })
            .await?;
    }
    for i in 0..args.associations {
        let at = EpochMillis(base + (i as i64 * 7_919) % 86_400_000);
        let mut tags = Tags::new();
        tags.insert("team".into(), format!("team-{}", i % 10));
        store
            .create_association(
                &StoredAssociation {
                    id: format!("a-{i:017}"),
                    cluster: format!("cluster-{}", i % args.clusters.max(1)),
                    namespace: format!("team-{}", i % 10),
                    service_account: format!("sa-{i}"),
                    role_arn: format!("arn:aws:iam::111122223333:role/app-{}", i % 50),
                    target_role_arn: None,
                    external_id: format!("ext-{i}"),
                    disable_session_tags: false,
                    policy: None,
                    tags,
                    created_at: at,
                    modified_at: at,
                },
                None,
            )
            .await?;
    }
    Ok(())
}
