//! End-to-end test programs for podid. The binaries here play pods: they know
//! nothing of podid and take their credentials from aws-sdk-rust's default
//! chain, as any Rust workload would.
#![forbid(unsafe_code)]
