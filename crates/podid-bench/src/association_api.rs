//! Target 5, the association API: Create throughput and List over 10,000
//! associations vs the raw store, on SQLite and PostgreSQL (method:
//! docs/benchmarks.md, "Association API").

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use podid_store::{AssociationStore, ListQuery, StoredAssociation};
use rand::rngs::StdRng;
use rand::Rng as _;

mod raw_store;

use raw_store::RawStore;
pub use raw_store::{raw_store, RawStoreArgs};

use crate::priority::Placement;
use crate::report::{median, percentile, verdict, ReportTable};
use crate::server::{
    self, bench_association, RunArgs, ServerOptions, ServerProcess, TestCluster, CLUSTER,
};
use crate::sts_responder::StsResponder;

/// `podid-bench association-api`.
#[derive(Debug, clap::Args)]
pub struct AssociationApiArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Which stores: sqlite, postgres, or both.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backend,
    /// A PostgreSQL URL whose role may create databases (e.g. what
    /// `crates/podid-store/tests/setup-postgres.sh` prints); two fresh
    /// databases are created for the run and dropped after it.
    #[arg(long, env = "PODID_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Associations created (and then listed).
    #[arg(long, default_value_t = 10_000)]
    associations: usize,
    /// Create rounds (each creates associations ÷ rounds, raw then API).
    #[arg(long, default_value_t = 10)]
    create_rounds: usize,
    /// Creates in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// List rounds (each walks every association, raw then API).
    #[arg(long, default_value_t = 5)]
    list_rounds: usize,
    /// maxResults of each page.
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// The server and the raw store's calls on the server's CPUs, the API
    /// client (this process during the API rounds) on the load CPUs.
    #[command(flatten)]
    place: Placement,
    /// The server's log filter.
    #[arg(long, default_value = "info")]
    server_log: String,
}

/// The stores to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL (needs --postgres-url).
    Postgres,
    /// SQLite, then PostgreSQL when a URL is given.
    Both,
}

/// The same association as the server would store it.
fn record(i: usize, rng: &mut StdRng) -> StoredAssociation {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = (0..17)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let now = podid_api::EpochMillis(server::epoch_millis());
    StoredAssociation {
        id: format!("a-{id}"),
        cluster: CLUSTER.to_owned(),
        namespace: format!("ns-{}", i / 100),
        service_account: format!("sa-{i}"),
        role_arn: format!("arn:aws:iam::{}:role/bench-{i}", server::ACCOUNT),
        target_role_arn: None,
        external_id: crate::tokens::uuid(rng),
        disable_session_tags: false,
        policy: None,
        tags: Default::default(),
        created_at: now,
        modified_at: now,
    }
}

async fn raw_creates(
    store: &Arc<dyn AssociationStore>,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    server::rate_of(range, concurrency, |i| {
        let store = store.clone();
        async move {
            let mut rng = crate::tokens::seeded(0xA550C ^ (i as u64).wrapping_mul(0x9E37_79B9));
            store.create_association(&record(i, &mut rng), None).await?;
            Ok(())
        }
    })
    .await
}

/// One walk: seconds in all, each page's latency (ms), the ids seen.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Walk {
    seconds: f64,
    pages_ms: Vec<f64>,
    ids: Vec<String>,
}

async fn raw_walk(store: &Arc<dyn AssociationStore>, page_size: u32) -> anyhow::Result<Walk> {
    let mut walk = Walk {
        seconds: 0.0,
        pages_ms: Vec::new(),
        ids: Vec::new(),
    };
    let started = Instant::now();
    let mut after = None;
    loop {
        let t = Instant::now();
        let page = store
            .list_associations(&ListQuery {
                cluster: CLUSTER.into(),
                limit: page_size,
                after,
                ..Default::default()
            })
            .await?;
        walk.pages_ms.push(t.elapsed().as_secs_f64() * 1e3);
        walk.ids.extend(page.items.into_iter().map(|a| a.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    walk.seconds = started.elapsed().as_secs_f64();
    Ok(walk)
}

async fn api_walk(client: &podid_client::ApiClient, page_size: u32) -> anyhow::Result<Walk> {
    let mut walk = Walk {
        seconds: 0.0,
        pages_ms: Vec::new(),
        ids: Vec::new(),
    };
    let path = format!("/clusters/{CLUSTER}/pod-identity-associations");
    let started = Instant::now();
    let mut next: Option<String> = None;
    loop {
        let mut query = vec![("maxResults", page_size.to_string())];
        if let Some(token) = &next {
            query.push(("nextToken", token.clone()));
        }
        let t = Instant::now();
        let page: podid_api::association::ListAssociationsResponse = client
            .call(reqwest::Method::GET, &path, &query, None)
            .await?;
        walk.pages_ms.push(t.elapsed().as_secs_f64() * 1e3);
        walk.ids
            .extend(page.associations.into_iter().map(|a| a.association_id));
        match page.next_token {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    walk.seconds = started.elapsed().as_secs_f64();
    Ok(walk)
}

/// Two fresh PostgreSQL databases (raw, API) next to `url`'s, dropped on [`PgDatabases::drop_all`].
struct PgDatabases {
    admin_url: String,
    names: Vec<String>,
}

impl PgDatabases {
    async fn create(url: &str) -> anyhow::Result<(PgDatabases, String, String)> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        let tag = format!("{}_{}", std::process::id(), server::epoch_millis());
        let names = vec![
            format!("podid_bench_raw_{tag}"),
            format!("podid_bench_api_{tag}"),
        ];
        for name in &names {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        let mut parsed = url::Url::parse(url)?;
        let mut with = |name: &str| {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        };
        let (raw, api) = (with(&names[0]), with(&names[1]));
        Ok((
            PgDatabases {
                admin_url: url.to_owned(),
                names,
            },
            raw,
            api,
        ))
    }

    async fn drop_all(&self) {
        use sqlx::Connection;
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await else {
            return;
        };
        for name in &self.names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
        let _ = conn.close().await;
    }
}

/// `ANALYZE` a PostgreSQL database.
async fn analyze(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

struct BackendResult {
    name: &'static str,
    raw_creates: Vec<f64>,
    api_creates: Vec<f64>,
    raw_walks: Vec<Walk>,
    api_walks: Vec<Walk>,
}

async fn measure(
    args: &AssociationApiArgs,
    podid: &std::path::Path,
    name: &'static str,
    raw_url: &str,
    api_url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<BackendResult> {
    let cluster = TestCluster::generate()?;
    let cpus = args.place.server();
    let cluster_file = dir.join(format!("cluster-{name}.json"));
    std::fs::write(&cluster_file, serde_json::to_string(&cluster.record())?)?;
    let mut raw = RawStore::start(cpus, raw_url).await?;
    raw.call(&format!("register {}", cluster_file.display()))
        .await?;
    // Never called: the association API does not issue credentials.
    let sts = StsResponder::start(1).await?;
    let server = ServerProcess::start(&ServerOptions {
        database_url: api_url.to_owned(),
        cpus: cpus.map(str::to_owned),
        log_file: dir.join(format!("server-{name}.log")),
        ..ServerOptions::sqlite_in(podid, dir, sts.endpoint(), &args.server_log)?
    })
    .await?;
    let client = server::admin_client(&server.endpoint)?;
    cluster.register(&client).await?;

    let per_round = args.associations.div_ceil(args.create_rounds.max(1));
    let mut result = BackendResult {
        name,
        raw_creates: Vec::new(),
        api_creates: Vec::new(),
        raw_walks: Vec::new(),
        api_walks: Vec::new(),
    };
    let mut start = 0;
    while start < args.associations {
        let range = start..(start + per_round).min(args.associations);
        let raw_rate = raw
            .call(&format!(
                "create {} {} {}",
                range.start, range.end, args.concurrency
            ))
            .await?["rate"]
            .as_f64()
            .context("no rate")?;
        let bodies = range.clone().map(bench_association);
        let api = server::create_associations(&client, bodies, args.concurrency).await?;
        println!(
            "{name}: creates {}..{}: raw store {raw_rate:.0}/s, API {api:.0}/s",
            range.start, range.end
        );
        result.raw_creates.push(raw_rate);
        result.api_creates.push(api);
        start = range.end;
        if raw_url.starts_with("postgres") {
            // Both databases are new: statistics come from autovacuum whenever
            // it runs, and until then the planner may not use the indexes.
            // Analyse both alike after every round.
            analyze(raw_url).await?;
            analyze(api_url).await?;
        }
    }
    for _ in 0..args.list_rounds.max(1) {
        let walk = raw.call(&format!("walk {}", args.page_size)).await?;
        result.raw_walks.push(serde_json::from_value(walk)?);
        result
            .api_walks
            .push(api_walk(&client, args.page_size).await?);
    }
    server.stop().await;
    raw.stop().await;
    Ok(result)
}

fn complete(walk: &Walk, n: usize) -> bool {
    walk.ids.len() == n && walk.ids.iter().collect::<HashSet<_>>().len() == n
}

/// Runs `podid-bench association-api`; `Ok(true)` when every check holds.
pub async fn run(args: AssociationApiArgs) -> anyhow::Result<bool> {
    let mut args = args;
    if args.run.smoke {
        (args.associations, args.create_rounds, args.list_rounds) = (500, 2, 1);
    }
    let (_priority, podid) = args.run.begin("# Association API (target 5)")?;
    if args.associations == 0 || args.concurrency == 0 || !(1..=100).contains(&args.page_size) {
        bail!("--associations and --concurrency must be positive, --page-size 1 to 100");
    }
    let mut backends = Vec::new();
    if matches!(args.backend, Backend::Sqlite | Backend::Both) {
        backends.push("sqlite");
    }
    if matches!(args.backend, Backend::Postgres | Backend::Both) {
        if args.postgres_url.is_some() {
            backends.push("postgres");
        } else if args.backend == Backend::Postgres {
            bail!("--backend postgres needs --postgres-url (or PODID_BENCH_POSTGRES_URL)");
        } else {
            println!("PostgreSQL skipped: no --postgres-url (or PODID_BENCH_POSTGRES_URL)");
        }
    }
    println!(
        "{} associations created with {} in flight in {} rounds, then listed {} times in pages of {}; \
         server and raw store on CPUs {}, API client on CPUs {}; server log {}",
        args.associations,
        args.concurrency,
        args.create_rounds,
        args.list_rounds,
        args.page_size,
        args.place.server().unwrap_or("any"),
        args.place.load().unwrap_or("any"),
        args.server_log
    );
    args.place.pin_self_to_load();
    let mut results = Vec::new();
    for backend in backends {
        let dir = tempfile::tempdir()?;
        let result = match backend {
            "sqlite" => {
                let raw = format!("sqlite://{}", dir.path().join("raw.db").display());
                let api = format!("sqlite://{}", dir.path().join("api.db").display());
                measure(&args, &podid, "SQLite", &raw, &api, dir.path()).await
            }
            _ => {
                let url = args.postgres_url.as_deref().unwrap_or_default();
                let (dbs, raw, api) = PgDatabases::create(url).await?;
                let r = measure(&args, &podid, "PostgreSQL", &raw, &api, dir.path()).await;
                dbs.drop_all().await;
                r
            }
        };
        results.push(result?);
    }

    let mut table = ReportTable::new(&["store", "figure", "raw store", "API", "API ÷ raw"]);
    let mut pass = true;
    for r in &results {
        // One row: the figure, the raw store's and the API's, with `decimals`.
        let mut row = |figure: String, raw: f64, api: f64, decimals: usize| {
            table.row(vec![
                r.name.into(),
                figure,
                format!("{raw:.decimals$}"),
                format!("{api:.decimals$}"),
                format!("{:.2}", api / raw),
            ]);
        };
        let (raw_c, api_c) = (median(&r.raw_creates), median(&r.api_creates));
        let creates = format!("creates/s ({} in flight)", args.concurrency);
        row(creates, raw_c, api_c, 0);
        let pages = |walks: &[Walk]| {
            let mut v: Vec<f64> = walks
                .iter()
                .flat_map(|w| w.pages_ms.iter().copied())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (raw_p, api_p) = (pages(&r.raw_walks), pages(&r.api_walks));
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let figure = format!("list page of {} {label} (ms)", args.page_size);
            row(figure, percentile(&raw_p, p), percentile(&api_p, p), 2);
        }
        let raw_w = median(&r.raw_walks.iter().map(|w| w.seconds).collect::<Vec<_>>());
        let api_w = median(&r.api_walks.iter().map(|w| w.seconds).collect::<Vec<_>>());
        row(
            format!("walk all {} (s)", args.associations),
            raw_w,
            api_w,
            3,
        );
        let ok = r
            .raw_walks
            .iter()
            .chain(&r.api_walks)
            .all(|w| complete(w, args.associations));
        pass &= ok;
        println!(
            "{}: every walk listed each of the {} associations exactly once: {}",
            r.name,
            args.associations,
            verdict(ok)
        );
    }
    println!();
    print!("{}", table.render());
    println!();
    println!(
        "creates: median of {} rounds; pages: every page of {} walks; walks: median. The issue sets no figure for \
         this target: it is reported, and checked for completeness (above).",
        args.create_rounds, args.list_rounds
    );
    println!("association API: {}", verdict(pass));
    Ok(pass)
}
