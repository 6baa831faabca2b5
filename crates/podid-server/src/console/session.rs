//! Console sessions: kept in memory (a restart ends them), keyed by a random
//! id in the `podid_session` cookie; sign-in with a key of the keys file, the
//! per-session CSRF token, and the per-source limit on failed sign-ins.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::authz::{Clusters, Role};
use crate::keys::{ApiKey, KeyRing};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "podid_session";
/// A session unused this long ends.
pub(crate) const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub(crate) const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many sessions; the oldest is dropped for a new one.
pub(crate) const MAX_SESSIONS: usize = 10_000;
/// Failed sign-ins allowed per source address and [`LOGIN_WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 5;
/// The window of [`MAX_FAILURES`].
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// The address a connection came from (set by the listener per connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// What a signed-in session may see and do: the key that signed in.
#[derive(Debug, Clone)]
pub(crate) struct SessionKey {
    /// The key's access key id (the only part of the key ever shown).
    pub(crate) key_id: String,
    /// Its role.
    pub(crate) role: Role,
    /// The clusters it may act on.
    pub(crate) clusters: Clusters,
    /// The session's CSRF token.
    pub(crate) csrf_token: String,
}

#[derive(Debug)]
struct Session {
    key: SessionKey,
    /// SHA-256 of the secret that signed in: a rotated secret ends the session.
    secret_digest: [u8; 32],
    created: Instant,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    /// Ids in creation order (some may have ended already).
    order: VecDeque<String>,
}

/// The sessions of one server.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

/// A random 32-byte value, base64url without padding.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn digest(key: &ApiKey) -> [u8; 32] {
    Sha256::digest(key.secret_access_key.expose().as_bytes()).into()
}

/// The key of `ring` named `key_id` if `secret` is its secret (compared in
/// constant time).
pub(crate) fn check_pair<'a>(ring: &'a KeyRing, key_id: &str, secret: &str) -> Option<&'a ApiKey> {
    let key = ring.get(key_id)?;
    let same: bool = key
        .secret_access_key
        .expose()
        .as_bytes()
        .ct_eq(secret.as_bytes())
        .into();
    same.then_some(key)
}

impl Sessions {
    /// Starts a session for `key`; returns its id.
    pub(crate) fn start(&self, key: &ApiKey) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            key: SessionKey {
                key_id: key.access_key_id.clone(),
                role: key.role,
                clusters: key.clusters.clone(),
                csrf_token: random_token(),
            },
            secret_digest: digest(key),
            created: now,
            last_seen: now,
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while inner.by_id.len() >= MAX_SESSIONS {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.by_id.remove(&oldest);
        }
        // Ended sessions leave their ids behind: compact now and then.
        if inner.order.len() > 2 * MAX_SESSIONS {
            let Inner { by_id, order } = &mut *inner;
            order.retain(|id| by_id.contains_key(id));
        }
        inner.by_id.insert(id.clone(), session);
        inner.order.push_back(id.clone());
        id
    }

    /// The session `id` if it is live and its key is still in `ring` as it
    /// signed in (same secret, role and clusters); else ends it.
    pub(crate) fn get(&self, id: &str, ring: &KeyRing) -> Option<SessionKey> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let session = inner.by_id.get_mut(id)?;
        let live = now.duration_since(session.last_seen) < IDLE
            && now.duration_since(session.created) < ABSOLUTE
            && ring.get(&session.key.key_id).is_some_and(|key| {
                key.role == session.key.role
                    && key.clusters == session.key.clusters
                    && digest(key) == session.secret_digest
            });
        if !live {
            inner.by_id.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.key.clone())
    }

    /// Ends session `id`.
    pub(crate) fn end(&self, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.by_id.remove(id);
    }

    /// How many sessions are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }
}

/// Whether `given` is the session's CSRF token (constant time).
pub(crate) fn csrf_matches(session: &SessionKey, given: Option<&str>) -> bool {
    given.is_some_and(|given| bool::from(session.csrf_token.as_bytes().ct_eq(given.as_bytes())))
}

/// Failed sign-ins per source address: [`MAX_FAILURES`] per [`LOGIN_WINDOW`].
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

/// Sources remembered at most (expired windows pruned first, then the oldest).
pub(crate) const MAX_SOURCES: usize = 10_000;

impl LoginLimiter {
    /// Whether `source` has used up its failures in the current window.
    pub(crate) fn is_limited(&self, source: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.get(&source).is_some_and(|(start, n)| {
            now.duration_since(*start) < LOGIN_WINDOW && *n >= MAX_FAILURES
        })
    }

    /// Counts one failed sign-in from `source`.
    pub(crate) fn failed(&self, source: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_SOURCES {
            failures.retain(|_, (start, _)| now.duration_since(*start) < LOGIN_WINDOW);
        }
        // Still full (a flood of sources within one window): forget the oldest.
        if failures.len() >= MAX_SOURCES {
            if let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, (start, _))| *start)
                .map(|(source, _)| *source)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(source).or_insert((now, 0));
        if now.duration_since(entry.0) >= LOGIN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
