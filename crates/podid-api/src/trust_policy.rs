//! The trust policy every target role needs so that podid's broker may assume
//! it (printed by `podid trust-policy`, shown by the console).

/// Whether `principal` looks like an IAM role or user ARN (or an STS one):
/// `arn:PARTITION:iam::ACCOUNT:…`, six `:`-separated parts.
pub fn is_principal_arn(principal: &str) -> bool {
    principal.starts_with("arn:")
        && (principal.contains(":iam::") || principal.contains(":sts::"))
        && principal.split(':').count() == 6
}

/// The trust policy a target role needs: the broker may assume it and tag the
/// session. One statement; it never changes as clusters come and go.
pub fn document(broker_principal: &str) -> serde_json::Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_broker_and_both_actions() {
        let doc = document("arn:aws:iam::123456789012:role/podid-broker");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::123456789012:role/podid-broker"
        );
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
        );
        assert!(is_principal_arn(
            "arn:aws:iam::123456789012:role/podid-broker"
        ));
        assert!(!is_principal_arn("podid-broker"));
        assert!(!is_principal_arn("arn:aws:s3:::bucket"));
    }
}
