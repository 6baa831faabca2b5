#![allow(clippy::unwrap_used)]

use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

fn ca_pem(name: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.self_signed(&key).unwrap().pem()
}

fn write(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_bundle_of_two_is_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ca_pem("a"), ca_pem("b"));
    // Text around the blocks, as in distribution bundles, is ignored.
    let path = write(&dir, "ca.pem", format!("# a\n{a}\n# b\n{b}").as_bytes());
    let bundle = CaBundle::read(&path).unwrap();
    assert_eq!(bundle.certificates().len(), 2);
    let first = CertificateDer::from_pem_slice(a.as_bytes()).unwrap();
    assert_eq!(bundle.certificates()[0], first);
    assert_eq!(bundle.origin(), path.display().to_string());
    assert_eq!(
        format!("{bundle:?}"),
        format!(
            "CaBundle {{ origin: {:?}, certificates: 2 }}",
            path.display().to_string()
        )
    );
    bundle.sdk_http_client().unwrap();
}

#[test]
fn a_missing_file_names_the_path() {
    let err = CaBundle::read(Path::new("/nonexistent/podid-ca.pem")).unwrap_err();
    assert!(matches!(err, CaError::Read { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/podid-ca.pem"), "{text}");
    assert!(text.contains("No such file"), "{text}");
}

#[test]
fn files_without_a_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap().serialize_pem();
    for (name, contents) in [
        ("empty.pem", Vec::new()),
        ("text.pem", b"not a certificate\n".to_vec()),
        ("key.pem", key.into_bytes()),
        ("der.bin", vec![0x30, 0x82, 0x01, 0x0a, 0x02]),
    ] {
        let path = write(&dir, name, &contents);
        let err = CaBundle::read(&path).unwrap_err();
        assert!(
            matches!(err, CaError::NoCertificate { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn malformed_pem_and_non_certificates_are_refused() {
    let good = ca_pem("good");
    let truncated = &good[..good.len() - 30];
    let err = CaBundle::from_pem(truncated, "cut.pem").unwrap_err();
    assert!(matches!(err, CaError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.pem"), "{err}");

    // Valid PEM armour around bytes that are not X.509: the second block.
    let junk = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    let err = CaBundle::from_pem(format!("{good}{junk}"), "junk.pem").unwrap_err();
    match &err {
        CaError::BadCertificate { number, .. } => assert_eq!(*number, 2),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("certificate 2 of the CA file junk.pem"),
        "{err}"
    );
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pem");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_CA_FILE_BYTES + 1).unwrap();
    let err = CaBundle::read(&path).unwrap_err();
    assert!(matches!(err, CaError::TooLarge { .. }), "{err:?}");
    // Exactly the limit is read (and then found to hold no certificate).
    std::fs::File::create(&path)
        .unwrap()
        .set_len(MAX_CA_FILE_BYTES)
        .unwrap();
    assert!(matches!(
        CaBundle::read(&path).unwrap_err(),
        CaError::NoCertificate { .. }
    ));
}
