//! AdmissionReview v1 (`admission.k8s.io/v1`): parsing the request and shaping the response (no IO).

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube_core::DynamicObject;
use serde::{Deserialize, Serialize};

use crate::mutate::{self, Mutation, MutationSettings};
use crate::WebhookError;

/// The only AdmissionReview version answered.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The AdmissionReview kind.
pub const KIND: &str = "AdmissionReview";

/// A parsed AdmissionReview request.
#[derive(Debug, Clone)]
pub struct Review {
    request: AdmissionRequest<DynamicObject>,
}

/// Parses an AdmissionReview v1 body. Bad JSON, a missing `request` or `uid`,
/// and any other apiVersion or kind are errors (the server answers 400).
pub fn parse_review(body: &[u8]) -> Result<Review, WebhookError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(WebhookError::ReviewNotJson)?;
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    if api_version != API_VERSION || kind != KIND {
        return Err(WebhookError::ReviewVersion {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    }
    if value.get("request").is_none_or(|r| r.is_null()) {
        return Err(WebhookError::ReviewNoRequest);
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(WebhookError::ReviewMalformed)?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| WebhookError::ReviewNoRequest)?;
    if request.uid.is_empty() {
        return Err(WebhookError::ReviewNoUid);
    }
    Ok(Review { request })
}

/// What a review asks of this webhook.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Not a pod being created for real: allowed unchanged. The text says why.
    Ignore(&'static str),
    /// A pod CREATE whose object could not be read as a Pod: allowed
    /// unchanged, with a warning.
    Undecodable(String),
    /// A pod being created: look up its service account, then [`PodAdmission::mutation`].
    Pod(Box<PodAdmission>),
}

/// A pod being created.
#[derive(Debug, Clone)]
pub struct PodAdmission {
    /// The pod as the apiserver sent it.
    pub pod: Pod,
    /// Its namespace (the request's, else the object's, else `default`).
    pub namespace: String,
    /// Its service account (see [`mutate::service_account`]).
    pub service_account: String,
    /// Seed of the default token lifetime: request uid, namespace, name or generateName.
    pub seed: String,
}

impl PodAdmission {
    /// The mutation, given whether the service account has an association.
    pub fn mutation(&self, has_association: bool, settings: &MutationSettings) -> Mutation {
        mutate::mutate(&self.pod, has_association, &self.seed, settings)
    }

    /// `namespace/name`, or `namespace/generateName*` for pods named by the apiserver.
    pub fn display_name(&self) -> String {
        let meta = &self.pod.metadata;
        match (meta.name.as_deref(), meta.generate_name.as_deref()) {
            (Some(n), _) if !n.is_empty() => format!("{}/{n}", self.namespace),
            (_, Some(g)) => format!("{}/{g}*", self.namespace),
            _ => format!("{}/?", self.namespace),
        }
    }
}

impl Review {
    /// The request's uid, echoed in the response.
    pub fn uid(&self) -> &str {
        &self.request.uid
    }

    /// Classifies the request: only a non-dry-run CREATE of a pod (not of a
    /// subresource) is considered for mutation.
    pub fn admission(&self) -> Admission {
        let r = &self.request;
        if r.operation != Operation::Create {
            return Admission::Ignore("not a CREATE");
        }
        if !r.kind.group.is_empty() || r.kind.kind != "Pod" || r.resource.resource != "pods" {
            return Admission::Ignore("not a Pod");
        }
        if r.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
            return Admission::Ignore("a subresource");
        }
        if r.dry_run {
            return Admission::Ignore("dry run");
        }
        let Some(object) = r.object.as_ref() else {
            return Admission::Undecodable("the request has no object".into());
        };
        let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
            Ok(p) => p,
            Err(e) => return Admission::Undecodable(format!("the object is not a Pod: {e}")),
        };
        let namespace = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| pod.metadata.namespace.clone().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| "default".to_owned());
        let service_account = mutate::service_account(&pod);
        let name = pod
            .metadata
            .name
            .as_deref()
            .or(pod.metadata.generate_name.as_deref())
            .unwrap_or("");
        let seed = format!("{}/{namespace}/{name}", r.uid);
        Admission::Pod(Box::new(PodAdmission {
            pod,
            namespace,
            service_account,
            seed,
        }))
    }
}

/// The AdmissionReview sent back.
///
/// Requests are read with `kube-core`'s types. Responses use this module's
/// [`AdmissionReviewResponse`], which writes `patch` as base64 text — the
/// encoding Kubernetes' Go types give `[]byte` — rather than the array of
/// numbers `kube-core`'s `Vec<u8>` serializes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewResponse {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// The answer.
    pub response: AdmissionResponse,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Always true: this webhook never refuses a pod.
    pub allowed: bool,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// The JSONPatch, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Warnings shown to the client (kubectl prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionReviewResponse {
    /// Allows the request; with a patch when `patch` has operations.
    pub fn allow(uid: &str, patch: Option<&json_patch::Patch>, warnings: Vec<String>) -> Self {
        let encoded = patch.filter(|p| !p.0.is_empty()).map(|p| {
            // A Patch is a list of plain JSON values: serializing cannot fail.
            let bytes = serde_json::to_vec(p).unwrap_or_default();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        });
        AdmissionReviewResponse {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            response: AdmissionResponse {
                uid: uid.to_owned(),
                allowed: true,
                patch_type: encoded.as_ref().map(|_| "JSONPatch".to_owned()),
                patch: encoded,
                warnings,
            },
        }
    }

    /// The decoded patch (empty when there is none).
    pub fn patch(&self) -> Result<json_patch::Patch, WebhookError> {
        let Some(encoded) = self.response.patch.as_deref() else {
            return Ok(json_patch::Patch(Vec::new()));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(WebhookError::PatchNotBase64)?;
        serde_json::from_slice(&bytes).map_err(WebhookError::PatchNotJsonPatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_CREATE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
        "namespace":"ns","operation":"CREATE","userInfo":{"username":"u"},
        "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}},
        "oldObject":null,"dryRun":false}}"#;

    #[test]
    fn parses_a_pod_create() {
        let review = parse_review(POD_CREATE.as_bytes()).unwrap();
        assert_eq!(review.uid(), "u-1");
        let Admission::Pod(p) = review.admission() else {
            panic!("not a pod")
        };
        assert_eq!(
            (p.namespace.as_str(), p.service_account.as_str()),
            ("ns", "default")
        );
        assert_eq!(p.display_name(), "ns/p");
    }

    #[test]
    fn rejects_malformed_reviews() {
        for (body, needle) in [
            ("{", "not JSON"),
            (
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
                "v1beta1",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "no request",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#,
                "no request",
            ),
            (&POD_CREATE.replace(r#""uid":"u-1","#, ""), "uid"),
            (&POD_CREATE.replace(r#""uid":"u-1""#, r#""uid":"""#), "uid"),
            (&POD_CREATE.replace("CREATE", "PATCH"), "malformed"),
        ] {
            let err = parse_review(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
        let old = r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#;
        assert_eq!(
            parse_review(old.as_bytes()).unwrap_err().to_string(),
            "invalid AdmissionReview: expected apiVersion admission.k8s.io/v1 kind AdmissionReview, \
             got apiVersion \"admission.k8s.io/v1beta1\" kind \"AdmissionReview\" \
             (set admissionReviewVersions: [\"v1\"])"
        );
        let err = parse_review(b"{").unwrap_err();
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    }

    #[test]
    fn ignores_what_is_not_a_real_pod_create() {
        for (from, to, why) in [
            ("CREATE", "UPDATE", "not a CREATE"),
            ("CREATE", "DELETE", "not a CREATE"),
            ("CREATE", "CONNECT", "not a CREATE"),
            (r#""dryRun":false"#, r#""dryRun":true"#, "dry run"),
            (
                r#""kind":"Pod"},"resource""#,
                r#""kind":"ConfigMap"},"resource""#,
                "not a Pod",
            ),
            (
                r#""namespace":"ns""#,
                r#""subResource":"ephemeralcontainers","namespace":"ns""#,
                "a subresource",
            ),
        ] {
            let review = parse_review(POD_CREATE.replace(from, to).as_bytes()).unwrap();
            match review.admission() {
                Admission::Ignore(reason) => assert_eq!(reason, why),
                other => panic!("{to}: {other:?}"),
            }
        }
    }

    #[test]
    fn responses_carry_base64_patches() {
        let patch: json_patch::Patch =
            serde_json::from_str(r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#)
                .unwrap();
        let r = AdmissionReviewResponse::allow("u", Some(&patch), vec![]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["response"]["patchType"], "JSONPatch");
        assert!(json["response"]["patch"].is_string());
        assert!(json["response"].get("warnings").is_none());
        assert_eq!(r.patch().unwrap(), patch);
        let empty =
            AdmissionReviewResponse::allow("u", Some(&json_patch::Patch(vec![])), vec!["w".into()]);
        let json = serde_json::to_value(&empty).unwrap();
        assert!(
            json["response"].get("patch").is_none() && json["response"].get("patchType").is_none()
        );
        assert_eq!(json["response"]["warnings"][0], "w");
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    }
}
