//! `podid trust-policy`: prints the trust policy a target role needs so that
//! podid's broker may assume it.

use anyhow::bail;
use clap::Args;

use super::connection::print_json;

/// `podid trust-policy`.
#[derive(Debug, Args)]
pub struct TrustPolicyArgs {
    /// The broker's principal: the IAM role or user podid's server runs as.
    #[arg(long)]
    broker_principal: String,
}

use podid_api::trust_policy::document as trust_policy_document;

/// Runs `podid trust-policy`.
pub fn run(args: &TrustPolicyArgs) -> anyhow::Result<()> {
    let p = &args.broker_principal;
    if !podid_api::trust_policy::is_principal_arn(p) {
        bail!(
            "--broker-principal must be an IAM role or user ARN, \
             e.g. arn:aws:iam::123456789012:role/podid-broker"
        );
    }
    print_json(&trust_policy_document(p))
}
