//! Wire types, errors and validation rules of podid's APIs (no IO), shared by the server, the
//! CLI and the tests.
#![forbid(unsafe_code)]

pub mod arn;
pub mod association;
pub mod audit;
pub mod changes;
pub mod clock;
pub mod cluster;
pub mod eks_auth;
pub mod error;
mod secret;
pub mod text;
pub mod time;
pub mod trust_policy;
pub mod validate;

pub use error::{ApiError, ErrorKind};
pub use secret::Secret;
pub use time::EpochMillis;
