//! What the client verbs share: where the server is, and printing results as
//! tables or JSON.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

use podid_client::{credentials_from_environment, ApiClient, CaBundle};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Where the server is and how to print.
#[derive(Debug, Args)]
pub struct Connection {
    /// The podid server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "PODID_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Region used in request signatures.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// PEM file of a private CA to trust, besides the built-in roots, for an
    /// https:// endpoint (e.g. the CA that signed the server's certificate).
    #[arg(long, env = "PODID_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub(crate) output: OutputFormat,
}

impl Connection {
    pub(crate) async fn client(&self) -> anyhow::Result<ApiClient> {
        let endpoint = self
            .endpoint
            .as_deref()
            .context("no server given: pass --endpoint URL or set PODID_ENDPOINT")?;
        let ca = self.ca_file.as_deref().map(CaBundle::read).transpose()?;
        Ok(ApiClient::builder(endpoint)
            .region(&self.region)
            .credentials(credentials_from_environment().await)
            .ca(ca)
            .build()?)
    }

    /// Makes one call to the server, with a JSON body or none.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let client = self.client().await?;
        Ok(client.call(method, path, query, body.as_ref()).await?)
    }

    /// Up to `limit` items of the paged list at `path`, following `nextToken`
    /// page by page (100 items a page at most); `split` takes a page apart
    /// into its items and its next token.
    pub(crate) async fn all_pages<P: DeserializeOwned, T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
        split: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> anyhow::Result<Vec<T>> {
        let client = self.client().await?;
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        while items.len() < limit {
            let mut q = query.to_vec();
            q.push(("maxResults", (limit - items.len()).min(100).to_string()));
            if let Some(token) = &next {
                q.push(("nextToken", token.clone()));
            }
            let page: P = client.call(Method::GET, path, &q, None).await?;
            let (more, token) = split(page);
            items.extend(more);
            match token {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        Ok(items)
    }
}

/// Prints `value` as indented JSON.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as aligned columns under a header.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// An RFC 3339 time, or the seconds as they are if out of range.
pub(crate) fn format_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}
