//! Envelope encryption under a master key kept in a local file.

use crate::{io_error, LocalError};
use async_trait::async_trait;
use golos_ports::crypto::{aes_gcm_open, aes_gcm_seal, generate_data_key};
use golos_ports::{Crypto, EncryptionContext, Envelope, PortError, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Reads the master key, or creates it on first start. A key file that others could read
/// is refused rather than silently used: whoever read it can decrypt every transcript.
pub(crate) fn load_or_create_master_key(path: &Path) -> Result<[u8; KEY_LEN], LocalError> {
    let refuse = |reason: String| LocalError::KeyFile { path: path.to_path_buf(), reason };
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            let key = generate_data_key();
            file.write_all(&key).map_err(io_error(path))?;
            file.sync_all().map_err(io_error(path))?;
            tracing::info!(path = %path.display(), "created a new master key");
            return Ok(key);
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_error(path)(err)),
    }
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!("permissions {mode:04o} are wider than 0600; run `chmod 600` on it")));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(refuse(format!("is {} bytes long, expected {KEY_LEN}", meta.len())));
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(io_error(path))?;
    Ok(key)
}

/// AES-256-GCM envelopes: a fresh data key per payload, wrapped by the master key. Both
/// layers bind the encryption context, so moving a ciphertext to another org fails.
pub struct LocalCrypto {
    master_key: [u8; KEY_LEN],
    key_id: String,
}

impl std::fmt::Debug for LocalCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCrypto").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl LocalCrypto {
    pub(crate) fn new(master_key: &[u8; KEY_LEN]) -> Self {
        // A fingerprint, not the key: tells which key file an envelope needs.
        let digest = Sha256::digest(master_key);
        let hex = digest[..8].iter().fold(String::new(), |mut out, b| {
            use std::fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        });
        Self { master_key: *master_key, key_id: format!("local:{hex}") }
    }

    pub fn master_key_id(&self) -> &str {
        &self.key_id
    }
}

#[async_trait]
impl Crypto for LocalCrypto {
    async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Envelope> {
        let aad = context.canonical_bytes();
        let data_key = generate_data_key();
        let (nonce, ciphertext) = aes_gcm_seal(&data_key, plaintext, &aad)?;
        let (key_nonce, sealed_key) = aes_gcm_seal(&self.master_key, &data_key, &aad)?;
        let mut wrapped_key = Vec::with_capacity(NONCE_LEN + sealed_key.len());
        wrapped_key.extend_from_slice(&key_nonce);
        wrapped_key.extend_from_slice(&sealed_key);
        Ok(Envelope { master_key_id: self.key_id.clone(), wrapped_key, nonce, ciphertext })
    }

    async fn decrypt(&self, envelope: &Envelope, context: &EncryptionContext) -> Result<Vec<u8>> {
        if envelope.master_key_id != self.key_id {
            return Err(PortError::corrupt(format!(
                "envelope was sealed under master key {}, this instance holds {}",
                envelope.master_key_id, self.key_id
            )));
        }
        if envelope.wrapped_key.len() <= NONCE_LEN {
            return Err(PortError::corrupt("wrapped data key is truncated"));
        }
        let aad = context.canonical_bytes();
        let (key_nonce, sealed_key) = envelope.wrapped_key.split_at(NONCE_LEN);
        let key_nonce: [u8; NONCE_LEN] =
            key_nonce.try_into().map_err(|_| PortError::corrupt("wrapped data key is truncated"))?;
        let data_key = aes_gcm_open(&self.master_key, &key_nonce, sealed_key, &aad)?;
        aes_gcm_open(&data_key, &envelope.nonce, &envelope.ciphertext, &aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = load_or_create_master_key(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        assert_eq!(load_or_create_master_key(&path).unwrap(), key);

        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create_master_key(&path), Err(LocalError::KeyFile { .. })));
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(load_or_create_master_key(&path), Err(LocalError::KeyFile { .. })));
    }

    #[tokio::test]
    async fn another_master_key_cannot_open() {
        let ctx = EncryptionContext::new([("org", "org_1")]);
        let a = LocalCrypto::new(&[1; 32]);
        let b = LocalCrypto::new(&[2; 32]);
        let env = a.encrypt(b"hi", &ctx).await.unwrap();
        assert_eq!(a.decrypt(&env, &ctx).await.unwrap(), b"hi");
        assert!(b.decrypt(&env, &ctx).await.is_err());
        let mut forged = env.clone();
        forged.master_key_id = b.master_key_id().to_owned();
        assert!(matches!(b.decrypt(&forged, &ctx).await, Err(PortError::Corrupt { .. })));
    }
}
