//! The AWS error shape shared by every podid API: the `__type` / `x-amzn-errortype` names the
//! SDKs map to their modelled exceptions, so they match the service models exactly.

use serde::Serialize;

/// Every error a podid API can answer with.
///
/// The variant decides the HTTP status and the `__type` name clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A named resource (cluster, association) does not exist. 404.
    ResourceNotFound,
    /// A parameter is missing or malformed. 400.
    InvalidParameter,
    /// The request as a whole is not acceptable (for example an idempotency
    /// token reused with a different request). 400.
    InvalidRequest,
    /// A limit was reached (for example too many tags). 400.
    ResourceLimitExceeded,
    /// The resource exists already or is still in use. 409.
    ResourceInUse,
    /// The server failed; the message never carries internal details. 500.
    Server,
    /// No `Authorization` header (or no SigV4 one). 403.
    MissingAuthenticationToken,
    /// The access key id is not known to the server. 403.
    UnrecognizedClient,
    /// The signature does not match, or the request is too old or too new. 403.
    InvalidSignature,
    /// The SigV4 `Authorization` header lacks a part (`Credential`,
    /// `SignedHeaders`, `Signature`, `X-Amz-Date`) or has a malformed one.
    /// 400, as AWS's Common Errors list `IncompleteSignature`.
    IncompleteSignature,
    /// The caller is authenticated but its role does not allow the operation. 403.
    AccessDenied,
    /// No operation exists at this path and method. 404.
    UnknownOperation,
    /// The body is larger than the server accepts. 413.
    RequestEntityTooLarge,
    /// The body is not JSON. 415.
    UnsupportedMediaType,
    /// The store or STS is not reachable; try again. 503.
    ServiceUnavailable,
    /// EKS Auth: the token is not valid for the cluster. 400.
    InvalidToken,
    /// EKS Auth: the token has expired. 400.
    ExpiredToken,
    /// EKS Auth: STS refused to issue the pod's credentials (the role does
    /// not trust the broker, a wrong external id). 400, as EKS Auth answers it.
    CredentialsDenied,
    /// EKS Auth: too many requests; try again later. 429.
    Throttling,
    /// EKS Auth: the server failed. 500.
    InternalServer,
    /// The request's body did not arrive within the server's body read
    /// timeout. 408; the SDKs retry it (`RequestTimeoutException` is among
    /// botocore's and aws-sdk-rust's transient errors).
    RequestTimeout,
}

impl ErrorKind {
    /// The error's name as clients see it in `x-amzn-errortype` and `__type`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::InvalidParameter => "InvalidParameterException",
            ErrorKind::InvalidRequest => "InvalidRequestException",
            ErrorKind::ResourceLimitExceeded => "ResourceLimitExceededException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::Server => "ServerException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::RequestEntityTooLarge => "RequestEntityTooLargeException",
            ErrorKind::UnsupportedMediaType => "UnsupportedMediaTypeException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::InvalidToken => "InvalidTokenException",
            ErrorKind::ExpiredToken => "ExpiredTokenException",
            ErrorKind::CredentialsDenied => "AccessDeniedException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::RequestTimeout => "RequestTimeoutException",
        }
    }

    /// The HTTP status code the error is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => 404,
            ErrorKind::InvalidParameter
            | ErrorKind::InvalidRequest
            | ErrorKind::ResourceLimitExceeded
            | ErrorKind::IncompleteSignature => 400,
            ErrorKind::ResourceInUse => 409,
            ErrorKind::Server => 500,
            ErrorKind::MissingAuthenticationToken
            | ErrorKind::UnrecognizedClient
            | ErrorKind::InvalidSignature
            | ErrorKind::AccessDenied => 403,
            ErrorKind::RequestEntityTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::InvalidToken | ErrorKind::ExpiredToken | ErrorKind::CredentialsDenied => 400,
            ErrorKind::Throttling => 429,
            ErrorKind::InternalServer => 500,
            ErrorKind::RequestTimeout => 408,
        }
    }

    /// Every kind, for tests and documentation.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::ResourceNotFound,
        ErrorKind::InvalidParameter,
        ErrorKind::InvalidRequest,
        ErrorKind::ResourceLimitExceeded,
        ErrorKind::ResourceInUse,
        ErrorKind::Server,
        ErrorKind::MissingAuthenticationToken,
        ErrorKind::UnrecognizedClient,
        ErrorKind::InvalidSignature,
        ErrorKind::IncompleteSignature,
        ErrorKind::AccessDenied,
        ErrorKind::UnknownOperation,
        ErrorKind::RequestEntityTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::ServiceUnavailable,
        ErrorKind::InvalidToken,
        ErrorKind::ExpiredToken,
        ErrorKind::CredentialsDenied,
        ErrorKind::Throttling,
        ErrorKind::InternalServer,
        ErrorKind::RequestTimeout,
    ];
}

/// An error answered to a client: a kind and a human-readable message.
///
/// Messages are written for the caller and must never contain secrets,
/// tokens or internal error dumps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct ApiError {
    /// What went wrong, deciding the status and the error name.
    pub kind: ErrorKind,
    /// What the caller should know to fix the request.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// `InvalidParameterException` with `message`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    /// `InvalidRequestException` with `message`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// `ResourceNotFoundException` with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }

    /// The JSON body AWS `rest-json` services answer errors with.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            type_name: self.kind.name(),
            message: &self.message,
        }
    }
}

/// `{"__type": "...", "message": "..."}`, the error body of `rest-json` services.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error's name.
    #[serde(rename = "__type")]
    pub type_name: &'static str,
    /// The error's message.
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_exception_name_and_an_error_status() {
        for kind in ErrorKind::ALL {
            assert!(kind.name().ends_with("Exception"), "{kind:?}");
            assert!((400..600).contains(&kind.status()), "{kind:?}");
        }
    }

    #[test]
    fn body_has_type_and_message() {
        let e = ApiError::new(ErrorKind::ResourceInUse, "already there");
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"__type": "ResourceInUseException", "message": "already there"})
        );
        assert_eq!(e.kind.status(), 409);
    }
}
