//! SigV4 signing by aws-sigv4, the signer of aws-sdk-rust: for tests that
//! need a request signed by an implementation other than podid's verifier.

use std::borrow::Cow;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Who signs, for what scope, when.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// A session token, which the signer adds as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// The scope's region.
    pub region: &'a str,
    /// The scope's service (signing name).
    pub service: &'a str,
    /// The signing time (`X-Amz-Date`, whole seconds).
    pub time: SystemTime,
    /// Sign every header given, even those the SDKs leave out
    /// (`user-agent`, …); otherwise the SDKs' default settings.
    pub every_header: bool,
}

/// The key id and scope, not the secret or token.
impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signer({} {}/{} at {:?})",
            self.access_key_id, self.region, self.service, self.time
        )
    }
}

/// Why aws-sigv4 would not sign.
#[derive(Debug, thiserror::Error)]
#[error("aws-sigv4 cannot sign: {0}")]
pub struct SigningFailed(String);

impl Signer<'static> {
    /// A test key signing for `service` in us-east-1 now, with the SDKs'
    /// default settings.
    pub fn now(key: &crate::TestKey, service: &'static str) -> Signer<'static> {
        Signer {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            session_token: None,
            region: "us-east-1",
            service,
            time: SystemTime::now(),
            every_header: false,
        }
    }
}

impl Signer<'_> {
    /// The headers aws-sigv4's `sign()` adds to `method url` with `headers`
    /// and `body`: `x-amz-date`, `authorization`, and `x-amz-security-token`
    /// with a session token.
    ///
    /// # Errors
    /// [`SigningFailed`] when aws-sigv4 refuses the request (a malformed URL
    /// or header).
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SigningFailed> {
        let identity: Identity = Credentials::new(
            self.access_key_id,
            self.secret_access_key,
            self.session_token.map(str::to_owned),
            None,
            "podid-test-support",
        )
        .into();
        let mut settings = SigningSettings::default();
        if self.every_header {
            settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
        }
        let failed = |e: &dyn std::fmt::Display| SigningFailed(e.to_string());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.time)
            .settings(settings)
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}
