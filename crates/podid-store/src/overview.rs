//! Every cluster's associations in one list (the console's table): substring filters,
//! newest first, keyset pages that stay right while rows are added or changed.

use crate::StoredAssociation;

/// A place in the overview's order (modified time, then creation position; both descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverviewCursor {
    /// The row's `modified_at`.
    pub modified_at: i64,
    /// The row's creation position.
    pub seq: i64,
}

/// Which side of a cursor a page lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverviewPosition {
    /// The rows older than the cursor (the next page).
    After(OverviewCursor),
    /// The rows newer than the cursor (the previous page).
    Before(OverviewCursor),
}

impl OverviewPosition {
    /// The position as a URL-safe token: `a<modified>.<seq>` or `b<modified>.<seq>`.
    pub fn encode(&self) -> String {
        let (side, c) = match self {
            OverviewPosition::After(c) => ('a', c),
            OverviewPosition::Before(c) => ('b', c),
        };
        format!("{side}{}.{}", c.modified_at, c.seq)
    }

    /// A token of [`encode`](Self::encode); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.chars();
        let side = chars.next()?;
        let (modified, seq) = chars.as_str().split_once('.')?;
        let cursor = OverviewCursor {
            modified_at: modified.parse().ok()?,
            seq: seq.parse().ok()?,
        };
        match side {
            'a' => Some(OverviewPosition::After(cursor)),
            'b' => Some(OverviewPosition::Before(cursor)),
            _ => None,
        }
    }
}

/// What to list across clusters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverviewQuery {
    /// Only these clusters (a scoped key's); `None` for every cluster.
    pub scope: Option<Vec<String>>,
    /// Cluster name contains this (case-sensitive, taken literally: `%` and `_` are characters).
    pub cluster: Option<String>,
    /// Namespace contains this.
    pub namespace: Option<String>,
    /// Service account contains this.
    pub service_account: Option<String>,
    /// Role ARN or target role ARN contains this.
    pub role: Option<String>,
    /// Where the page starts; `None` for the newest rows.
    pub position: Option<OverviewPosition>,
    /// Page size, 1 to 500.
    pub limit: u32,
}

/// One page of the overview, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverviewPage {
    /// The associations.
    pub items: Vec<StoredAssociation>,
    /// The next (older) page, when older rows match.
    pub next: Option<OverviewPosition>,
    /// The previous (newer) page, when newer rows match.
    pub prev: Option<OverviewPosition>,
}

/// The most rows a page holds.
pub const MAX_OVERVIEW_PAGE: u32 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let c = OverviewCursor {
            modified_at: 1_700_000_000_123,
            seq: 42,
        };
        for p in [OverviewPosition::After(c), OverviewPosition::Before(c)] {
            assert_eq!(OverviewPosition::parse(&p.encode()), Some(p));
        }
        assert_eq!(OverviewPosition::After(c).encode(), "a1700000000123.42");
        for bad in ["", "a", "a1", "c1.2", "a1.x", "a.2", "b1.2.3", "a-1.-2x"] {
            assert_eq!(OverviewPosition::parse(bad), None, "{bad}");
        }
        assert_eq!(
            OverviewPosition::parse("b-5.-6"),
            Some(OverviewPosition::Before(OverviewCursor {
                modified_at: -5,
                seq: -6
            }))
        );
    }
}
