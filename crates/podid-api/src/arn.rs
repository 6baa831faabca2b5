//! ARNs podid builds and parses.

use crate::{validate, ApiError};

/// Kept here too: callers name it `arn::printable`.
pub use crate::text::printable;

/// Where podid's own ARNs live: partition, region and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnScope {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    /// The region podid presents itself in.
    pub region: String,
    /// The 12-digit account id podid presents itself in.
    pub account_id: String,
}

impl ArnScope {
    /// `arn:{partition}:eks:{region}:{account}:podidentityassociation/{cluster}/{id}`.
    pub fn association_arn(&self, cluster: &str, id: &str) -> String {
        format!(
            "arn:{}:eks:{}:{}:podidentityassociation/{}/{}",
            self.partition, self.region, self.account_id, cluster, id
        )
    }

    /// `arn:{partition}:eks:{region}:{account}:cluster/{name}`, the default cluster ARN.
    pub fn cluster_arn(&self, cluster: &str) -> String {
        format!(
            "arn:{}:eks:{}:{}:cluster/{}",
            self.partition, self.region, self.account_id, cluster
        )
    }

    /// Parses an association ARN of this scope into (cluster, association id).
    ///
    /// ARNs of another partition, region or account are not podid's and are
    /// answered as not found by the caller.
    pub fn parse_association_arn<'a>(&self, arn: &'a str) -> Result<(&'a str, &'a str), ApiError> {
        let bad = || {
            ApiError::invalid_parameter(format!(
                "'{}' is not a pod identity association ARN",
                printable(arn)
            ))
        };
        let Some(("arn", partition, "eks", region, account, resource)) = validate::arn_parts(arn)
        else {
            return Err(bad());
        };
        let rest = resource
            .strip_prefix("podidentityassociation/")
            .ok_or_else(bad)?;
        let (cluster, id) = rest.split_once('/').ok_or_else(bad)?;
        validate::cluster_name(cluster).map_err(|_| bad())?;
        validate::association_id(id).map_err(|_| bad())?;
        if partition != self.partition || region != self.region || account != self.account_id {
            return Err(ApiError::not_found(format!(
                "no resource with ARN '{arn}' on this server"
            )));
        }
        Ok((cluster, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> ArnScope {
        ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
        }
    }

    #[test]
    fn association_arn_round_trips() {
        let arn = scope().association_arn("blue", "a-abcdefghij0123456");
        assert_eq!(
            arn,
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/blue/a-abcdefghij0123456"
        );
        assert_eq!(
            scope().parse_association_arn(&arn).unwrap(),
            ("blue", "a-abcdefghij0123456")
        );
    }

    #[test]
    fn foreign_or_malformed_arns_are_rejected() {
        let other =
            "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/blue/a-abcdefghij0123456";
        assert_eq!(
            scope().parse_association_arn(other).unwrap_err().kind,
            crate::ErrorKind::ResourceNotFound
        );
        for bad in [
            "",
            "arn:aws:eks:us-east-1:111122223333:cluster/blue",
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/blue/a-short",
            "arn:aws:iam::111122223333:role/x",
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/-bad/a-abcdefghij0123456",
        ] {
            assert_eq!(
                scope().parse_association_arn(bad).unwrap_err().kind,
                crate::ErrorKind::InvalidParameter,
                "{bad}"
            );
        }
    }
}
