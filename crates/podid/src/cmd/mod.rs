//! One module per `podid` verb; `connection` holds what the client verbs share,
//! `announce_listening` what the server verbs do.

pub mod association;
pub mod audit;
pub mod cluster;
mod connection;
pub mod dev;
mod listen;
pub mod server;
pub mod trust_policy;
pub mod webhook;

/// Reports the address a server bound: logged, and one machine-readable line
/// on stdout, `podid {what} listening on {scheme}://{addr}`, for scripts and
/// tests that start it on port 0.
pub(crate) fn announce_listening(
    what: &'static str,
    scheme: &'static str,
) -> impl FnOnce(std::net::SocketAddr) {
    move |addr| {
        tracing::info!(%addr, "listening");
        println!("podid {what} listening on {scheme}://{addr}");
    }
}
