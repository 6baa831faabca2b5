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

/// The trust policy a target role needs: the broker may assume it and tag the
/// session. Printed once; it never changes as clusters come and go.
pub fn trust_policy_document(broker_principal: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PodidBroker",
            "Effect": "Allow",
            "Principal": {"AWS": broker_principal},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]
    })
}

/// Runs `podid trust-policy`.
pub fn run(args: &TrustPolicyArgs) -> anyhow::Result<()> {
    let p = &args.broker_principal;
    let ok = p.starts_with("arn:")
        && (p.contains(":iam::") || p.contains(":sts::"))
        && p.split(':').count() == 6;
    if !ok {
        bail!(
            "--broker-principal must be an IAM role or user ARN, \
             e.g. arn:aws:iam::123456789012:role/podid-broker"
        );
    }
    print_json(&trust_policy_document(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_names_the_broker_and_both_actions() {
        let doc = trust_policy_document("arn:aws:iam::123456789012:role/podid-broker");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::123456789012:role/podid-broker"
        );
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
        );
    }
}
