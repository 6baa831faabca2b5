//! Tests of the parent module.

use super::*;
use crate::{verify_token, ClusterTrust, KeySet};

fn trust(key: &SigningKey) -> ClusterTrust {
    ClusterTrust {
        name: "dev".into(),
        issuer: "https://kubernetes.default.svc".into(),
        audience: "pods.eks.amazonaws.com".into(),
        jwks: key.jwks(),
        jwks_uri: None,
        version: 1,
    }
}

/// Every algorithm the dev keys support.
const ALGORITHMS: [DevAlgorithm; 3] = [
    DevAlgorithm::Rs256,
    DevAlgorithm::Es256,
    DevAlgorithm::Es384,
];

/// The length in bytes of the base64url member `name` of a JWK.
fn decoded_len(jwk: &Value, name: &str) -> usize {
    URL_SAFE_NO_PAD
        .decode(jwk[name].as_str().unwrap())
        .unwrap()
        .len()
}

#[test]
fn algorithm_names_round_trip() {
    for alg in ALGORITHMS {
        assert_eq!(DevAlgorithm::parse(alg.as_str()), Some(alg));
    }
    assert_eq!(DevAlgorithm::parse("HS256"), None);
}

#[test]
fn every_algorithm_signs_verifiable_tokens() {
    for alg in ALGORITHMS {
        let key = SigningKey::generate(alg, "k").unwrap();
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.kid(), "k");
        let t = ProjectedToken::new("https://kubernetes.default.svc", "ns", "sa", 1000);
        let token = t.sign(&key);
        let keys = KeySet::from_jwks(&key.jwks()).unwrap();
        let id = verify_token(&token, &trust(&key), &keys, 1000).unwrap();
        assert_eq!(id.namespace, "ns");
        assert_eq!(id.service_account, "sa");
        assert_eq!(id.pod_name, "sa-pod");
        assert_eq!(id.pod_uid, t.pod_uid);
        assert_eq!(
            id.service_account_uid.as_deref(),
            Some(&*t.service_account_uid)
        );
        assert_eq!(id.node_name.as_deref(), Some("node-1"));
        assert_eq!(id.expires_at, 1000 + 86_400);
    }
}

#[test]
fn header_has_alg_and_kid_and_no_typ() {
    let key = SigningKey::generate(DevAlgorithm::Es256, "kid-1").unwrap();
    let token = key.sign(&json!({"a": 1}));
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "ES256", "kid": "kid-1"}));
}

#[test]
fn pem_round_trip_keeps_the_key() {
    for alg in ALGORITHMS {
        let key = SigningKey::generate(alg, "k").unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let again = SigningKey::from_pkcs8_pem(&pem, alg, "k").unwrap();
        assert_eq!(again.jwk(), key.jwk());
        let public = key.public_key_pem().unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }
}

#[test]
fn pem_errors() {
    let rsa = SigningKey::generate(DevAlgorithm::Rs256, "k").unwrap();
    let pem = rsa.to_pkcs8_pem().unwrap();
    assert!(SigningKey::from_pkcs8_pem(&pem, DevAlgorithm::Es256, "k").is_err());
    assert!(SigningKey::from_pkcs8_pem("nothing", DevAlgorithm::Rs256, "k").is_err());
    assert!(SigningKey::from_pkcs8_pem(
        "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
        DevAlgorithm::Rs256,
        "k"
    )
    .is_err());
    let p256 = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let pem = p256.to_pkcs8_pem().unwrap();
    assert!(SigningKey::from_pkcs8_pem(&pem, DevAlgorithm::Es384, "k").is_err());
    let err = SigningKey::from_pkcs8_pem(&pem, DevAlgorithm::Rs256, "k").unwrap_err();
    assert!(
        err.to_string().starts_with("signing key: not an RSA key: "),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn jwk_shapes() {
    let rsa = SigningKey::generate(DevAlgorithm::Rs256, "r")
        .unwrap()
        .jwk();
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(decoded_len(&rsa, "n"), 256);
    let ec = SigningKey::generate(DevAlgorithm::Es384, "e")
        .unwrap()
        .jwk();
    assert_eq!(ec["crv"], "P-384");
    assert_eq!(decoded_len(&ec, "x"), 48);
    assert_eq!(decoded_len(&ec, "y"), 48);
    assert_eq!(ec["use"], "sig");
    assert_eq!(ec["alg"], "ES384");
}

#[test]
fn claims_layout_is_kubernetes() {
    let mut t = ProjectedToken::new("https://iss", "default", "boto3", 100);
    t.node_uid = Some("nu".into());
    t.jti = Some("j".into());
    t.warn_after = Some(200);
    t.service_account_uid = "su".into();
    t.pod_uid = "pu".into();
    let c = t.claims();
    assert_eq!(
        c,
        json!({
            "aud": ["pods.eks.amazonaws.com"],
            "exp": 86_500, "iat": 100, "nbf": 100,
            "iss": "https://iss", "jti": "j",
            "sub": "system:serviceaccount:default:boto3",
            "kubernetes.io": {
                "namespace": "default",
                "node": {"name": "node-1", "uid": "nu"},
                "pod": {"name": "boto3-pod", "uid": "pu"},
                "serviceaccount": {"name": "boto3", "uid": "su"},
                "warnafter": 200
            }
        })
    );
    t.node_name = None;
    t.jti = None;
    let c = t.claims();
    assert!(c["kubernetes.io"].get("node").is_none());
    assert_eq!(c["jti"].as_str().unwrap().len(), 36);
}

#[test]
fn der_reader_rejects_garbage() {
    assert!(rsa_public_components(&[]).is_none());
    assert!(rsa_public_components(&[0x30, 0x82, 0xff]).is_none());
    assert!(rsa_public_components(&[0x30, 0x03, 0x02, 0x01, 0x05]).is_none());
    assert_eq!(
        rsa_public_components(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]),
        Some((vec![5], vec![3]))
    );
}
