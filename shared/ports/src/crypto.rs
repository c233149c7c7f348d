//! Envelope encryption. A fresh 256-bit data key encrypts each payload with AES-256-GCM; the
//! data key itself is wrapped by a master key the adapter owns (a local key file or KMS).
//! The encryption context (org, purpose) is bound as additional authenticated data to both
//! layers, so a ciphertext moved to another org or purpose fails to decrypt.

use crate::{PortError, Result};
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use std::collections::BTreeMap;

#[async_trait]
pub trait Crypto: Send + Sync + std::fmt::Debug {
    async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Envelope>;
    /// `Corrupt` when the envelope was tampered with or the context differs.
    async fn decrypt(&self, envelope: &Envelope, context: &EncryptionContext) -> Result<Vec<u8>>;
}

/// Key/value pairs that must match at decryption. Ordered, so its byte form is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Length-prefixed, so `{"a":"bc"}` and `{"ab":"c"}` differ.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            for part in [k, v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }
}

/// What is stored: which master key wrapped the data key, the wrapped key, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

const ENVELOPE_VERSION: u8 = 1;

impl Envelope {
    /// `v1 | len(key id) | key id | len(wrapped) | wrapped | nonce | ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 8 + self.master_key_id.len() + self.wrapped_key.len() + 12 + self.ciphertext.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&(self.master_key_id.len() as u32).to_be_bytes());
        out.extend_from_slice(self.master_key_id.as_bytes());
        out.extend_from_slice(&(self.wrapped_key.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = || PortError::corrupt("truncated or unknown envelope");
        let (&version, mut rest) = bytes.split_first().ok_or_else(bad)?;
        if version != ENVELOPE_VERSION {
            return Err(bad());
        }
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(bad());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let len = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let key_len = len(take(4)?);
        let master_key_id = String::from_utf8(take(key_len)?.to_vec()).map_err(|_| bad())?;
        let wrapped_len = len(take(4)?);
        let wrapped_key = take(wrapped_len)?.to_vec();
        let nonce: [u8; 12] = take(12)?.try_into().map_err(|_| bad())?;
        let ciphertext = rest.to_vec();
        Ok(Self { master_key_id, wrapped_key, nonce, ciphertext })
    }
}

/// A fresh random 256-bit data key.
pub fn generate_data_key() -> [u8; 32] {
    Aes256Gcm::generate_key(OsRng).into()
}

/// Encrypts with AES-256-GCM under `key`, binding `aad`. Returns the random nonce and ciphertext.
pub fn aes_gcm_seal(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<([u8; 12], Vec<u8>)> {
    if key.len() != 32 {
        return Err(PortError::invalid("AES-256 key must be 32 bytes"));
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext =
        cipher.encrypt(&nonce, Payload { msg: plaintext, aad }).map_err(|_| PortError::invalid("encryption failed"))?;
    Ok((nonce.into(), ciphertext))
}

/// The inverse of [`aes_gcm_seal`]; `Corrupt` when the tag does not verify.
pub fn aes_gcm_open(key: &[u8], nonce: &[u8; 12], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    if key.len() != 32 {
        return Err(PortError::corrupt("AES-256 key must be 32 bytes"));
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| PortError::corrupt("authentication failed: wrong key, context or tampered data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_bytes_round_trip_and_reject_truncation() {
        let env = Envelope {
            master_key_id: "k1".into(),
            wrapped_key: vec![1, 2, 3],
            nonce: [7; 12],
            ciphertext: vec![9; 40],
        };
        let bytes = env.to_bytes();
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), env);
        for cut in 0..(1 + 4 + 2 + 4 + 3 + 12) {
            assert!(Envelope::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn seal_binds_the_context() {
        let key = generate_data_key();
        let ctx = EncryptionContext::new([("org", "org_1")]);
        let other = EncryptionContext::new([("org", "org_2")]);
        let (nonce, ct) = aes_gcm_seal(&key, b"hello", &ctx.canonical_bytes()).unwrap();
        assert_eq!(aes_gcm_open(&key, &nonce, &ct, &ctx.canonical_bytes()).unwrap(), b"hello");
        assert!(aes_gcm_open(&key, &nonce, &ct, &other.canonical_bytes()).is_err());
        assert_ne!(
            EncryptionContext::new([("a", "bc")]).canonical_bytes(),
            EncryptionContext::new([("ab", "c")]).canonical_bytes()
        );
    }
}
