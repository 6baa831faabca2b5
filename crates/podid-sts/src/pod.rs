//! From a pod's association to `AssumeRole` calls, as EKS Pod Identity makes them.

use std::time::Duration;

use rand::Rng;

use crate::{AssumeRoleSpec, IssueError, IssuedCredentials, Issuer, SessionTag};

/// The six session tags EKS Pod Identity sets, all transitive.
pub const SESSION_TAG_KEYS: [&str; 6] = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// Chained sessions (credentials from credentials) last at most one hour in STS.
pub const MAX_CHAINED_SESSION: Duration = Duration::from_secs(3600);

/// Everything needed to issue one pod's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCredentialRequest {
    /// Registered cluster name.
    pub cluster_name: String,
    /// Cluster ARN for the `eks-cluster-arn` tag.
    pub cluster_arn: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod service account.
    pub service_account: String,
    /// Pod name.
    pub pod_name: String,
    /// Pod uid.
    pub pod_uid: String,
    /// The association's role.
    pub role_arn: String,
    /// The association's target role, for chaining.
    pub target_role_arn: Option<String>,
    /// The association's external id, for the target role.
    pub external_id: String,
    /// Leave session tags off.
    pub disable_session_tags: bool,
    /// Session policy of the pod's session.
    pub policy: Option<String>,
    /// Requested session length.
    pub duration: Duration,
}

/// `eks-{cluster}-{pod}-{random}`, with every character outside `[\w+=,.@-]`
/// replaced by `-`, cut to STS's 64 characters while keeping the random part
/// (it keeps concurrent sessions of one pod apart in CloudTrail).
pub fn session_name(cluster: &str, pod: &str, random: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let clean = |s: &str| {
        s.chars()
            .map(|c| if allowed(c) { c } else { '-' })
            .collect::<String>()
    };
    let random = clean(random);
    let random: String = random.chars().take(20).collect();
    let room = 64 - random.len() - 1;
    let head: String = clean(&format!("eks-{cluster}-{pod}"))
        .chars()
        .take(room)
        .collect();
    format!("{head}-{random}")
}

/// The six EKS session tags of a pod, in [`SESSION_TAG_KEYS`] order. STS
/// limits values to 256 characters; longer values are cut.
pub fn session_tags(req: &PodCredentialRequest) -> Vec<SessionTag> {
    let values = [
        &req.cluster_arn,
        &req.cluster_name,
        &req.namespace,
        &req.service_account,
        &req.pod_name,
        &req.pod_uid,
    ];
    SESSION_TAG_KEYS
        .iter()
        .zip(values)
        .map(|(k, v)| SessionTag {
            key: (*k).to_owned(),
            value: v.chars().take(256).collect(),
        })
        .collect()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Issues a pod's credentials: `AssumeRole` on the association's role with the
/// session tags (transitive, unless disabled) and, with a target role, a second
/// `AssumeRole` on it signed with the first session and carrying the external
/// id. The session policy applies to the session the pod gets.
pub async fn issue_for_pod(
    issuer: &dyn Issuer,
    req: &PodCredentialRequest,
) -> Result<IssuedCredentials, IssueError> {
    let name = session_name(&req.cluster_name, &req.pod_name, &random_suffix());
    let (tags, transitive) = if req.disable_session_tags {
        (Vec::new(), Vec::new())
    } else {
        (
            session_tags(req),
            SESSION_TAG_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        )
    };
    let first = AssumeRoleSpec {
        role_arn: req.role_arn.clone(),
        session_name: name.clone(),
        duration: if req.target_role_arn.is_some() {
            req.duration.min(MAX_CHAINED_SESSION)
        } else {
            req.duration
        },
        tags,
        transitive_tag_keys: transitive,
        policy: if req.target_role_arn.is_none() {
            req.policy.clone()
        } else {
            None
        },
        external_id: None,
    };
    let credentials = issuer.assume_role(&first, None).await?;
    let Some(target) = &req.target_role_arn else {
        return Ok(credentials);
    };
    // Transitive tags carry over to the chained session by themselves.
    let second = AssumeRoleSpec {
        role_arn: target.clone(),
        session_name: name,
        duration: req.duration.min(MAX_CHAINED_SESSION),
        tags: Vec::new(),
        transitive_tag_keys: Vec::new(),
        policy: req.policy.clone(),
        external_id: Some(req.external_id.clone()),
    };
    issuer.assume_role(&second, Some(&credentials)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_sanitised_cut_and_keep_the_random_part() {
        assert_eq!(
            session_name("blue", "boto3", "abc123"),
            "eks-blue-boto3-abc123"
        );
        let long = session_name(&"c".repeat(100), &"p".repeat(253), "0123456789ab");
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-0123456789ab"));
        assert!(long.starts_with("eks-ccc"));
        let odd = session_name("blue", "pod/with spaces:and*stars", "r");
        assert_eq!(odd, "eks-blue-pod-with-spaces-and-stars-r");
        assert!(odd
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
    }

    #[test]
    fn tags_follow_eks() {
        let req = PodCredentialRequest {
            cluster_name: "blue".into(),
            cluster_arn: "arn:aws:eks:us-east-1:111122223333:cluster/blue".into(),
            namespace: "default".into(),
            service_account: "boto3".into(),
            pod_name: "boto3".into(),
            pod_uid: "uid-1".into(),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            target_role_arn: None,
            external_id: "x".into(),
            disable_session_tags: false,
            policy: None,
            duration: Duration::from_secs(3600),
        };
        let tags = session_tags(&req);
        let pairs: Vec<(&str, &str)> = tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "eks-cluster-arn",
                    "arn:aws:eks:us-east-1:111122223333:cluster/blue"
                ),
                ("eks-cluster-name", "blue"),
                ("kubernetes-namespace", "default"),
                ("kubernetes-service-account", "boto3"),
                ("kubernetes-pod-name", "boto3"),
                ("kubernetes-pod-uid", "uid-1"),
            ]
        );
    }
}
