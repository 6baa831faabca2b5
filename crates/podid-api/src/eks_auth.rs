//! EKS Auth `AssumeRoleForPodIdentity` (`rest-json`, signing name `eks-auth`):
//! `POST /clusters/{clusterName}/assume-role-for-pod-identity`.

use serde::{Deserialize, Serialize};

/// The request body: the pod's projected service-account token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssumeRoleForPodIdentityRequest {
    /// The JWT. Never logged.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for AssumeRoleForPodIdentityRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleForPodIdentityRequest")
            .field("token", &"**redacted**")
            .finish()
    }
}

/// Who the token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
}

/// The association that mapped the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociationRef {
    /// Its ARN.
    pub association_arn: String,
    /// Its id.
    pub association_id: String,
}

/// The STS session the pod got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumedRoleUser {
    /// `arn:…:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
    /// `AROA…:SESSION`.
    pub assume_role_id: String,
}

/// The pod's credentials. Secret: never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCredentials {
    /// Session token.
    pub session_token: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Access key id.
    pub access_key_id: String,
    /// Expiration, epoch seconds.
    pub expiration: i64,
}

impl std::fmt::Debug for PodCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The answer, exactly as EKS Auth shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRoleForPodIdentityResponse {
    /// Who the token names.
    pub subject: Subject,
    /// The audience the token was accepted for.
    pub audience: String,
    /// The association used.
    pub pod_identity_association: PodIdentityAssociationRef,
    /// The session.
    pub assumed_role_user: AssumedRoleUser,
    /// The credentials.
    pub credentials: PodCredentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_eks_auth_and_secrets_do_not_print() {
        let r = AssumeRoleForPodIdentityResponse {
            subject: Subject {
                namespace: "ns".into(),
                service_account: "sa".into(),
            },
            audience: "pods.eks.amazonaws.com".into(),
            pod_identity_association: PodIdentityAssociationRef {
                association_arn: "arn".into(),
                association_id: "a-0123456789abcdefg".into(),
            },
            assumed_role_user: AssumedRoleUser {
                arn: "arn:aws:sts::1:assumed-role/R/S".into(),
                assume_role_id: "AROA:S".into(),
            },
            credentials: PodCredentials {
                session_token: "SESSION-SECRET".into(),
                secret_access_key: "KEY-SECRET".into(),
                access_key_id: "ASIA".into(),
                expiration: 1_767_225_600,
            },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["subject"]["serviceAccount"], "sa");
        assert_eq!(
            v["podIdentityAssociation"]["associationId"],
            "a-0123456789abcdefg"
        );
        assert_eq!(v["assumedRoleUser"]["assumeRoleId"], "AROA:S");
        assert_eq!(v["credentials"]["expiration"], 1_767_225_600);
        assert_eq!(v["credentials"]["sessionToken"], "SESSION-SECRET");
        let debug = format!("{r:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        let req = AssumeRoleForPodIdentityRequest {
            token: Some("eyJ.secret.token".into()),
        };
        assert!(!format!("{req:?}").contains("secret"));
    }
}
