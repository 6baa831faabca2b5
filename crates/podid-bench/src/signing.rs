//! `AssumeRoleForPodIdentity` calls SigV4-signed by the node key ahead of
//! time, as an agent signs them (signing name `eks-auth`).

use std::net::SocketAddr;
use std::time::SystemTime;

use anyhow::anyhow;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::Full;
use podid_test_support::NODE;

/// A signed request: method, path, headers (`host`, `content-type`,
/// `x-amz-date`, `authorization`) and body.
#[derive(Debug, Clone)]
pub struct SignedCall {
    /// `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The signed headers, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Bytes,
}

impl SignedCall {
    /// `method path` with `body`, signed by the node key at `at` for a
    /// server at `addr`.
    pub fn new(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Vec<u8>,
        at: SystemTime,
    ) -> anyhow::Result<SignedCall> {
        let host = addr.to_string();
        let identity: Identity = Credentials::new(
            NODE.access_key_id,
            NODE.secret_access_key,
            None,
            None,
            "podid-bench",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("eks-auth")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| anyhow!("signing parameters: {e}"))?
            .into();
        let url = format!("http://{host}{path}");
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/json"),
        ];
        let signable =
            SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(&body))
                .map_err(|e| anyhow!("signable request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| anyhow!("signing: {e}"))?
            .into_parts();
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        out.extend(
            instructions
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Ok(SignedCall {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: out,
            body: Bytes::from(body),
        })
    }

    /// The headers as a header map.
    pub fn header_map(&self) -> anyhow::Result<http::HeaderMap> {
        let mut map = http::HeaderMap::new();
        for (k, v) in &self.headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
        Ok(map)
    }

    /// The request as hyper's client sends it.
    pub fn to_request(&self) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut request = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.path.as_str());
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        Ok(request
            .header(http::header::CONTENT_LENGTH, self.body.len())
            .body(Full::new(self.body.clone()))?)
    }

    /// The request's HTTP/1.1 bytes, for a client that only writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.path).as_bytes());
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_carry_a_sigv4_header_and_the_body() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        let call = SignedCall::new(
            addr,
            "POST",
            "/clusters/bench/assume-role-for-pod-identity",
            b"{}".to_vec(),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&call.to_bytes()).into_owned();
        assert!(text.starts_with("POST /clusters/bench/assume-role-for-pod-identity HTTP/1.1\r\n"));
        let credential = format!(
            "authorization: AWS4-HMAC-SHA256 Credential={}/",
            NODE.access_key_id
        );
        assert!(text.contains(&credential), "{text}");
        assert!(text.contains("/eks-auth/aws4_request"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
        let request = call.to_request().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.headers()["content-length"], "2");
        assert_eq!(request.headers()["host"], "127.0.0.1:8080");
    }
}
