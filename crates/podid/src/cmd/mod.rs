//! One module per `podid` verb; `connection` holds what the client verbs share.

pub mod association;
pub mod audit;
pub mod cluster;
mod connection;
pub mod dev;
pub mod server;
pub mod trust_policy;
pub mod webhook;
