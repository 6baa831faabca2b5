//! The overview of every cluster's associations (the console's table), written once as a macro.

/// Inherent `overview_page` of `$store` on `$db`, which the trait's `list_all_associations`
/// calls. `$position` is the database's substring function, `(haystack, needle)` → 1-based
/// index or 0 (`instr` in SQLite, `strpos` in PostgreSQL): case-sensitive, and it takes the
/// needle literally, so `%` and `_` in a filter need no escaping as they would with `LIKE`.
macro_rules! association_store_overview {
    (store: $store:ty, db: $db:ty, position: $position:literal $(,)?) => {
        impl $store {
            /// See [`AssociationStore::list_all_associations`](crate::AssociationStore::list_all_associations).
            async fn overview_page(
                &self,
                q: &$crate::OverviewQuery,
            ) -> Result<$crate::OverviewPage, $crate::StoreError> {
                use $crate::{OverviewCursor, OverviewPosition};
                if q.scope.as_ref().is_some_and(|s| s.is_empty()) {
                    return Ok($crate::OverviewPage { items: Vec::new(), next: None, prev: None });
                }
                let limit = q.limit.clamp(1, $crate::MAX_OVERVIEW_PAGE) as usize;
                // Newer rows first; a "before" page is read upwards from its cursor, then turned.
                let (older, anchor) = match q.position {
                    None => (true, None),
                    Some(OverviewPosition::After(c)) => (true, Some(c)),
                    Some(OverviewPosition::Before(c)) => (false, Some(c)),
                };
                let rows = self.overview_rows(q, older, anchor, limit + 1).await?;
                let more = rows.len() > limit;
                let mut items = Vec::with_capacity(limit.min(rows.len()));
                let mut keys = Vec::with_capacity(items.capacity());
                for row in rows.iter().take(limit) {
                    let (seq, a) = association_from_row(row)?;
                    keys.push(OverviewCursor { modified_at: a.modified_at.0, seq });
                    items.push(a);
                }
                if !older {
                    items.reverse();
                    keys.reverse();
                }
                // The far side of the page: more rows past it came with this read; the near
                // side (where the cursor was) is asked for one row.
                let (newest, oldest) = (keys.first().copied().or(anchor), keys.last().copied().or(anchor));
                let far = more.then_some(());
                let (next, prev) = if older {
                    let prev = match newest {
                        Some(c) if anchor.is_some() && !self.overview_rows(q, false, Some(c), 1).await?.is_empty() => {
                            Some(OverviewPosition::Before(c))
                        }
                        _ => None,
                    };
                    (far.and(oldest).map(OverviewPosition::After), prev)
                } else {
                    let next = match oldest {
                        Some(c) if !self.overview_rows(q, true, Some(c), 1).await?.is_empty() => {
                            Some(OverviewPosition::After(c))
                        }
                        _ => None,
                    };
                    (next, far.and(newest).map(OverviewPosition::Before))
                };
                Ok($crate::OverviewPage { items, next, prev })
            }

            /// At most `take` rows matching `q`'s scope and filters, older (descending) or newer
            /// (ascending) than `anchor`.
            async fn overview_rows(
                &self,
                q: &$crate::OverviewQuery,
                older: bool,
                anchor: Option<$crate::OverviewCursor>,
                take: usize,
            ) -> Result<Vec<<$db as sqlx::Database>::Row>, $crate::StoreError> {
                let mut sql = String::from(concat!(
                    "SELECT ",
                    $crate::common::association_columns!(),
                    " FROM associations WHERE 1 = 1"
                ));
                let mut n = 0;
                let mut param = || {
                    n += 1;
                    format!("${n}")
                };
                if let Some(scope) = &q.scope {
                    let list: Vec<String> = scope.iter().map(|_| param()).collect();
                    sql.push_str(&format!(" AND cluster IN ({})", list.join(", ")));
                }
                let filters = [
                    ("cluster", &q.cluster),
                    ("namespace", &q.namespace),
                    ("service_account", &q.service_account),
                ];
                for (column, value) in filters {
                    if value.is_some() {
                        sql.push_str(&format!(" AND {}({column}, {}) > 0", $position, param()));
                    }
                }
                if q.role.is_some() {
                    sql.push_str(&format!(
                        " AND ({p}(role_arn, {}) > 0 OR {p}(COALESCE(target_role_arn, ''), {}) > 0)",
                        param(),
                        param(),
                        p = $position
                    ));
                }
                if anchor.is_some() {
                    let op = if older { "<" } else { ">" };
                    sql.push_str(&format!(" AND (modified_at, seq) {op} ({}, {})", param(), param()));
                }
                let order = if older { "DESC" } else { "ASC" };
                sql.push_str(&format!(" ORDER BY modified_at {order}, seq {order} LIMIT {}", param()));
                let mut query = sqlx::query(&sql);
                for cluster in q.scope.iter().flatten() {
                    query = query.bind(cluster);
                }
                for value in [&q.cluster, &q.namespace, &q.service_account].into_iter().flatten() {
                    query = query.bind(value);
                }
                if let Some(role) = &q.role {
                    query = query.bind(role).bind(role);
                }
                if let Some(c) = anchor {
                    query = query.bind(c.modified_at).bind(c.seq);
                }
                let take = i64::try_from(take).unwrap_or(i64::MAX);
                Ok(query.bind(take).fetch_all(self.read_pool()).await?)
            }
        }
    };
}
pub(crate) use association_store_overview;
