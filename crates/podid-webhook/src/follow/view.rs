//! The followed view of a cluster's associations: which (namespace, service
//! account) have one, at which feed position. Pure: no IO, no clock.

use std::collections::{HashMap, HashSet};

use podid_api::changes::{ChangeKind, ChangesResponse};

/// What applying a feed answer asks of the follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The view is current up to the answer's position.
    Current,
    /// The view cannot be followed any further (`reset`, a deleted cluster):
    /// it must be loaded again from a listing.
    Reload,
}

/// The associations of one cluster, by service account, as of a feed position.
#[derive(Debug, Default)]
pub struct View {
    /// (namespace, service account) → the ids of its associations.
    accounts: HashMap<(String, String), HashSet<String>>,
    /// The feed position the view reflects; `None` until loaded, and after a
    /// reset or a cluster deletion until loaded again.
    position: Option<i64>,
    /// Counts loads, so an answer asked before a load is not applied after it.
    generation: u64,
}

impl View {
    /// Replaces the view with a listing taken after the feed was at `position`.
    /// Changes after `position` are then applied on top: each is idempotent.
    pub fn load(&mut self, associations: impl IntoIterator<Item = Association>, position: i64) {
        self.accounts.clear();
        for a in associations {
            self.insert(a);
        }
        self.position = Some(position);
        self.generation += 1;
    }

    /// Forgets the position (the view is to be loaded again); what it holds stays for metrics.
    pub fn unload(&mut self) {
        self.position = None;
        self.generation += 1;
    }

    /// Forgets everything: the cluster is gone.
    pub fn clear(&mut self) {
        self.accounts.clear();
        self.unload();
    }

    /// The position and generation to read the feed from; `None` when not loaded.
    pub fn cursor(&self) -> Option<(i64, u64)> {
        self.position.map(|p| (p, self.generation))
    }

    /// Whether the service account has an association; `None` when not loaded.
    pub fn contains(&self, namespace: &str, service_account: &str) -> Option<bool> {
        self.position?;
        Some(
            self.accounts
                .contains_key(&(namespace.to_owned(), service_account.to_owned())),
        )
    }

    /// How many service accounts have an association.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// The feed position, when loaded.
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// Applies an answer to a read started at generation `generation`.
    /// Changes at or before the view's position are skipped (another read
    /// applied them); an answer from before the last load is ignored.
    pub fn apply(&mut self, answer: &ChangesResponse, generation: u64) -> Applied {
        let Some(position) = self.position else {
            return Applied::Reload;
        };
        if generation != self.generation {
            return Applied::Current;
        }
        if answer.reset {
            self.unload();
            return Applied::Reload;
        }
        for change in answer.changes.iter().filter(|c| c.position > position) {
            let association = || {
                Some(Association {
                    id: change.association_id.clone()?,
                    namespace: change.namespace.clone()?,
                    service_account: change.service_account.clone()?,
                })
            };
            match change.kind {
                ChangeKind::Create | ChangeKind::Update => {
                    if let Some(a) = association() {
                        self.insert(a);
                    }
                }
                ChangeKind::Delete => {
                    if let Some(a) = association() {
                        self.remove(&a);
                    }
                }
                ChangeKind::ClusterUpdate => {}
                ChangeKind::ClusterDelete => {
                    self.clear();
                    return Applied::Reload;
                }
            }
        }
        let last = answer.changes.iter().map(|c| c.position).max();
        self.position = Some(position.max(answer.position).max(last.unwrap_or(position)));
        Applied::Current
    }

    fn insert(&mut self, a: Association) {
        self.accounts
            .entry((a.namespace, a.service_account))
            .or_default()
            .insert(a.id);
    }

    fn remove(&mut self, a: &Association) {
        let key = (a.namespace.clone(), a.service_account.clone());
        if let Some(ids) = self.accounts.get_mut(&key) {
            ids.remove(&a.id);
            if ids.is_empty() {
                self.accounts.remove(&key);
            }
        }
    }
}

/// One association, as far as the webhook cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// Its id.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn answer(value: serde_json::Value) -> ChangesResponse {
        serde_json::from_value(value).unwrap()
    }

    fn a(id: &str, sa: &str) -> Association {
        Association {
            id: id.into(),
            namespace: "ns".into(),
            service_account: sa.into(),
        }
    }

    fn change(position: i64, kind: &str, id: &str, sa: &str) -> serde_json::Value {
        json!({"position": position, "kind": kind, "time": 1,
               "associationId": id, "namespace": "ns", "serviceAccount": sa})
    }

    #[test]
    fn not_loaded_knows_nothing() {
        let mut view = View::default();
        assert_eq!(view.contains("ns", "sa"), None);
        let read = answer(json!({"changes": [change(1, "create", "a-1", "sa")], "position": 1}));
        assert_eq!(view.apply(&read, 0), Applied::Reload);
        assert_eq!(view.contains("ns", "sa"), None);
    }

    #[test]
    fn creates_and_deletes_replayed_over_a_listing_converge() {
        let mut view = View::default();
        // Listed after position 10: a-1 exists, a-2 was created at 11 and
        // is in the listing too; a-3 was created at 12 and deleted at 13.
        view.load([a("a-1", "one"), a("a-2", "two")], 10);
        let (_, generation) = view.cursor().unwrap();
        let read = answer(json!({"changes": [
            change(11, "create", "a-2", "two"),
            change(12, "create", "a-3", "three"),
            change(13, "delete", "a-3", "three"),
            change(14, "update", "a-1", "one"),
        ], "position": 14}));
        assert_eq!(view.apply(&read, generation), Applied::Current);
        assert_eq!(view.contains("ns", "one"), Some(true));
        assert_eq!(view.contains("ns", "two"), Some(true));
        assert_eq!(view.contains("ns", "three"), Some(false));
        assert_eq!((view.accounts(), view.position()), (2, Some(14)));
        // The same answer again (a concurrent read) changes nothing.
        view.apply(&read, generation);
        assert_eq!((view.accounts(), view.position()), (2, Some(14)));
        // A delete of one of two associations of an account keeps it.
        view.apply(
            &answer(json!({"changes": [change(15, "create", "a-4", "one")], "position": 15})),
            generation,
        );
        view.apply(
            &answer(json!({"changes": [change(16, "delete", "a-1", "one")], "position": 16})),
            generation,
        );
        assert_eq!(view.contains("ns", "one"), Some(true));
    }

    #[test]
    fn an_older_answer_applies_only_what_is_new() {
        let mut view = View::default();
        view.load([], 0);
        let (_, generation) = view.cursor().unwrap();
        let newer = answer(json!({"changes": [
            change(1, "create", "a-1", "one"), change(2, "delete", "a-1", "one"),
        ], "position": 2}));
        view.apply(&newer, generation);
        // A slower read from 0 answering only the create must not bring a-1 back.
        let older = answer(json!({"changes": [change(1, "create", "a-1", "one")], "position": 1}));
        view.apply(&older, generation);
        assert_eq!(view.contains("ns", "one"), Some(false));
        assert_eq!(view.position(), Some(2));
    }

    #[test]
    fn reset_cluster_delete_and_stale_generations() {
        let mut view = View::default();
        view.load([a("a-1", "one")], 5);
        let (_, old) = view.cursor().unwrap();
        let reset = answer(json!({"changes": [], "position": 3, "reset": true}));
        assert_eq!(view.apply(&reset, old), Applied::Reload);
        assert_eq!(view.contains("ns", "one"), None);

        view.load([a("a-1", "one")], 7);
        // An answer to a read started before this load is ignored.
        let late = answer(json!({"changes": [change(8, "delete", "a-1", "one")], "position": 8}));
        assert_eq!(view.apply(&late, old), Applied::Current);
        assert_eq!(view.contains("ns", "one"), Some(true));

        let (_, generation) = view.cursor().unwrap();
        let gone = answer(json!({"changes": [
            {"position": 9, "kind": "cluster-update", "time": 1},
            {"position": 10, "kind": "cluster-delete", "time": 1},
        ], "position": 10}));
        assert_eq!(view.apply(&gone, generation), Applied::Reload);
        assert_eq!((view.contains("ns", "one"), view.accounts()), (None, 0));
    }
}
