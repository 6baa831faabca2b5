//! Test JWKS and unsigned tokens shaped like projected service-account
//! tokens (the claims come from `podid_token::dev::ProjectedToken`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use podid_token::dev::{encode_segment, ProjectedToken};
use serde_json::Value;

/// A JWKS with one RSA key (`kid` `test`), for registering a cluster whose
/// tokens a test never verifies.
pub const TEST_JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"test","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;

/// A compact JWS of `header` and `claims` whose signature segment is the
/// base64url of `signature` (not a real signature).
pub fn unsigned_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        encode_segment(header),
        encode_segment(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An unsigned token of pod `pod` (uid `uid-{pod}`) of service account
/// `ns/sa`, issuer `https://issuer.example`, issued an hour before it
/// expires, `expires_in` seconds from now (negative: already expired).
/// The same pod in the same second gets the same token.
pub fn pod_token(pod: &str, expires_in: i64) -> String {
    let exp = now_secs() + expires_in;
    let mut t = ProjectedToken::new("https://issuer.example", "ns", "sa", exp - 3600);
    t.expires_in_secs = 3600;
    t.service_account_uid = "sa-uid".into();
    t.pod_name = pod.into();
    t.pod_uid = format!("uid-{pod}");
    t.node_name = None;
    t.jti = Some(format!("jti-{pod}"));
    let header = serde_json::json!({"alg": "RS256", "kid": "test"});
    unsigned_token(&header, &t.claims(), b"signature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_tokens_carry_the_pod_and_the_expiry() {
        let token = pod_token("p1", 600);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "c2lnbmF0dXJl");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], "uid-p1");
        assert_eq!(claims["kubernetes.io"]["namespace"], "ns");
        let exp = claims["exp"].as_i64().unwrap_or_default();
        assert!((exp - now_secs() - 600).abs() <= 1, "{exp}");
        assert_eq!(claims["iat"].as_i64(), Some(exp - 3600));
    }

    #[test]
    fn the_test_jwks_is_json_with_one_key() {
        let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap_or_default();
        assert_eq!(jwks["keys"][0]["kid"], "test");
    }
}
