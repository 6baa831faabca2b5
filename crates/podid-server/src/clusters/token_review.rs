//! A cluster's `tokenReview` in the registry: the API server asked before issuing,
//! its CA and the credential to call it with (write-only: never answered, logged or audited).

use podid_api::arn::printable;
use podid_api::cluster::{TokenReviewRequest, TokenReviewSettings, UpdateClusterRequest};
use podid_api::{validate, ApiError, Secret};

/// The largest CA bundle accepted, in bytes.
const MAX_CA_BYTES: usize = 64 * 1024;

/// The largest review credential accepted, in bytes (a service-account token is ~1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Checks a `tokenReview` and makes it the settings to store.
pub(super) fn settings(req: &TokenReviewRequest) -> Result<TokenReviewSettings, ApiError> {
    let url = req
        .api_server_url
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("tokenReview.apiServerUrl is required"))?;
    validate::url("tokenReview.apiServerUrl", url)?;
    if !url.starts_with("https://") {
        return Err(ApiError::invalid_parameter(format!(
            "tokenReview.apiServerUrl '{}' must be an https:// URL (the review carries pod tokens)",
            printable(url)
        )));
    }
    if let Some(pem) = &req.ca_pem {
        check_ca(pem)?;
    }
    let token = req
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "tokenReview.token is required: a bearer token that may create tokenreviews",
            )
        })?;
    if token.len() > MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid_parameter(format!(
            "tokenReview.token must be at most {MAX_TOKEN_BYTES} printable characters without spaces"
        )));
    }
    Ok(TokenReviewSettings {
        api_server_url: url.trim_end_matches('/').to_owned(),
        ca_pem: req.ca_pem.clone(),
        token: Some(Secret::new(token)),
    })
}

/// The CA must be PEM certificates that parse.
fn check_ca(pem: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid_parameter(format!("tokenReview.caPem {why}"));
    if pem.len() > MAX_CA_BYTES {
        return Err(bad(&format!("is larger than {MAX_CA_BYTES} bytes")));
    }
    let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|_| bad("is not PEM certificates"))?;
    if certificates.is_empty() {
        return Err(bad("holds no certificate ('-----BEGIN CERTIFICATE-----')"));
    }
    crate::broker::token_review::build_client(Some(pem))
        .map(|_| ())
        .map_err(|_| bad("holds a certificate that cannot be used"))
}

/// What an update does to the settings: `None` leaves them, `Some(None)`
/// removes them (`disableTokenReview: true`), `Some(Some(s))` sets new ones.
pub(super) fn updated(
    req: &UpdateClusterRequest,
) -> Result<Option<Option<TokenReviewSettings>>, ApiError> {
    match (&req.token_review, req.disable_token_review) {
        (Some(_), Some(true)) => Err(ApiError::invalid_parameter(
            "give tokenReview or disableTokenReview, not both",
        )),
        (Some(review), _) => Ok(Some(Some(settings(review)?))),
        (None, Some(true)) => Ok(Some(None)),
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, token: Option<&str>) -> TokenReviewRequest {
        TokenReviewRequest {
            api_server_url: Some(url.to_owned()),
            ca_pem: None,
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn a_review_needs_an_https_url_and_a_token() {
        let ok = settings(&request("https://10.0.0.1:6443/", Some("review-token")));
        let ok = ok.expect("valid");
        assert_eq!(ok.api_server_url, "https://10.0.0.1:6443");
        assert_eq!(ok.token.as_ref().map(Secret::expose), Some("review-token"));
        for bad in [
            request("http://10.0.0.1:6443", Some("t")),
            request("ftp://x", Some("t")),
            request("https://10.0.0.1", None),
            request("https://10.0.0.1", Some("  ")),
            request("https://10.0.0.1", Some("two words")),
            TokenReviewRequest::default(),
        ] {
            let e = settings(&bad).expect_err("refused");
            assert_eq!(e.kind, podid_api::ErrorKind::InvalidParameter);
            assert!(!e.message.contains("two words"), "{}", e.message);
        }
    }

    #[test]
    fn the_ca_must_be_pem_certificates() {
        let mut req = request("https://10.0.0.1", Some("t"));
        req.ca_pem = Some("not pem".into());
        assert!(settings(&req).is_err());
        req.ca_pem = Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
        assert!(settings(&req).is_err());
    }

    #[test]
    fn disabling_and_setting_at_once_is_refused() {
        let both = UpdateClusterRequest {
            token_review: Some(request("https://a", Some("t"))),
            disable_token_review: Some(true),
            ..UpdateClusterRequest::default()
        };
        assert!(updated(&both).is_err());
        let off = UpdateClusterRequest {
            disable_token_review: Some(true),
            ..UpdateClusterRequest::default()
        };
        assert_eq!(updated(&off).ok(), Some(Some(None)));
        assert_eq!(updated(&UpdateClusterRequest::default()).ok(), Some(None));
    }
}
