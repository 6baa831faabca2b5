//! The names the benchmarks share: the test cluster and its issuer, and the
//! broker's own (fake) AWS key.

/// The test cluster's name (agents ask for it, the server registers it).
pub const CLUSTER: &str = "bench";
/// Its token issuer.
pub const ISSUER: &str = "https://oidc.podid.test/bench";
/// The broker's own (fake) AWS key, which signs its STS calls.
pub const BROKER_KEY: &str = "AKIDPODIDBROKER00000";
