//! Tokens shaped like real projected service-account tokens (about 1 KiB:
//! an RS256 header with a kid, the Kubernetes claims, a 256-byte signature),
//! unsigned: the agent checks only their shape and `exp`, and the fake EKS
//! Auth accepts anything. Deterministic, so runs are repeatable.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// splitmix64: a tiny deterministic generator (no cryptography needed here).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// A UUID-shaped string.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// `n` characters of `[A-Za-z0-9]`.
    pub fn alphanumeric(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| CHARS[(self.next_u64() % CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Pod `index`'s token, valid 24 hours from now: `iss` an EKS-style OIDC
/// issuer, `aud` pods.eks.amazonaws.com, the `kubernetes.io` claims with
/// distinct pod and service-account uids, and a random 256-byte signature
/// (what RS256 with a 2048-bit key produces). About 1.1 KiB.
pub fn projected_token(index: u64) -> String {
    let mut rng = Rng::new(index.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let now = now_secs();
    let header = serde_json::json!({"alg": "RS256", "kid": URL_SAFE_NO_PAD.encode(rng.bytes(32))});
    let namespace = format!("team-{}", index % 97);
    let service_account = format!("app-{}", index % 1013);
    let claims = serde_json::json!({
        "aud": ["pods.eks.amazonaws.com"],
        "exp": now + 86_400,
        "iat": now,
        "iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/8C1B5B0E4D2A9F7E6C3B1A0D9E8F7A6B",
        "jti": rng.uuid(),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": format!("ip-10-0-{}-{}.eu-west-1.compute.internal", index % 250, index % 199), "uid": rng.uuid()},
            "pod": {"name": format!("{service_account}-7d9f8b6c5d-{}", rng.alphanumeric(5).to_lowercase()), "uid": rng.uuid()},
            "serviceaccount": {"name": service_account, "uid": rng.uuid()},
        },
        "nbf": now,
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    });
    let segment = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        segment(&header),
        segment(&claims),
        URL_SAFE_NO_PAD.encode(rng.bytes(256))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_jwt_shaped_and_about_a_kibibyte() {
        let (a, b) = (projected_token(1), projected_token(2));
        assert_ne!(a, b);
        assert_eq!(a.split('.').count(), 3);
        assert!((950..1400).contains(&a.len()), "{}", a.len());
        let payload = URL_SAFE_NO_PAD
            .decode(a.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(claims["exp"].as_u64().unwrap() > now_secs());
        assert_eq!(
            claims["kubernetes.io"]["pod"]["uid"]
                .as_str()
                .unwrap()
                .len(),
            36
        );
    }
}
