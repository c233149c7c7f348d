//! Secrets from the environment (`GOLOS_SECRET_<NAME>`) or from files in the data directory.

use crate::{io_error, LocalError};
use async_trait::async_trait;
use golos_ports::{PortError, Result, SecretString, Secrets};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment wins over files so a deployment can override a file without editing it.
#[derive(Debug)]
pub struct LocalSecrets {
    dir: PathBuf,
}

impl LocalSecrets {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

/// Names become file names, so they must not climb out of the secrets directory.
fn validate_name(name: &str) -> std::result::Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-');
    if name.is_empty() || name.len() > 255 {
        return Err("secret name must be 1..=255 characters".into());
    }
    if !name.chars().all(allowed) {
        return Err("secret name may hold only A-Z a-z 0-9 _ . / -".into());
    }
    if name.contains("..") || name.starts_with('/') || name.ends_with('/') {
        return Err("secret name must be a relative path without `..`".into());
    }
    Ok(())
}

fn env_var_name(name: &str) -> String {
    let mut var = String::from("GOLOS_SECRET_");
    var.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }));
    var
}

pub(crate) fn create_private_dir(dir: &Path) -> std::result::Result<(), LocalError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error(dir))
}

pub(crate) fn write_secret_file(dir: &Path, name: &str, value: &str) -> std::result::Result<(), LocalError> {
    validate_name(name).map_err(LocalError::Invalid)?;
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(&path))?;
    // `mode` applies only on creation; an older file may have been wider.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error(&path))?;
    file.write_all(value.as_bytes()).map_err(io_error(&path))?;
    file.sync_all().map_err(io_error(&path))?;
    tracing::info!(secret = name, "stored a secret file");
    Ok(())
}

#[async_trait]
impl Secrets for LocalSecrets {
    async fn get(&self, name: &str) -> Result<SecretString> {
        validate_name(name).map_err(PortError::invalid)?;
        if let Ok(value) = std::env::var(env_var_name(name)) {
            return Ok(SecretString::new(value));
        }
        let path = self.dir.join(name);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
            Ok(mut value) => {
                while value.ends_with('\n') || value.ends_with('\r') {
                    value.pop();
                }
                Ok(SecretString::new(value))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(PortError::not_found(format!("secret {name}")))
            }
            Err(err) => Err(PortError::unavailable(format!("reading secret {name}: {err}"))),
        })
        .await
        .map_err(|e| PortError::unavailable(format!("secret read task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in ["", "../x", "a/../b", "/etc/passwd", "a b", "x\0", "dir/"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["pepper", "yookassa/shop-1", "a.b_c"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        assert_eq!(env_var_name("yookassa/shop-1"), "GOLOS_SECRET_YOOKASSA_SHOP_1");
    }

    #[tokio::test]
    async fn file_secrets_are_private_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        write_secret_file(dir.path(), "nested/one", "v1\n").unwrap();
        let meta = std::fs::metadata(dir.path().join("nested/one")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let secrets = LocalSecrets::new(dir.path().to_path_buf());
        assert_eq!(secrets.get("nested/one").await.unwrap().expose(), "v1");
        assert!(matches!(secrets.get("absent-zz9").await, Err(PortError::NotFound { .. })));
    }
}
