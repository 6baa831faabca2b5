//! Verification of projected service-account tokens, end to end through the
//! public API: `verify_token`, `TokenVerifier` and the `dev` helpers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use podid_token::dev::{encode_segment, DevAlgorithm, ProjectedToken, SigningKey};
use podid_token::{
    verify_token, ClusterTrust, JwksFetchError, JwksFetcher, KeySet, KeySetError, PodIdentity,
    TokenError, TokenVerifier, MAX_TOKEN_BYTES,
};
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://oidc.cluster-a.example";
const AUDIENCE: &str = "pods.eks.amazonaws.com";

fn trust_for(jwks: Value) -> ClusterTrust {
    ClusterTrust {
        name: "cluster-a".into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks,
        jwks_uri: None,
        version: 1,
    }
}

fn rsa_key(kid: &str) -> SigningKey {
    SigningKey::generate(DevAlgorithm::Rs256, kid).unwrap()
}

fn token_facts() -> ProjectedToken {
    let mut t = ProjectedToken::new(ISSUER, "default", "boto3", NOW);
    t.pod_name = "app-7d9f".into();
    t.pod_uid = "11111111-2222-3333-4444-555555555555".into();
    t.service_account_uid = "sa-uid-1".into();
    t.node_name = Some("ip-10-0-0-1".into());
    t.jti = Some("jti-1".into());
    t.expires_in_secs = 3600;
    t
}

/// Verifies `token` with the key set of `key` at NOW.
fn check(key: &SigningKey, token: &str) -> Result<PodIdentity, TokenError> {
    let keys = KeySet::from_jwks(&key.jwks()).unwrap();
    verify_token(token, &trust_for(key.jwks()), &keys, NOW)
}

/// Signs `claims` after `edit` changed them.
fn signed_with(key: &SigningKey, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = token_facts().claims();
    edit(&mut claims);
    key.sign(&claims)
}

/// Verifies (as [`check`] does) a token `key` signed after `edit` changed its claims.
fn check_edited(
    key: &SigningKey,
    edit: impl FnOnce(&mut Value),
) -> Result<PodIdentity, TokenError> {
    check(key, &signed_with(key, edit))
}

/// Asserts that a token `key` signed after `edit` changed its claims is refused with `expected`.
#[track_caller]
fn assert_refused(key: &SigningKey, edit: impl FnOnce(&mut Value), expected: TokenError) {
    let mut claims = token_facts().claims();
    edit(&mut claims);
    let token = key.sign(&claims);
    assert_eq!(check(key, &token).err(), Some(expected), "claims {claims}");
}

/// Whether [`check`] refuses `token` for its algorithm.
fn unsupported_algorithm(key: &SigningKey, token: &str) -> bool {
    matches!(check(key, token), Err(TokenError::UnsupportedAlgorithm(_)))
}

fn remove_path(claims: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().unwrap();
    let mut v = claims;
    for p in parents {
        v = &mut v[*p];
    }
    v.as_object_mut().unwrap().remove(*last);
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", encode_segment(header), encode_segment(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    STANDARD.decode(body).unwrap()
}

// ---------------------------------------------------------------- valid tokens

#[test]
fn valid_tokens_of_each_algorithm_verify() {
    for alg in [
        DevAlgorithm::Rs256,
        DevAlgorithm::Es256,
        DevAlgorithm::Es384,
    ] {
        let key = SigningKey::generate(alg, &format!("kid-{}", alg.as_str())).unwrap();
        let token = token_facts().sign(&key);
        let id = check(&key, &token).unwrap();
        assert_eq!(
            id,
            PodIdentity {
                namespace: "default".into(),
                service_account: "boto3".into(),
                service_account_uid: Some("sa-uid-1".into()),
                pod_name: "app-7d9f".into(),
                pod_uid: "11111111-2222-3333-4444-555555555555".into(),
                node_name: Some("ip-10-0-0-1".into()),
                issuer: ISSUER.into(),
                expires_at: NOW + 3600,
                issued_at: Some(NOW),
                jti: Some("jti-1".into()),
            },
            "{}",
            alg.as_str()
        );
    }
}

#[test]
fn token_without_kid_uses_the_only_fitting_key() {
    let key = rsa_key("only");
    let token = key
        .sign_with_header(&json!({"alg": "RS256"}), &token_facts().claims())
        .unwrap();
    assert!(check(&key, &token).is_ok());

    // Two RSA keys: a kid-less token is ambiguous.
    let other = rsa_key("other");
    let jwks = json!({"keys": [key.jwk(), other.jwk()]});
    let keys = KeySet::from_jwks(&jwks).unwrap();
    assert_eq!(
        verify_token(&token, &trust_for(jwks.clone()), &keys, NOW).err(),
        Some(TokenError::UnknownKey { kid: None })
    );
    // With its kid it verifies.
    let token = token_facts().sign(&key);
    assert!(verify_token(&token, &trust_for(jwks), &keys, NOW).is_ok());
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let key = rsa_key("k");
    let token = token_facts().sign(&key);
    assert!(check(&key, &format!("  {token}\n")).is_ok());
}

// ------------------------------------------------------------ shape rejections

#[test]
fn empty_token() {
    let key = rsa_key("k");
    assert_eq!(check(&key, "").err(), Some(TokenError::Empty));
    assert_eq!(check(&key, "   \n").err(), Some(TokenError::Empty));
}

#[test]
fn not_a_jwt() {
    let key = rsa_key("k");
    for bad in [
        "hello",
        "a.b",
        "a.b.c.d",
        "....",
        "Bearer x.y.z",
        "{\"alg\":\"RS256\"}",
    ] {
        let err = check(&key, bad).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{bad}: {err}");
    }
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let key = rsa_key("k");
    let big = "A".repeat(64 * 1024);
    assert_eq!(check(&key, &big).err(), Some(TokenError::TooLarge));
    let just_over = "A".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(check(&key, &just_over).err(), Some(TokenError::TooLarge));
    // At the limit it is decoded (and found malformed, not too large).
    let at_limit = "A".repeat(MAX_TOKEN_BYTES);
    assert!(matches!(
        check(&key, &at_limit),
        Err(TokenError::Malformed(_))
    ));
    // A real token padded with claims to over 16 KiB.
    let token = signed_with(&key, |c| c["pad"] = json!("x".repeat(20_000)));
    assert_eq!(check(&key, &token).err(), Some(TokenError::TooLarge));
}

#[test]
fn broken_base64_in_each_segment() {
    let key = rsa_key("k");
    let token = token_facts().sign(&key);
    let parts: Vec<&str> = token.split('.').collect();
    for i in 0..3 {
        for breakage in ["!", "=", "*", "é"] {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            let mid = p[i].len() / 2;
            p[i].insert_str(mid, breakage);
            let bad = p.join(".");
            let err = check(&key, &bad).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed(_)),
                "segment {i}: {err}"
            );
        }
        // Standard (not url-safe) alphabet.
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        p[i] = p[i].replace('-', "+").replace('_', "/") + "+/";
        let err = check(&key, &p.join(".")).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_) | TokenError::BadSignature),
            "segment {i}: {err}"
        );
    }
}

#[test]
fn header_or_payload_not_a_json_object() {
    let key = rsa_key("k");
    let header = json!({"alg": "RS256", "kid": "k"});
    for payload in [json!([1, 2]), json!("a string"), json!(42), json!(null)] {
        let token = key.sign_with_header(&header, &payload).unwrap();
        assert!(
            matches!(check(&key, &token), Err(TokenError::Malformed(_))),
            "{payload}"
        );
    }
    for bad_header in [json!(["RS256"]), json!("RS256")] {
        let token = key
            .sign_with_header(&bad_header, &token_facts().claims())
            .unwrap();
        assert!(matches!(check(&key, &token), Err(TokenError::Malformed(_))));
    }
    // Not JSON at all.
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode("{\"alg\":\"RS256\""),
        URL_SAFE_NO_PAD.encode("{}")
    );
    assert!(matches!(check(&key, &token), Err(TokenError::Malformed(_))));
    let token = format!(
        "{}.{}.c2ln",
        encode_segment(&header),
        URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x00])
    );
    assert!(matches!(check(&key, &token), Err(TokenError::Malformed(_))));
}

#[test]
fn error_messages_never_contain_the_token() {
    let key = rsa_key("k");
    let secretish = "SECRETPAYLOADMARKER";
    let token = signed_with(&key, |c| {
        c["iss"] = json!(secretish);
    });
    let mut candidates = vec![
        token.clone(),
        format!("{token}.{secretish}"),
        format!("{secretish}.{secretish}.{secretish}"),
        token.replace('.', "!"),
    ];
    let header = json!({"alg": secretish});
    candidates.push(format!("{}.e30.c2ln", encode_segment(&header)));
    let header = json!({"alg": "RS256", "kid": secretish});
    candidates.push(key.sign_with_header(&header, &json!({})).unwrap());
    for t in candidates {
        let err = check(&key, &t).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&t), "{shown}");
        assert!(!shown.contains(token.split('.').nth(1).unwrap()), "{shown}");
        assert!(!shown.contains(&"x".repeat(40)));
    }
}

// ------------------------------------------------------- algorithm rejections

#[test]
fn alg_none_unsigned_token() {
    let key = rsa_key("k");
    let claims = token_facts().claims();
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "none", "kid": "k"}),
        json!({"alg": "None"}),
    ] {
        let unsigned = format!("{}.{}.", encode_segment(&header), encode_segment(&claims));
        assert!(unsupported_algorithm(&key, &unsigned));
        let with_junk_sig = format!("{unsigned}c2ln");
        assert!(unsupported_algorithm(&key, &with_junk_sig));
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let key = rsa_key("k");
    let claims = token_facts().claims();
    let header = json!({"alg": "HS256", "kid": "k"});
    let public_pem = key.public_key_pem().unwrap();
    let jwk = key.jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        public_pem.as_bytes().to_vec(),
        pem_der(&public_pem),
        jwk.to_string().into_bytes(),
        key.jwks().to_string().into_bytes(),
        n,
    ];
    for secret in secrets {
        for header in [header.clone(), json!({"alg": "HS256"})] {
            let token = hs256(&secret, &header, &claims);
            assert_eq!(
                check(&key, &token).err(),
                Some(TokenError::UnsupportedAlgorithm("HS256".into()))
            );
        }
    }
    for alg in ["HS384", "HS512"] {
        let token = hs256(
            public_pem.as_bytes(),
            &json!({"alg": alg, "kid": "k"}),
            &claims,
        );
        assert!(unsupported_algorithm(&key, &token));
    }
}

#[test]
fn ps256_and_eddsa_are_refused() {
    let key = rsa_key("k");
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pem_der(&key.to_pkcs8_pem().unwrap()))
        .unwrap();
    let header = json!({"alg": "PS256", "kid": "k"});
    let input = format!(
        "{}.{}",
        encode_segment(&header),
        encode_segment(&token_facts().claims())
    );
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PSS_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        check(&key, &token).err(),
        Some(TokenError::UnsupportedAlgorithm("PS256".into()))
    );
    for alg in ["PS384", "PS512", "EdDSA", "ES512", "ES256K", "RSA-OAEP"] {
        let token = key
            .sign_with_header(&json!({"alg": alg, "kid": "k"}), &token_facts().claims())
            .unwrap();
        assert_eq!(
            check(&key, &token).err(),
            Some(TokenError::UnsupportedAlgorithm(alg.into()))
        );
    }
}

#[test]
fn crit_header_is_refused() {
    let key = rsa_key("k");
    for crit in [json!(["exp"]), json!([]), json!("b64"), json!(null)] {
        let token = key
            .sign_with_header(
                &json!({"alg": "RS256", "kid": "k", "crit": crit, "b64": false}),
                &token_facts().claims(),
            )
            .unwrap();
        assert_eq!(check(&key, &token).err(), Some(TokenError::CriticalHeader));
    }
}

#[test]
fn algorithm_must_fit_the_key() {
    let rsa = rsa_key("rsa");
    let p256 = SigningKey::generate(DevAlgorithm::Es256, "p256").unwrap();
    let p384 = SigningKey::generate(DevAlgorithm::Es384, "p384").unwrap();
    let jwks = json!({"keys": [rsa.jwk(), p256.jwk(), p384.jwk()]});
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let trust = trust_for(jwks);
    let claims = token_facts().claims();
    let cases = [
        // ES256 header naming the RSA key (signed by the EC key).
        (&p256, json!({"alg": "ES256", "kid": "rsa"})),
        // RS256 header naming an EC key.
        (&rsa, json!({"alg": "RS256", "kid": "p256"})),
        // Curve mismatch both ways.
        (&p384, json!({"alg": "ES384", "kid": "p256"})),
        (&p256, json!({"alg": "ES256", "kid": "p384"})),
        // RS384 header for a JWK whose alg is RS256.
        (&rsa, json!({"alg": "RS384", "kid": "rsa"})),
    ];
    for (signer, header) in cases {
        let token = signer.sign_with_header(&header, &claims).unwrap();
        let err = verify_token(&token, &trust, &keys, NOW).unwrap_err();
        assert!(
            matches!(err, TokenError::KeyAlgorithmMismatch { .. }),
            "{header}: {err}"
        );
    }
    // The JWK's own alg, when absent, does not restrict RS384 (but the
    // signature made with SHA-256 then fails).
    let mut bare = rsa.jwk();
    bare.as_object_mut().unwrap().remove("alg");
    let jwks = json!({ "keys": [bare] });
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let token = rsa
        .sign_with_header(&json!({"alg": "RS384", "kid": "rsa"}), &claims)
        .unwrap();
    assert_eq!(
        verify_token(&token, &trust_for(jwks), &keys, NOW).err(),
        Some(TokenError::BadSignature)
    );
}

// ------------------------------------------------------------ key rejections

#[test]
fn unknown_kid_without_jwks_uri() {
    let key = rsa_key("k");
    let token = rsa_key("rotated").sign(&token_facts().claims());
    assert_eq!(
        check(&key, &token).err(),
        Some(TokenError::UnknownKey {
            kid: Some("rotated".into())
        })
    );
}

#[test]
fn token_of_another_cluster_is_refused() {
    // Both clusters use the same kid name: the signature fails.
    let a = rsa_key("default");
    let b = rsa_key("default");
    let token_a = token_facts().sign(&a);
    assert_eq!(check(&b, &token_a).err(), Some(TokenError::BadSignature));
    // Different kids: the key is unknown.
    let b2 = SigningKey::generate(DevAlgorithm::Es256, "b-key").unwrap();
    assert!(matches!(
        check(&b2, &token_a),
        Err(TokenError::UnknownKey { .. })
    ));
    // Even with cluster B's issuer in the claims, A's key cannot pass.
    let token = signed_with(&a, |c| c["iss"] = json!("https://cluster-b.example"));
    let keys = KeySet::from_jwks(&b.jwks()).unwrap();
    let mut trust_b = trust_for(b.jwks());
    trust_b.issuer = "https://cluster-b.example".into();
    assert_eq!(
        verify_token(&token, &trust_b, &keys, NOW).err(),
        Some(TokenError::BadSignature)
    );
}

#[test]
fn tampered_payload_fails_the_signature() {
    let key = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let token = token_facts().sign(&key);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = signed_with(&rsa_key("x"), |c| {
        c["kubernetes.io"]["namespace"] = json!("kube-system")
    });
    let forged_payload = forged.split('.').nth(1).unwrap();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(check(&key, &tampered).err(), Some(TokenError::BadSignature));
    // An ES256 signature of the wrong length.
    let short = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode([1u8; 10])
    );
    assert_eq!(check(&key, &short).err(), Some(TokenError::BadSignature));
}

#[test]
fn unusable_key_set_is_a_key_set_error() {
    let key = rsa_key("k");
    let mut enc = key.jwk();
    enc["use"] = json!("enc");
    assert!(matches!(
        KeySet::from_jwks(&json!({ "keys": [enc] })),
        Err(TokenError::KeySet(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
        Err(TokenError::KeySet(_))
    ));
}

// ---------------------------------------------------------- claim rejections

#[test]
fn wrong_issuer() {
    let key = rsa_key("k");
    for iss in [
        "https://oidc.cluster-b.example",
        "https://oidc.cluster-a.example/",
        "HTTPS://oidc.cluster-a.example",
        "",
    ] {
        assert_refused(&key, |c| c["iss"] = json!(iss), TokenError::WrongIssuer);
    }
    let missing = TokenError::MissingClaim("iss");
    assert_refused(&key, |c| remove_path(c, &["iss"]), missing);
}

#[test]
fn wrong_audience_string_and_array() {
    let key = rsa_key("k");
    for aud in [
        json!("sts.amazonaws.com"),
        json!(["sts.amazonaws.com"]),
        json!(["a", "b", "pods.eks.amazonaws.com.evil"]),
        json!([]),
    ] {
        assert_refused(&key, |c| c["aud"] = aud, TokenError::WrongAudience);
    }
    for aud in [json!(AUDIENCE), json!(["x", AUDIENCE])] {
        assert!(
            check_edited(&key, |c| c["aud"] = aud.clone()).is_ok(),
            "{aud}"
        );
    }
    let missing = TokenError::MissingClaim("aud");
    assert_refused(&key, |c| remove_path(c, &["aud"]), missing);
    let result = check_edited(&key, |c| c["aud"] = json!(7));
    assert!(matches!(result, Err(TokenError::Malformed(_))));
}

#[test]
fn expired_and_leeway() {
    let key = rsa_key("k");
    let inside = check_edited(&key, |c| c["exp"] = json!(NOW - 30));
    assert!(inside.is_ok(), "inside the 60 s leeway");
    let at_edge = check_edited(&key, |c| c["exp"] = json!(NOW - 60));
    assert!(at_edge.is_ok(), "at the leeway's edge");
    let err = check_edited(&key, |c| c["exp"] = json!(NOW - 61)).unwrap_err();
    assert_eq!(err, TokenError::Expired);
    assert!(err.is_expired());
    let missing = TokenError::MissingClaim("exp");
    assert_refused(&key, |c| remove_path(c, &["exp"]), missing);
}

#[test]
fn not_yet_valid() {
    let key = rsa_key("k");
    let err = check_edited(&key, |c| c["nbf"] = json!(NOW + 61)).unwrap_err();
    assert_eq!(err, TokenError::NotYetValid);
    assert!(!err.is_expired());
    assert!(check_edited(&key, |c| c["nbf"] = json!(NOW + 60)).is_ok());
}

#[test]
fn issued_in_the_future() {
    let key = rsa_key("k");
    // Without nbf, issued `secs` after NOW.
    let issued_in = |secs: i64| {
        move |c: &mut Value| {
            remove_path(c, &["nbf"]);
            c["iat"] = json!(NOW + secs);
        }
    };
    assert_refused(&key, issued_in(120), TokenError::IssuedInFuture);
    assert!(check_edited(&key, issued_in(59)).is_ok());
}

#[test]
fn each_kubernetes_claim_is_required() {
    let key = rsa_key("k");
    let cases: [(&[&str], &str); 5] = [
        (&["kubernetes.io"], "kubernetes.io"),
        (&["kubernetes.io", "namespace"], "kubernetes.io.namespace"),
        (
            &["kubernetes.io", "serviceaccount", "name"],
            "kubernetes.io.serviceaccount.name",
        ),
        (&["kubernetes.io", "pod", "name"], "kubernetes.io.pod.name"),
        (&["kubernetes.io", "pod", "uid"], "kubernetes.io.pod.uid"),
    ];
    for (path, name) in cases {
        assert_refused(
            &key,
            |c| remove_path(c, path),
            TokenError::MissingClaim(name),
        );
    }
    let missing = TokenError::MissingClaim("sub");
    assert_refused(&key, |c| remove_path(c, &["sub"]), missing);
    // Optional ones may go.
    let id = check_edited(&key, |c| {
        remove_path(c, &["kubernetes.io", "node"]);
        remove_path(c, &["kubernetes.io", "serviceaccount", "uid"]);
        remove_path(c, &["jti"]);
    })
    .unwrap();
    assert_eq!(
        (id.node_name, id.service_account_uid, id.jti),
        (None, None, None)
    );
}

#[test]
fn wrong_claim_types_never_panic() {
    let key = rsa_key("k");
    let odd = [
        json!(null),
        json!(1),
        json!(1.5),
        json!(true),
        json!([]),
        json!({}),
        json!("s"),
    ];
    let paths: [&[&str]; 10] = [
        &["iss"],
        &["sub"],
        &["aud"],
        &["exp"],
        &["nbf"],
        &["iat"],
        &["jti"],
        &["kubernetes.io"],
        &["kubernetes.io", "pod"],
        &["kubernetes.io", "serviceaccount"],
    ];
    for path in paths {
        for v in &odd {
            let _ = check_edited(&key, |c| {
                let mut t = c;
                for p in path {
                    t = &mut t[*p];
                }
                *t = v.clone();
            });
        }
    }
}

#[test]
fn subject_inconsistent_with_claims() {
    let key = rsa_key("k");
    for sub in [
        "system:serviceaccount:default:admin",
        "system:serviceaccount:kube-system:boto3",
        "system:serviceaccount:default",
        "system:serviceaccounts:default:boto3",
        "boto3",
    ] {
        assert_refused(
            &key,
            |c| c["sub"] = json!(sub),
            TokenError::InconsistentSubject,
        );
    }
    assert_refused(
        &key,
        |c| c["kubernetes.io"]["namespace"] = json!("kube-system"),
        TokenError::InconsistentSubject,
    );
}

// ------------------------------------------------------------ the verifier

#[derive(Default)]
struct FakeFetcher {
    doc: Mutex<Option<Value>>,
    calls: AtomicUsize,
    uris: Mutex<Vec<String>>,
}

impl FakeFetcher {
    fn serving(doc: Value) -> Arc<Self> {
        let f = FakeFetcher::default();
        *f.doc.lock().unwrap() = Some(doc);
        Arc::new(f)
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksFetcher for FakeFetcher {
    async fn fetch_jwks(&self, uri: &str) -> Result<Value, JwksFetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.uris.lock().unwrap().push(uri.to_string());
        self.doc.lock().unwrap().clone().ok_or_else(|| {
            JwksFetchError::failed(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))
        })
    }
}

struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> (Self, podid_token::SecondsClock) {
        let t = Arc::new(AtomicI64::new(NOW));
        let c = t.clone();
        (TestClock(t), Arc::new(move || c.load(Ordering::SeqCst)))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

fn verifier(fetcher: Arc<FakeFetcher>, max: usize) -> (TokenVerifier, TestClock) {
    let (clock, f) = TestClock::new();
    (TokenVerifier::new(fetcher, f, max), clock)
}

#[tokio::test]
async fn verifier_accepts_and_caches() {
    let key = rsa_key("k");
    let fetcher = Arc::new(FakeFetcher::default());
    let (v, _clock) = verifier(fetcher.clone(), 100);
    let trust = trust_for(key.jwks());
    let token = token_facts().sign(&key);
    let first = v.verify(&trust, &token).await.unwrap();
    let second = v.verify(&trust, &token).await.unwrap();
    assert_eq!(first, second);
    let s = v.stats();
    assert_eq!((s.token_cache_hits, s.token_cache_misses), (1, 1));
    assert_eq!(s.cached_tokens, 1);
    assert_eq!(s.key_sets_parsed, 1);
    assert_eq!(fetcher.calls(), 0);
    // Errors are not cached and carry through.
    let bad = signed_with(&key, |c| c["aud"] = json!("other"));
    assert_eq!(
        v.verify(&trust, &bad).await.err(),
        Some(TokenError::WrongAudience)
    );
    assert_eq!(
        v.verify(&trust, &bad).await.err(),
        Some(TokenError::WrongAudience)
    );
    assert_eq!(v.stats().token_cache_misses, 3);
    assert_eq!(
        v.stats().key_sets_parsed,
        1,
        "key set parsed once per version"
    );
    assert_eq!(v.verify(&trust, "").await.err(), Some(TokenError::Empty));
    assert_eq!(
        v.verify(&trust, &"a".repeat(64 * 1024)).await.err(),
        Some(TokenError::TooLarge)
    );
}

#[tokio::test]
async fn cached_token_is_not_served_past_expiry() {
    let key = rsa_key("k");
    let (v, clock) = verifier(Arc::new(FakeFetcher::default()), 100);
    let trust = trust_for(key.jwks());
    let token = signed_with(&key, |c| c["exp"] = json!(NOW + 100));
    v.verify(&trust, &token).await.unwrap();
    clock.advance(100);
    v.verify(&trust, &token).await.unwrap();
    assert_eq!(v.stats().token_cache_hits, 1);
    // Past exp: re-checked (still inside the leeway, so accepted again but
    // not from the cache).
    clock.advance(30);
    v.verify(&trust, &token).await.unwrap();
    assert_eq!(v.stats().token_cache_hits, 1);
    // Past exp + leeway: expired.
    clock.advance(31);
    assert_eq!(
        v.verify(&trust, &token).await.err(),
        Some(TokenError::Expired)
    );
    assert_eq!(v.stats().token_cache_hits, 1);
}

#[tokio::test]
async fn changed_cluster_version_invalidates() {
    let old_key = rsa_key("old");
    let new_key = rsa_key("new");
    let (v, _clock) = verifier(Arc::new(FakeFetcher::default()), 100);
    let mut trust = trust_for(old_key.jwks());
    let token = token_facts().sign(&old_key);
    v.verify(&trust, &token).await.unwrap();
    v.verify(&trust, &token).await.unwrap();
    assert_eq!(v.stats().token_cache_hits, 1);
    // The cluster's keys were replaced: the cached token must not be served.
    trust.jwks = new_key.jwks();
    trust.version = 2;
    assert_eq!(
        v.verify(&trust, &token).await.err(),
        Some(TokenError::UnknownKey {
            kid: Some("old".into())
        })
    );
    assert_eq!(v.stats().token_cache_hits, 1);
    assert_eq!(v.stats().key_sets_parsed, 2);
    let token = token_facts().sign(&new_key);
    assert!(v.verify(&trust, &token).await.is_ok());
    // Same name, changed audience at the same version: no stale hit either.
    let mut other_aud = trust.clone();
    other_aud.audience = "other".into();
    assert_eq!(
        v.verify(&other_aud, &token).await.err(),
        Some(TokenError::WrongAudience)
    );
}

#[tokio::test]
async fn token_cache_stays_bounded() {
    let key = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let (v, clock) = verifier(Arc::new(FakeFetcher::default()), 50);
    let trust = trust_for(key.jwks());
    for i in 0..20_000i64 {
        let token = signed_with(&key, |c| {
            c["jti"] = json!(format!("jti-{i}"));
            c["exp"] = json!(NOW + 100 + (i % 400));
        });
        v.verify(&trust, &token).await.unwrap();
        if i % 1000 == 0 {
            clock.advance(1);
        }
        assert!(v.stats().cached_tokens <= 50);
    }
    let s = v.stats();
    assert_eq!(s.token_cache_misses, 20_000);
    assert_eq!(s.cached_tokens, 50);
}

#[tokio::test]
async fn zero_bound_disables_the_token_cache() {
    let key = rsa_key("k");
    let (v, _clock) = verifier(Arc::new(FakeFetcher::default()), 0);
    let trust = trust_for(key.jwks());
    let token = token_facts().sign(&key);
    v.verify(&trust, &token).await.unwrap();
    v.verify(&trust, &token).await.unwrap();
    let s = v.stats();
    assert_eq!((s.token_cache_hits, s.cached_tokens), (0, 0));
}

#[tokio::test]
async fn unknown_kid_without_jwks_uri_does_not_fetch() {
    let key = rsa_key("k");
    let fetcher = FakeFetcher::serving(rsa_key("rotated").jwks());
    let (v, _clock) = verifier(fetcher.clone(), 100);
    let token = rsa_key("rotated").sign(&token_facts().claims());
    assert_eq!(
        v.verify(&trust_for(key.jwks()), &token).await.err(),
        Some(TokenError::UnknownKey {
            kid: Some("rotated".into())
        })
    );
    assert_eq!(fetcher.calls(), 0);
    assert_eq!(v.stats().jwks_refreshes, 0);
}

#[tokio::test]
async fn key_rotation_is_fetched_and_rate_limited() {
    let old = rsa_key("old");
    let new = SigningKey::generate(DevAlgorithm::Es256, "new").unwrap();
    let fetcher = FakeFetcher::serving(json!({"keys": [old.jwk(), new.jwk()]}));
    let (v, clock) = verifier(fetcher.clone(), 100);
    let mut trust = trust_for(old.jwks());
    trust.jwks_uri = Some("https://oidc.cluster-a.example/openid/v1/jwks".into());

    // A token from the old key needs no fetch.
    v.verify(&trust, &token_facts().sign(&old)).await.unwrap();
    assert_eq!(fetcher.calls(), 0);

    // The new key is unknown: fetched once, then the token verifies.
    let id = v.verify(&trust, &token_facts().sign(&new)).await.unwrap();
    assert_eq!(id.service_account, "boto3");
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(
        fetcher.uris.lock().unwrap().as_slice(),
        ["https://oidc.cluster-a.example/openid/v1/jwks"]
    );
    // The fetched set is kept: another new-key token needs no fetch.
    let other = signed_with(&new, |c| c["jti"] = json!("other"));
    v.verify(&trust, &other).await.unwrap();
    assert_eq!(fetcher.calls(), 1);

    // A second unknown kid within 60 s: no fetch.
    clock.advance(30);
    let stranger = rsa_key("stranger");
    let token = token_facts().sign(&stranger);
    assert_eq!(
        v.verify(&trust, &token).await.err(),
        Some(TokenError::UnknownKey {
            kid: Some("stranger".into())
        })
    );
    assert_eq!(fetcher.calls(), 1);
    clock.advance(29);
    assert!(v.verify(&trust, &token).await.is_err());
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(v.stats().jwks_refreshes_rate_limited, 2);

    // After 61 s from the fetch it fetches again; now the stranger's key is
    // published.
    clock.advance(2);
    *fetcher.doc.lock().unwrap() = Some(json!({"keys": [new.jwk(), stranger.jwk()]}));
    assert!(v.verify(&trust, &token).await.is_ok());
    assert_eq!(fetcher.calls(), 2);
    assert_eq!(v.stats().jwks_refreshes, 2);
    // The old key was dropped by the fetched set.
    let old_token = signed_with(&old, |c| c["jti"] = json!("after-rotation"));
    assert!(matches!(
        v.verify(&trust, &old_token).await,
        Err(TokenError::UnknownKey { .. })
    ));
}

#[tokio::test]
async fn rate_limit_is_per_cluster() {
    let a = rsa_key("a");
    let fetcher = FakeFetcher::serving(a.jwks());
    let (v, _clock) = verifier(fetcher.clone(), 100);
    let stranger = rsa_key("stranger").sign(&token_facts().claims());
    let mut one = trust_for(a.jwks());
    one.jwks_uri = Some("https://one/jwks".into());
    let mut two = one.clone();
    two.name = "cluster-b".into();
    two.jwks_uri = Some("https://two/jwks".into());
    assert!(v.verify(&one, &stranger).await.is_err());
    assert!(v.verify(&two, &stranger).await.is_err());
    assert!(v.verify(&one, &stranger).await.is_err());
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn fetch_failure_is_a_key_set_error() {
    let key = rsa_key("k");
    let fetcher = Arc::new(FakeFetcher::default()); // serves nothing
    let (v, clock) = verifier(fetcher.clone(), 100);
    let mut trust = trust_for(key.jwks());
    trust.jwks_uri = Some("https://x/jwks".into());
    let token = rsa_key("new").sign(&token_facts().claims());
    let err = v.verify(&trust, &token).await.unwrap_err();
    assert!(
        matches!(
            &err,
            TokenError::KeySet(KeySetError::Fetch(JwksFetchError::Failed(_)))
        ) && err.to_string().contains("connection refused"),
        "{err}"
    );
    assert_eq!(v.stats().jwks_refresh_failures, 1);
    // A useless document is a failure too.
    clock.advance(61);
    *fetcher.doc.lock().unwrap() = Some(json!({"keys": []}));
    assert!(matches!(
        v.verify(&trust, &token).await,
        Err(TokenError::KeySet(_))
    ));
    assert_eq!(v.stats().jwks_refresh_failures, 2);
    // The stored keys still work.
    assert!(v.verify(&trust, &token_facts().sign(&key)).await.is_ok());
}

#[tokio::test]
async fn cluster_with_only_a_jwks_uri_fetches_on_first_use() {
    let key = SigningKey::generate(DevAlgorithm::Es384, "k").unwrap();
    let fetcher = FakeFetcher::serving(key.jwks());
    let (v, _clock) = verifier(fetcher.clone(), 100);
    let mut trust = trust_for(Value::Null);
    trust.jwks_uri = Some("https://x/jwks".into());
    let token = token_facts().sign(&key);
    assert!(v.verify(&trust, &token).await.is_ok());
    let token2 = signed_with(&key, |c| c["jti"] = json!("2"));
    assert!(v.verify(&trust, &token2).await.is_ok());
    assert_eq!(fetcher.calls(), 1);
    // Without a jwks_uri an unusable stored set is an error, no fetch.
    let mut inline = trust_for(Value::Null);
    inline.name = "inline".into();
    assert!(matches!(
        v.verify(&inline, &token).await,
        Err(TokenError::KeySet(_))
    ));
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifier_is_shared_across_tasks() {
    let key = rsa_key("k");
    let (v, _clock) = verifier(Arc::new(FakeFetcher::default()), 1000);
    let trust = trust_for(key.jwks());
    let tokens: Vec<String> = (0..8)
        .map(|i| signed_with(&key, |c| c["jti"] = json!(format!("jti-{i}"))))
        .collect();
    let mut handles = Vec::new();
    for round in 0..4 {
        for t in &tokens {
            let (v, trust, t) = (v.clone(), trust.clone(), t.clone());
            handles.push(tokio::spawn(async move {
                if round % 2 == 1 {
                    tokio::task::yield_now().await;
                }
                v.verify(&trust, &t).await
            }));
        }
    }
    for h in handles {
        let r = h.await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    let s = v.stats();
    assert_eq!(s.token_cache_hits + s.token_cache_misses, 32);
    assert_eq!(s.cached_tokens, 8);
}

// ------------------------------------------------------------ robustness

/// xorshift64*: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn random_inputs_never_panic() {
    let key = rsa_key("k");
    let ec = SigningKey::generate(DevAlgorithm::Es256, "e").unwrap();
    let jwks = json!({"keys": [key.jwk(), ec.jwk()]});
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let trust = trust_for(jwks);
    let valid = [token_facts().sign(&key), token_facts().sign(&ec)];
    let alphabet =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\":,[]\n\0";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Random byte strings, and random strings over the JWT alphabet.
    for i in 0..2_000 {
        let len = rng.below(600);
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        };
        let s = String::from_utf8_lossy(&bytes);
        assert!(verify_token(&s, &trust, &keys, NOW).is_err());
    }

    // Random segments of base64url-encoded random JSON-ish bytes.
    for _ in 0..500 {
        let seg = |rng: &mut Rng| {
            let len = rng.below(80);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            URL_SAFE_NO_PAD.encode(raw)
        };
        let t = format!("{}.{}.{}", seg(&mut rng), seg(&mut rng), seg(&mut rng));
        assert!(verify_token(&t, &trust, &keys, NOW).is_err());
    }

    // Mutations of valid tokens: flip, insert, delete, truncate, splice.
    for i in 0..2_000 {
        let original = &valid[i % 2];
        let mut b = original.as_bytes().to_vec();
        match rng.below(5) {
            0 => {
                let at = rng.below(b.len());
                b[at] = alphabet[rng.below(alphabet.len())];
            }
            1 => {
                let at = rng.below(b.len() + 1);
                b.insert(at, alphabet[rng.below(alphabet.len())]);
            }
            2 => {
                let at = rng.below(b.len());
                b.remove(at);
            }
            3 => b.truncate(rng.below(b.len())),
            _ => {
                let other = valid[(i + 1) % 2].as_bytes();
                let cut = rng.below(b.len().min(other.len()));
                b.truncate(cut);
                b.extend_from_slice(&other[cut..]);
            }
        }
        let s = String::from_utf8_lossy(&b).into_owned();
        if let Ok(id) = verify_token(&s, &trust, &keys, NOW) {
            // Only a no-op mutation (or a splice that rebuilt the other
            // valid token, or added surrounding whitespace) passes.
            assert!(
                valid.iter().any(|v| v == s.trim()),
                "mutated token verified"
            );
            assert_eq!(id.namespace, "default");
        }
    }
}
