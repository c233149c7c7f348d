//! Digest authentication of trunks (RFC 3261 §22, RFC 2617 / RFC 8760), sans-IO: the nonces
//! golos issues and the check of a trunk's answer against its password.
//!
//! Nonces are stateless: `<unix seconds, hex>.<HMAC-SHA256(key, seconds ‖ source IP), base64url,
//! first 16 bytes>`. A nonce is good for [`NONCE_LIFETIME`] from the address it was issued to;
//! an older one is answered with a fresh challenge marked `stale` (the trunk retries without
//! asking its operator), a forged one is refused. The key lives in one process: a SIP front
//! must send a call's retried INVITE (same Call-ID) to the worker that challenged it, which
//! dispatching by Call-ID hash does.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsipstack::dialog::authenticate::{compute_digest, extract_digest_uri_raw};
use rsipstack::sip::headers::auth::Algorithm;
use rsipstack::sip::typed::Authorization;
use rsipstack::sip::Method;
use sha2::Sha256;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a nonce is accepted after it was issued.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// The realm golos challenges with.
pub const REALM: &str = "golos";

/// Issues and checks nonces under one secret key.
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceIssuer(..)")
    }
}

/// What a nonce in a trunk's answer is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but older than [`NONCE_LIFETIME`]: challenge again with `stale=true`.
    Stale,
    /// Not ours, or issued to another address.
    Invalid,
}

impl NonceIssuer {
    pub const fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// With a key from the OS's random source, for the life of this process.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)?;
        Ok(Self { key })
    }

    fn tag(&self, seconds: u64, source: IpAddr) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&seconds.to_be_bytes());
        mac.update(source.to_canonical().to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// A nonce for a challenge sent at `now_unix` to `source`.
    pub fn issue(&self, now_unix: u64, source: IpAddr) -> String {
        format!("{now_unix:x}.{}", self.tag(now_unix, source))
    }

    pub fn check(&self, nonce: &str, now_unix: u64, source: IpAddr) -> NonceCheck {
        let Some((seconds, tag)) = nonce.split_once('.') else { return NonceCheck::Invalid };
        let Ok(seconds) = u64::from_str_radix(seconds, 16) else { return NonceCheck::Invalid };
        if seconds > now_unix.saturating_add(5)
            || !bool::from(tag.as_bytes().ct_eq(self.tag(seconds, source).as_bytes()))
        {
            return NonceCheck::Invalid;
        }
        if now_unix - seconds.min(now_unix) > NONCE_LIFETIME.as_secs() {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

/// The `WWW-Authenticate` value of a challenge.
pub fn challenge_header(nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}")
}

/// A trunk's answer to a challenge, from an INVITE's `Authorization` header. `Debug` shows
/// the username only.
#[derive(Clone)]
pub struct DigestAnswer {
    parsed: Authorization,
    /// The `uri` parameter as sent: the digest covers its exact bytes.
    uri_raw: String,
}

impl fmt::Debug for DigestAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAnswer").field("username", &self.parsed.username).finish_non_exhaustive()
    }
}

/// Longest `Authorization` value read: a real one is a few hundred bytes.
const MAX_HEADER: usize = 2_048;

impl DigestAnswer {
    /// Reads an `Authorization: Digest …` value; `None` when it is not one golos can check.
    pub fn parse(header_value: &str) -> Option<Self> {
        if header_value.len() > MAX_HEADER {
            return None;
        }
        let parsed = Authorization::parse(header_value).ok()?;
        let uri_raw = extract_digest_uri_raw(header_value)?;
        Some(Self { parsed, uri_raw })
    }

    pub fn username(&self) -> &str {
        &self.parsed.username
    }

    pub fn nonce(&self) -> &str {
        &self.parsed.nonce
    }

    /// Whether the answer was computed from `password` for an INVITE in golos's realm.
    /// Compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        if self.parsed.realm != REALM {
            return false;
        }
        let algorithm = self.parsed.algorithm.unwrap_or(Algorithm::Md5);
        let expected = compute_digest(
            &self.parsed.username,
            password,
            &self.parsed.realm,
            &self.parsed.nonce,
            &Method::Invite,
            &self.uri_raw,
            algorithm,
            self.parsed.qop.as_ref(),
        );
        bool::from(expected.as_bytes().ct_eq(self.parsed.response.to_ascii_lowercase().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7; 32];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_nonce_is_good_for_five_minutes_from_its_address_only() {
        let issuer = NonceIssuer::new(KEY);
        let nonce = issuer.issue(1_000_000, ip("198.51.100.7"));
        assert_eq!(issuer.check(&nonce, 1_000_000, ip("198.51.100.7")), NonceCheck::Valid);
        assert_eq!(issuer.check(&nonce, 1_000_300, ip("198.51.100.7")), NonceCheck::Valid);
        assert_eq!(issuer.check(&nonce, 1_000_301, ip("198.51.100.7")), NonceCheck::Stale);
        assert_eq!(issuer.check(&nonce, 1_000_000, ip("198.51.100.8")), NonceCheck::Invalid);
        assert_eq!(NonceIssuer::new([8; 32]).check(&nonce, 1_000_000, ip("198.51.100.7")), NonceCheck::Invalid);
        // A nonce from the future (a forged timestamp) is not ours.
        let ahead = format!("{:x}.{}", 1_000_100, nonce.split_once('.').unwrap().1);
        assert_eq!(issuer.check(&ahead, 1_000_000, ip("198.51.100.7")), NonceCheck::Invalid);
    }

    /// An answer computed the way a UA computes it (qop=auth, method INVITE) verifies; any
    /// other password, or another realm, does not.
    #[test]
    fn a_correct_answer_verifies_and_a_wrong_password_does_not() {
        let nonce = NonceIssuer::new(KEY).issue(1_000_000, ip("127.0.0.1"));
        let response = compute_digest(
            "exolve",
            "s3cret",
            REALM,
            &nonce,
            &Method::Invite,
            "sip:74951234567@203.0.113.7:5060",
            Algorithm::Md5,
            Some(&rsipstack::sip::headers::auth::AuthQop::Auth { cnonce: "0a4f113b".into(), nc: 1 }),
        );
        let header = format!(
            "Digest username=\"exolve\", realm=\"golos\", nonce=\"{nonce}\", uri=\"sip:74951234567@203.0.113.7:5060\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\""
        );
        let answer = DigestAnswer::parse(&header).expect("a digest answer");
        assert_eq!(answer.username(), "exolve");
        assert_eq!(answer.nonce(), nonce);
        assert!(answer.verify("s3cret"));
        assert!(!answer.verify("s3cret "));
        assert!(!answer.verify(""));
        assert!(!format!("{answer:?}").contains(&response), "Debug shows no response");
        let other_realm = header.replace("realm=\"golos\"", "realm=\"elsewhere\"");
        assert!(!DigestAnswer::parse(&other_realm).unwrap().verify("s3cret"));
    }

    proptest! {
        #[test]
        fn arbitrary_header_values_never_panic(value in ".{0,400}") {
            if let Some(answer) = DigestAnswer::parse(&value) {
                let _ = answer.verify("x");
            }
        }
    }
}
