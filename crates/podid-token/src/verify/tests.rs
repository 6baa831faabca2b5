//! Tests of the parent module.

use super::*;
use serde_json::{json, Value};

fn seg(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn trust() -> ClusterTrust {
    ClusterTrust {
        name: "c".into(),
        issuer: "https://issuer.example".into(),
        audience: "pods.eks.amazonaws.com".into(),
        jwks: json!({"keys": []}),
        jwks_uri: None,
        version: 1,
    }
}

fn good_claims(now: i64) -> Value {
    json!({
        "iss": "https://issuer.example",
        "sub": "system:serviceaccount:default:boto3",
        "aud": ["pods.eks.amazonaws.com"],
        "exp": now + 3600, "iat": now, "nbf": now, "jti": "j",
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "boto3", "uid": "sa-uid"},
            "pod": {"name": "p", "uid": "pod-uid"},
            "node": {"name": "n1", "uid": "node-uid"}
        }
    })
}

fn check(claims: &Value, now: i64) -> Result<PodIdentity, TokenError> {
    let bytes = serde_json::to_vec(claims).unwrap();
    check_claims(&parse_object(&bytes, "payload").unwrap(), &trust(), now)
}

#[test]
fn decode_shape_errors() {
    let h = seg(&json!({"alg": "RS256"}));
    let p = seg(&json!({}));
    assert_eq!(decode("").err(), Some(TokenError::Empty));
    assert_eq!(decode(" \n").err(), Some(TokenError::Empty));
    for bad in [
        "abc".to_string(),
        format!("{h}.{p}"),
        format!("{h}.{p}.c2ln.x"),
        format!("{h}!.{p}.c2ln"),
        format!("{h}.{p}!.c2ln"),
        format!("{h}.{p}.c2ln!"),
        format!("{h}.{p}."),
        format!("{h}=.{p}.c2ln"),
    ] {
        assert!(
            matches!(decode_and_parse(&bad), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
    assert!(decode_and_parse(&format!("{h}.{p}.c2ln")).is_ok());
    assert!(decode_and_parse(&format!(" {h}.{p}.c2ln\n")).is_ok());
    // Member names may repeat: the last value counts, as in serde_json's map.
    let twice = URL_SAFE_NO_PAD.encode(br#"{"iss":"a","iss":"b","x":["\u00e9",{"y":null}]}"#);
    let token = format!("{h}.{twice}.c2ln");
    let decoded = decode(&token).unwrap();
    let parsed = decoded.parse().unwrap();
    assert_eq!(opt_str(&parsed.claims, "iss", "iss"), Ok(Some("b")));
    // Invalid JSON anywhere in the payload, even in claims nobody reads.
    for bad in [
        &br#"{"x":"\ud800"}"#[..],
        br#"{"x":1}x"#,
        b"[1]",
        b"{\"x\":\"\xff\"}",
    ] {
        let payload = URL_SAFE_NO_PAD.encode(bad);
        let err = decode_and_parse(&format!("{h}.{payload}.c2ln")).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err}");
    }
}

fn decode_and_parse(token: &str) -> Result<(), TokenError> {
    decode(token)?.parse().map(|_| ())
}

#[test]
fn decode_header_rules() {
    let p = seg(&json!({}));
    let with = |header: Value| format!("{}.{p}.c2ln", seg(&header));
    assert!(
        matches!(decode(&with(json!({"alg": "none"}))), Err(TokenError::UnsupportedAlgorithm(a)) if a == "none")
    );
    for alg in [
        "HS256", "HS384", "HS512", "PS256", "PS512", "EdDSA", "ES512", "rs256",
    ] {
        assert!(matches!(
            decode(&with(json!({ "alg": alg }))),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
    }
    assert!(matches!(
        decode(&with(json!({"alg": 1}))),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        decode(&with(json!({}))),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        decode(&with(json!({"alg": "RS256", "crit": ["exp"]}))),
        Err(TokenError::CriticalHeader)
    ));
    assert!(matches!(
        decode(&with(json!({"alg": "RS256", "kid": 7}))),
        Err(TokenError::Malformed(_))
    ));
    let token = with(json!({"alg": "ES384", "kid": "k"}));
    let d = decode(&token).unwrap();
    assert_eq!(d.alg, Alg::Es384);
    assert_eq!(d.kid.as_deref(), Some("k"));
}

#[test]
fn long_alg_is_shortened() {
    let alg = "X".repeat(1000);
    let token = format!("{}.{}.c2ln", seg(&json!({ "alg": alg })), seg(&json!({})));
    let Err(TokenError::UnsupportedAlgorithm(shown)) = decode(&token) else {
        panic!("expected UnsupportedAlgorithm");
    };
    assert!(shown.chars().count() <= 17);
}

#[test]
fn valid_claims_give_identity() {
    let id = check(&good_claims(1000), 1000).unwrap();
    assert_eq!(id.namespace, "default");
    assert_eq!(id.service_account, "boto3");
    assert_eq!(id.service_account_uid.as_deref(), Some("sa-uid"));
    assert_eq!(id.pod_name, "p");
    assert_eq!(id.pod_uid, "pod-uid");
    assert_eq!(id.node_name.as_deref(), Some("n1"));
    assert_eq!(id.issuer, "https://issuer.example");
    assert_eq!(id.expires_at, 4600);
    assert_eq!(id.issued_at, Some(1000));
    assert_eq!(id.jti.as_deref(), Some("j"));
}

#[test]
fn optional_claims_may_be_absent() {
    let mut c = good_claims(1000);
    let k = c["kubernetes.io"].as_object_mut().unwrap();
    k.remove("node");
    k["serviceaccount"].as_object_mut().unwrap().remove("uid");
    let o = c.as_object_mut().unwrap();
    o.remove("jti");
    o.remove("iat");
    o.remove("nbf");
    let id = check(&c, 1000).unwrap();
    assert_eq!(id.node_name, None);
    assert_eq!(id.service_account_uid, None);
    assert_eq!(id.jti, None);
    assert_eq!(id.issued_at, None);
}

#[test]
fn issuer_and_audience() {
    let mut c = good_claims(0);
    c["iss"] = json!("https://issuer.example/");
    assert_eq!(check(&c, 0).err(), Some(TokenError::WrongIssuer));
    c["iss"] = json!(5);
    assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("iss")));

    let mut c = good_claims(0);
    c["aud"] = json!("pods.eks.amazonaws.com");
    assert!(check(&c, 0).is_ok());
    c["aud"] = json!("sts.amazonaws.com");
    assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
    c["aud"] = json!(["a", "b"]);
    assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
    c["aud"] = json!(["a", "pods.eks.amazonaws.com"]);
    assert!(check(&c, 0).is_ok());
    c["aud"] = json!([]);
    assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
    c["aud"] = json!([1]);
    assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
    c["aud"] = json!({"a": 1});
    assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
    c["aud"] = Value::Null;
    assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("aud")));
}

#[test]
fn times_with_leeway() {
    let c = good_claims(1000); // exp 4600, nbf = iat = 1000
    assert!(check(&c, 4600).is_ok());
    assert!(check(&c, 4660).is_ok());
    assert_eq!(check(&c, 4661).err(), Some(TokenError::Expired));
    assert!(check(&c, 940).is_ok());
    assert_eq!(check(&c, 939).err(), Some(TokenError::NotYetValid));

    let mut c = good_claims(1000);
    c.as_object_mut().unwrap().remove("nbf");
    assert!(check(&c, 940).is_ok());
    assert_eq!(check(&c, 939).err(), Some(TokenError::IssuedInFuture));

    let mut c = good_claims(1000);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&c, 1000).err(), Some(TokenError::MissingClaim("exp")));
    c["exp"] = json!("4600");
    assert!(matches!(check(&c, 1000), Err(TokenError::Malformed(_))));
    c["exp"] = json!(4600.9);
    assert_eq!(check(&c, 1000).unwrap().expires_at, 4600);
    c["exp"] = json!(1e300);
    assert_eq!(check(&c, 1000).unwrap().expires_at, i64::MAX);
    c["exp"] = json!(u64::MAX);
    assert_eq!(check(&c, 1000).unwrap().expires_at, i64::MAX);
    c["exp"] = json!(i64::MIN);
    assert_eq!(check(&c, 1000).err(), Some(TokenError::Expired));
    c["exp"] = json!(i64::MAX);
    c["nbf"] = json!(i64::MAX);
    assert_eq!(check(&c, i64::MAX).unwrap().expires_at, i64::MAX);
    assert_eq!(check(&c, 0).err(), Some(TokenError::NotYetValid));
}

#[test]
fn each_kubernetes_claim_is_required() {
    let cases: [(&[&str], &str); 7] = [
        (&["kubernetes.io"], "kubernetes.io"),
        (&["kubernetes.io", "namespace"], "kubernetes.io.namespace"),
        (
            &["kubernetes.io", "serviceaccount"],
            "kubernetes.io.serviceaccount.name",
        ),
        (
            &["kubernetes.io", "serviceaccount", "name"],
            "kubernetes.io.serviceaccount.name",
        ),
        (&["kubernetes.io", "pod"], "kubernetes.io.pod.name"),
        (&["kubernetes.io", "pod", "name"], "kubernetes.io.pod.name"),
        (&["kubernetes.io", "pod", "uid"], "kubernetes.io.pod.uid"),
    ];
    for (path, want) in cases {
        let mut c = good_claims(0);
        let (last, parents) = path.split_last().unwrap();
        let mut obj = &mut c;
        for p in parents {
            obj = &mut obj[*p];
        }
        obj.as_object_mut().unwrap().remove(*last);
        assert_eq!(
            check(&c, 0).err(),
            Some(TokenError::MissingClaim(want)),
            "{path:?}"
        );
        // An empty string counts as missing, null too.
        if !parents.is_empty() {
            obj_set(&mut c, path, json!(""));
            if parents.len() == 1 && (*last == "pod" || *last == "serviceaccount") {
                assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
            } else {
                assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim(want)));
            }
            obj_set(&mut c, path, Value::Null);
            assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim(want)));
            obj_set(&mut c, path, json!(42));
            assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
        }
    }
}

fn obj_set(c: &mut Value, path: &[&str], v: Value) {
    let mut obj = c;
    for p in path {
        obj = &mut obj[*p];
    }
    *obj = v;
}

#[test]
fn subject_must_agree() {
    for sub in [
        "system:serviceaccount:default:other",
        "system:serviceaccount:other:boto3",
        "system:serviceaccount:default:boto3:x",
        "system:serviceaccount:defaultboto3",
        "system:node:default:boto3",
        "default:boto3",
    ] {
        let mut c = good_claims(0);
        c["sub"] = json!(sub);
        assert_eq!(
            check(&c, 0).err(),
            Some(TokenError::InconsistentSubject),
            "{sub}"
        );
    }
    let mut c = good_claims(0);
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("sub")));
    c["sub"] = json!(["x"]);
    assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
}

#[test]
fn optional_claims_with_wrong_types_are_malformed() {
    for (path, v) in [
        (&["jti"][..], json!(1)),
        (&["kubernetes.io", "node"][..], json!("n")),
        (&["kubernetes.io", "node", "name"][..], json!(1)),
        (&["kubernetes.io", "serviceaccount", "uid"][..], json!(true)),
        (&["iat"][..], json!("now")),
        (&["nbf"][..], json!([1])),
        (&["kubernetes.io"][..], json!([])),
    ] {
        let mut c = good_claims(0);
        obj_set(&mut c, path, v);
        assert!(
            matches!(check(&c, 0), Err(TokenError::Malformed(_))),
            "{path:?}"
        );
    }
}
