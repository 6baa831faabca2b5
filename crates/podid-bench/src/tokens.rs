//! Unsigned tokens shaped like real projected service-account tokens (~1.1 KiB),
//! and the benchmarks' seeded `rand` draws (runs are repeatable).

use podid_test_support::tokens::{now_secs, unsigned_token};
use podid_token::dev::ProjectedToken;
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};

/// The benchmarks' seeded generator (no cryptography needed here).
pub fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` random bytes.
pub fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rng.fill_bytes(&mut out);
    out
}

/// A UUID (version 4) from `rng`.
pub fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// `n` characters of `[A-Za-z0-9]`.
pub fn alphanumeric(rng: &mut StdRng, n: usize) -> String {
    rng.sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Pod `index`'s token, valid 24 hours from now: `iss` an EKS-style OIDC
/// issuer, `aud` pods.eks.amazonaws.com, the `kubernetes.io` claims with
/// distinct pod and service-account uids, and a random 256-byte signature
/// (what RS256 with a 2048-bit key produces). About 1.1 KiB.
pub fn projected_token(index: u64) -> String {
    use base64::Engine as _;
    let mut rng = seeded(index.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(&mut rng, 32));
    let header = serde_json::json!({"alg": "RS256", "kid": kid});
    let service_account = format!("app-{}", index % 1013);
    let mut t = ProjectedToken::new(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/8C1B5B0E4D2A9F7E6C3B1A0D9E8F7A6B",
        format!("team-{}", index % 97),
        service_account.clone(),
        now_secs(),
    );
    t.jti = Some(uuid(&mut rng));
    t.node_name = Some(format!(
        "ip-10-0-{}-{}.eu-west-1.compute.internal",
        index % 250,
        index % 199
    ));
    t.node_uid = Some(uuid(&mut rng));
    t.pod_name = format!(
        "{service_account}-7d9f8b6c5d-{}",
        alphanumeric(&mut rng, 5).to_lowercase()
    );
    t.pod_uid = uuid(&mut rng);
    t.service_account_uid = uuid(&mut rng);
    unsigned_token(&header, &t.claims(), &random_bytes(&mut rng, 256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn tokens_are_distinct_jwt_shaped_and_about_a_kibibyte() {
        let (a, b) = (projected_token(1), projected_token(2));
        assert_ne!(a, b);
        assert_eq!(a.split('.').count(), 3);
        assert!((950..1400).contains(&a.len()), "{}", a.len());
        let payload = URL_SAFE_NO_PAD
            .decode(a.split('.').nth(1).unwrap_or_default())
            .unwrap_or_default();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        assert!(claims["exp"].as_i64().unwrap_or_default() > now_secs());
        assert_eq!(
            claims["kubernetes.io"]["pod"]["uid"]
                .as_str()
                .unwrap_or_default()
                .len(),
            36
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let (mut a, mut b) = (seeded(7), seeded(7));
        assert_eq!(uuid(&mut a), uuid(&mut b));
        assert_eq!(alphanumeric(&mut a, 5), alphanumeric(&mut b, 5));
    }
}
