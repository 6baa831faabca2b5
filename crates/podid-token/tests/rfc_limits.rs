//! Rules of key parsing and token verification, each checked against an oracle of its own: the
//! RFC 7515 Appendix A.2 RSA key and signature, the key sizes and coordinate lengths of RFC 7518,
//! the limits docs/broker.md states, and hand-written JWKs, claims and tokens.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use podid_token::{
    verify_token, ClusterTrust, JwksFetchError, JwksFetcher, KeySet, KeySetError, NoJwksFetcher,
    PodIdentity, TokenError, TokenVerifier,
};
use serde_json::{json, Value};

// RFC 7515 Appendix A.2 (the same key is RFC 7517 Appendix A.1/A.2): an RSA 2048 key, and the
// RS256 JWS of the payload {"iss":"joe", "exp":1300819380, "http://example.com/is_root":true}.
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_E: &str = "AQAB";
const A2_D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
const A2_P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const A2_Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
const A2_DP: &str = "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
const A2_DQ: &str = "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
const A2_QI: &str = "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
const A2_SIGNING_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A2_SIGNATURE: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
/// The key id RFC 7517 Appendix A.1 gives this key.
const A2_KID: &str = "2011-04-29";

// RFC 7515 Appendix A.3: the public point of a P-256 key.
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE";
const AUDIENCE: &str = "pods.eks.amazonaws.com";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// The RFC 7515 A.2 public key as a JWK, with `extra` members added.
fn a2_jwk(extra: Value) -> Value {
    let mut jwk = json!({"kty": "RSA", "kid": A2_KID, "n": A2_N, "e": A2_E});
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

fn trust(jwks: Value) -> ClusterTrust {
    ClusterTrust {
        name: "cluster-a".into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks,
        jwks_uri: None,
        version: 1,
    }
}

/// The claims of a projected token as the kube-apiserver writes them, with `jti` set.
fn pod_claims(jti: &str) -> Value {
    json!({
        "aud": [AUDIENCE],
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": ISSUER,
        "jti": jti,
        "kubernetes.io": {
            "namespace": "default",
            "node": {"name": "ip-10-0-0-1", "uid": "node-uid-1"},
            "pod": {"name": "app-7d9f", "uid": "pod-uid-1"},
            "serviceaccount": {"name": "boto3", "uid": "sa-uid-1"}
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:default:boto3"
    })
}

/// The identity [`pod_claims`] describe.
fn pod_identity(jti: &str) -> PodIdentity {
    PodIdentity {
        namespace: "default".into(),
        service_account: "boto3".into(),
        service_account_uid: Some("sa-uid-1".into()),
        pod_name: "app-7d9f".into(),
        pod_uid: "pod-uid-1".into(),
        node_name: Some("ip-10-0-0-1".into()),
        issuer: ISSUER.into(),
        expires_at: NOW + 3600,
        issued_at: Some(NOW),
        jti: Some(jti.into()),
    }
}

fn segment(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

/// A DER length.
fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// A DER INTEGER of the unsigned big-endian `magnitude`.
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let mut body: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    if body.first().is_none_or(|b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    let mut out = vec![0x02];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

/// The RFC 7515 A.2 private key as a PKCS#1 RSAPrivateKey (RFC 8017 A.1.2).
fn a2_key_pair() -> RsaKeyPair {
    let mut body = der_uint(&[0]);
    for part in [A2_N, A2_E, A2_D, A2_P, A2_Q, A2_DP, A2_DQ, A2_QI] {
        body.extend(der_uint(&unb64(part)));
    }
    let mut der = vec![0x30];
    der.extend(der_len(body.len()));
    der.extend(body);
    RsaKeyPair::from_der(&der).unwrap()
}

/// `header.claims` signed with the A.2 key by aws-lc's RSA PKCS#1 v1.5 signer.
fn a2_sign(
    params: &'static dyn aws_lc_rs::signature::RsaEncoding,
    header: &Value,
    claims: &Value,
) -> String {
    let input = format!("{}.{}", segment(header), segment(claims));
    sign_input(params, &input)
}

fn sign_input(params: &'static dyn aws_lc_rs::signature::RsaEncoding, input: &str) -> String {
    let pair = a2_key_pair();
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(params, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .unwrap();
    format!("{input}.{}", b64(&sig))
}

/// The reasons `from_jwks` gives for a document of the keys `keys`, none usable.
fn rejection(keys: Value) -> String {
    KeySet::from_jwks(&json!({ "keys": keys }))
        .unwrap_err()
        .to_string()
}

// ------------------------------------------------------------------ algorithms

#[test]
fn rfc7515_a2_rs256_signature_is_accepted() {
    let jwks = json!({"keys": [a2_jwk(json!({}))]});
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let mut trust = trust(jwks);
    trust.issuer = "joe".into();
    let jws = format!("{A2_SIGNING_INPUT}.{A2_SIGNATURE}");
    // The signature verifies; the claims are not a pod's: the first claim missing is `aud`.
    assert_eq!(
        verify_token(&jws, &trust, &keys, 1_300_819_380),
        Err(TokenError::MissingClaim("aud"))
    );
    // One bit of the signature changed: refused.
    let mut sig = unb64(A2_SIGNATURE);
    sig[100] ^= 1;
    let forged = format!("{A2_SIGNING_INPUT}.{}", b64(&sig));
    assert_eq!(
        verify_token(&forged, &trust, &keys, 1_300_819_380),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn rs384_and_rs512_tokens_verify() {
    // The private key rebuilt from the RFC signs the RFC's input to the RFC's signature.
    assert_eq!(
        sign_input(&RSA_PKCS1_SHA256, A2_SIGNING_INPUT),
        format!("{A2_SIGNING_INPUT}.{A2_SIGNATURE}")
    );
    // docs/broker.md: RS256/384/512 and ES256/384 are accepted; RFC 7518 section 3.1 names them.
    for (name, params) in [
        (
            "RS384",
            &RSA_PKCS1_SHA384 as &'static dyn aws_lc_rs::signature::RsaEncoding,
        ),
        ("RS512", &RSA_PKCS1_SHA512),
    ] {
        let header = json!({"alg": name, "kid": A2_KID, "typ": "JWT"});
        let token = a2_sign(params, &header, &pod_claims(name));
        // A JWK naming the algorithm, and one naming none.
        for jwk in [
            a2_jwk(json!({"alg": name, "use": "sig"})),
            a2_jwk(json!({})),
        ] {
            let jwks = json!({ "keys": [jwk] });
            let keys = KeySet::from_jwks(&jwks).unwrap();
            assert_eq!(
                verify_token(&token, &trust(jwks), &keys, NOW),
                Ok(pod_identity(name)),
                "{name} {jwk}"
            );
        }
        // Signed with another hash than the header names: refused.
        let other = if name == "RS512" {
            &RSA_PKCS1_SHA384 as &'static dyn aws_lc_rs::signature::RsaEncoding
        } else {
            &RSA_PKCS1_SHA512
        };
        let wrong = a2_sign(other, &header, &pod_claims(name));
        let jwks = json!({"keys": [a2_jwk(json!({}))]});
        let keys = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(
            verify_token(&wrong, &trust(jwks), &keys, NOW),
            Err(TokenError::BadSignature),
            "{name}"
        );
    }
}

#[test]
fn algorithm_mismatches_name_the_algorithm() {
    // A JWK whose alg does not fit its key type is skipped, naming the alg.
    assert_eq!(
        rejection(json!([a2_jwk(json!({"alg": "ES256"}))])),
        "the cluster's key set is unusable: no usable key \
         (key 0: alg ES256 does not fit the key type)"
    );
    assert_eq!(
        rejection(json!([{"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y, "alg": "RS512"}])),
        "the cluster's key set is unusable: no usable key \
         (key 0: alg RS512 does not fit the key type)"
    );
    // A token whose alg the named key does not fit: the error names the token's alg.
    let jwks = json!({"keys": [
        a2_jwk(json!({"alg": "RS256"})),
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": A3_X, "y": A3_Y},
    ]});
    let keys = KeySet::from_jwks(&jwks).unwrap();
    for (alg, kid) in [
        ("RS384", A2_KID),
        ("RS512", A2_KID),
        ("ES256", A2_KID),
        ("ES384", "ec"),
        ("RS256", "ec"),
    ] {
        let header = json!({"alg": alg, "kid": kid});
        let token = format!(
            "{}.{}.{}",
            segment(&header),
            segment(&pod_claims("x")),
            b64(&[7; 64])
        );
        let err = verify_token(&token, &trust(jwks.clone()), &keys, NOW).unwrap_err();
        let message = err.to_string();
        assert!(
            message.ends_with(&format!("does not fit the token's algorithm {alg}")),
            "{message}"
        );
        assert_eq!(
            err,
            TokenError::KeyAlgorithmMismatch {
                kid: Some(kid.into()),
                alg: alg.into()
            }
        );
    }
}

// ------------------------------------------------------------------- key sets

#[test]
fn a_key_set_of_100_keys_is_accepted() {
    // MAX_JWKS_KEYS is documented as the most keys a set may hold: 100 (101 is refused).
    let keys: Vec<Value> = (0..100)
        .map(|i| a2_jwk(json!({"kid": format!("k{i}")})))
        .collect();
    let set = KeySet::from_jwks(&json!({ "keys": keys })).unwrap();
    assert_eq!(set.len(), 100);
    assert!(!set.is_empty());
    let mut keys = keys;
    keys.push(a2_jwk(json!({})));
    assert_eq!(
        rejection(json!(keys)),
        "the cluster's key set is unusable: 101 keys, more than 100"
    );
}

#[test]
fn contains_kid_is_exact() {
    let set = KeySet::from_jwks(&json!({"keys": [a2_jwk(json!({}))]})).unwrap();
    assert!(set.contains_kid("2011-04-29"));
    for absent in ["2011-04-30", "2011-04-2", "", "2011-04-29 "] {
        assert!(!set.contains_kid(absent), "{absent:?}");
    }
    // A key without kid matches no kid.
    let mut anonymous = a2_jwk(json!({}));
    anonymous.as_object_mut().unwrap().remove("kid");
    let set = KeySet::from_jwks(&json!({ "keys": [anonymous] })).unwrap();
    assert!(!set.contains_kid("2011-04-29"));
    assert!(!set.contains_kid(""));
}

/// An odd modulus of `bits` bits (its top byte holding the top bits).
fn modulus(bits: usize) -> Vec<u8> {
    let len = bits.div_ceil(8);
    let mut n = vec![0xc3; len];
    let top_bits = bits - (len - 1) * 8;
    n[0] = 0x80 >> (8 - top_bits);
    n[0] |= 1 << (top_bits - 1);
    n[len - 1] |= 1;
    n
}

#[test]
fn rsa_modulus_sizes_follow_rfc7518() {
    // RFC 7518 section 3.3: a key of 2048 bits or larger; docs/broker.md, jwks.rs: up to 8192.
    for bits in [2048, 2049, 2055, 4095, 8185, 8191, 8192] {
        let n = modulus(bits);
        assert_eq!(n.len() * 8 - n[0].leading_zeros() as usize, bits);
        let jwk = json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"});
        let set = KeySet::from_jwks(&json!({ "keys": [jwk] }));
        assert!(set.is_ok(), "{bits} bits: {set:?}");
    }
    for bits in [1024, 2040, 2041, 2047, 8193, 8199, 8200] {
        let jwk = json!({"kty": "RSA", "n": b64(&modulus(bits)), "e": "AQAB"});
        assert_eq!(
            rejection(json!([jwk])),
            format!(
                "the cluster's key set is unusable: no usable key \
                 (key 0: RSA modulus of {bits} bits (2048 to 8192 accepted))"
            )
        );
    }
    // Leading zero bytes do not count.
    let mut padded = vec![0, 0];
    padded.extend(modulus(2047));
    let jwk = json!({"kty": "RSA", "n": b64(&padded), "e": "AQAB"});
    assert!(rejection(json!([jwk])).contains("RSA modulus of 2047 bits"));
}

#[test]
fn rsa_exponent_of_zero_or_more_than_8_bytes_is_refused() {
    let refused = "the cluster's key set is unusable: no usable key \
                   (key 0: RSA exponent out of range)";
    // Zero (all zero bytes), empty, and 9 or more bytes.
    for e in [vec![0u8], vec![0, 0], vec![], vec![1; 9], vec![0x81; 16]] {
        let jwk = json!({"kty": "RSA", "n": A2_N, "e": b64(&e)});
        assert_eq!(rejection(json!([jwk])), refused, "e {e:?}");
    }
    // RFC 8017 section 3.1 allows any odd e from 3 to n - 1; the crate takes up to 64 bits:
    // 3, 65537, 65537 written in 9 bytes (leading zeros), 2^56 + 1 and 2^63 - 1 (8 bytes).
    for e in [
        vec![3u8],
        vec![1, 0, 1],
        vec![0, 0, 0, 0, 0, 0, 1, 0, 1],
        vec![1, 0, 0, 0, 0, 0, 0, 1],
        vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        let jwk = json!({"kty": "RSA", "n": A2_N, "e": b64(&e)});
        assert!(
            KeySet::from_jwks(&json!({ "keys": [jwk] })).is_ok(),
            "e {e:?}"
        );
    }
}

#[test]
fn ec_coordinates_must_have_the_curve_length() {
    // RFC 7518 sections 6.2.1.2 and 6.2.1.3: x and y are the full coordinate length, 32 bytes
    // for P-256 (leading zeros kept).
    let x = unb64(A3_X);
    let y = unb64(A3_Y);
    assert!(KeySet::from_jwks(
        &json!({"keys": [{"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y}]})
    )
    .is_ok());
    let short = |c: &[u8]| b64(&c[1..]);
    let long = |c: &[u8]| {
        let mut v = vec![0];
        v.extend_from_slice(c);
        b64(&v)
    };
    for (bx, by) in [
        (short(&x), A3_Y.to_string()),
        (A3_X.to_string(), short(&y)),
        (long(&x), A3_Y.to_string()),
        (A3_X.to_string(), long(&y)),
        (short(&x), short(&y)),
    ] {
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": bx, "y": by});
        assert_eq!(
            rejection(json!([jwk])),
            "the cluster's key set is unusable: no usable key \
             (key 0: EC coordinates must be 32 bytes)"
        );
    }
    // A P-384 key needs 48 bytes: the P-256 point's 32 are refused as such.
    let jwk = json!({"kty": "EC", "crv": "P-384", "x": A3_X, "y": b64(&[1; 48])});
    assert_eq!(
        rejection(json!([jwk])),
        "the cluster's key set is unusable: no usable key \
         (key 0: EC coordinates must be 48 bytes)"
    );
}

// ------------------------------------------------------------------ the verifier

#[tokio::test]
async fn no_jwks_fetcher_fails_every_fetch() {
    assert_eq!(
        NoJwksFetcher
            .fetch_jwks("https://oidc.example/openid/v1/jwks")
            .await,
        Err(JwksFetchError::NoFetcher)
    );
    // Through the verifier: a cluster without usable stored keys but with a JWKS URI.
    let v = TokenVerifier::new(Arc::new(NoJwksFetcher), Arc::new(|| NOW), 10);
    let mut trust = trust(Value::Null);
    trust.jwks_uri = Some("https://oidc.example/openid/v1/jwks".into());
    let token = a2_sign(
        &RSA_PKCS1_SHA256,
        &json!({"alg": "RS256", "kid": A2_KID}),
        &pod_claims("j"),
    );
    assert_eq!(
        v.verify(&trust, &token).await,
        Err(TokenError::KeySet(KeySetError::Fetch(
            JwksFetchError::NoFetcher
        )))
    );
}

#[tokio::test]
async fn verifier_accepts_a_token_of_exactly_16_kib() {
    // docs/broker.md: tokens over 16 KiB are refused; one of 16384 bytes is not over.
    let jwks = json!({"keys": [a2_jwk(json!({}))]});
    let v = TokenVerifier::new(Arc::new(NoJwksFetcher), Arc::new(|| NOW), 10);
    let header = json!({"alg": "RS256", "kid": A2_KID});
    // The jti grows the payload; a header member of 0 to 2 bytes closes the last gap (each
    // payload byte adds one or two base64 characters). The signature adds 342 characters.
    let input = |filler: usize, jti: &str| {
        let mut header = header.clone();
        header["x"] = json!("f".repeat(filler));
        (header, pod_claims(jti))
    };
    let signature_chars = b64(&[0; 256]).len() + 1;
    let (header, claims, jti) = (0..3)
        .flat_map(|filler| (11_000..12_500).map(move |jti_len| (filler, "j".repeat(jti_len))))
        .find_map(|(filler, jti)| {
            let (header, claims) = input(filler, &jti);
            let len = segment(&header).len() + 1 + segment(&claims).len() + signature_chars;
            (len == 16 * 1024).then_some((header, claims, jti))
        })
        .unwrap();
    let token = a2_sign(&RSA_PKCS1_SHA256, &header, &claims);
    assert_eq!(token.len(), 16_384);
    assert_eq!(
        v.verify(&trust(jwks.clone()), &token).await,
        Ok(Arc::new(pod_identity(&jti)))
    );
    // One byte more: refused before decoding (an extra space is not trimmed by then).
    let over = format!("{token} ");
    assert_eq!(
        v.verify(&trust(jwks), &over).await,
        Err(TokenError::TooLarge)
    );
}
