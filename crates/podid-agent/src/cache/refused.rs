//! The negative cache: tokens the broker refused, answered from memory with
//! the broker's own status, code and message until a short time has passed.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::expiring::ExpiringMap;
use super::index::Prehashed;
use crate::token::TokenDigest;
use crate::upstream::UpstreamError;

/// Whether the broker's `error` is remembered for its token: the token is
/// refused for what it is (ResourceNotFound, AccessDenied, InvalidToken,
/// ExpiredToken), never a throttle or a 5xx, which say nothing of the token.
pub(crate) fn remembered(error: &UpstreamError) -> bool {
    error.drops_entry() && error.status != 429 && error.status < 500
}

/// Refusals by token digest, bounded.
pub(crate) struct RefusedTokens {
    map: Mutex<ExpiringMap<TokenDigest, UpstreamError, Prehashed>>,
}

impl RefusedTokens {
    /// At most `capacity` tokens (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        RefusedTokens {
            map: Mutex::new(ExpiringMap::new(capacity)),
        }
    }

    fn map(&self) -> MutexGuard<'_, ExpiringMap<TokenDigest, UpstreamError, Prehashed>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tokens remembered (some may have expired and not been dropped yet).
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// The broker's refusal of the token `digest`, if remembered at `now`.
    pub(crate) fn get(&self, digest: &TokenDigest, now: SystemTime) -> Option<UpstreamError> {
        self.map().get(digest, now).cloned()
    }

    /// Remembers `error` for `digest` until `until`; returns how many
    /// unexpired refusals were forgotten to make room.
    pub(crate) fn remember(
        &self,
        digest: TokenDigest,
        error: &UpstreamError,
        until: SystemTime,
        now: SystemTime,
    ) -> usize {
        self.map().insert(digest, error.clone(), until, now)
    }

    /// Forgets every refusal.
    pub(crate) fn clear(&self) {
        self.map().clear();
    }
}
