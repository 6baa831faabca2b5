//! The Kubernetes manifests in `deploy/`: every overlay is rendered with
//! `kubectl kustomize` (offline), each object is read into its k8s-openapi type
//! (an unknown kind or a field k8s-openapi does not know fails), and the
//! invariants the design asks for are checked on the typed objects.
//!
//! Without kubectl the tests are skipped with a message, and so is the flag
//! cross-check without a fresh podid build or when `podid VERB --help` fails,
//! unless `CI` is set: then they fail (`skip_or_fail`). `KUBECTL` names
//! another kubectl; `PODID_BIN` another podid binary for the flag cross-check
//! (default `target/debug/podid`, trusted only when newer than the sources).
#![allow(missing_docs)]

#[path = "manifests/binary.rs"]
mod binary;
#[path = "manifests/identity.rs"]
mod identity;
#[path = "manifests/parts.rs"]
mod parts;
#[path = "manifests/render.rs"]
mod render;
#[path = "manifests/security.rs"]
mod security;
#[path = "manifests/tls.rs"]
mod tls;
