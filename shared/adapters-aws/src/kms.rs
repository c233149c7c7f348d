//! Envelope encryption over KMS data keys, and secrets from Secrets Manager.

use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use golos_ports::crypto::{aes_gcm_open, aes_gcm_seal};
use golos_ports::{Crypto, EncryptionContext, Envelope, PortError, Result, SecretString, Secrets};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct KmsCrypto {
    pub client: aws_sdk_kms::Client,
    pub key_id: Option<String>,
}

fn kms_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    let pairs: HashMap<String, String> = context.pairs().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    (!pairs.is_empty()).then_some(pairs)
}

#[async_trait]
impl Crypto for KmsCrypto {
    async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Envelope> {
        let key_id =
            self.key_id.as_deref().ok_or_else(|| PortError::invalid("no KMS key configured (GOLOS_KMS_KEY_ID)"))?;
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| sdk_error("GenerateDataKey", &e))?;
        let data_key =
            out.plaintext().ok_or_else(|| PortError::unavailable("GenerateDataKey returned no plaintext"))?;
        let wrapped =
            out.ciphertext_blob().ok_or_else(|| PortError::unavailable("GenerateDataKey returned no ciphertext"))?;
        let (nonce, ciphertext) = aes_gcm_seal(data_key.as_ref(), plaintext, &context.canonical_bytes())?;
        Ok(Envelope {
            master_key_id: out.key_id().unwrap_or(key_id).to_owned(),
            wrapped_key: wrapped.as_ref().to_vec(),
            nonce,
            ciphertext,
        })
    }

    async fn decrypt(&self, envelope: &Envelope, context: &EncryptionContext) -> Result<Vec<u8>> {
        let result = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(envelope.wrapped_key.clone()))
            .key_id(&envelope.master_key_id)
            .set_encryption_context(kms_context(context))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        "InvalidCiphertextException"
                            | "IncorrectKeyException"
                            | "ValidationException"
                            | "InvalidKeyUsageException"
                    )
                ) =>
            {
                return Err(PortError::corrupt("KMS refused the wrapped key: wrong key, context or tampered data"));
            }
            Err(e) => return Err(sdk_error("Decrypt", &e)),
        };
        let data_key = out.plaintext().ok_or_else(|| PortError::unavailable("Decrypt returned no plaintext"))?;
        aes_gcm_open(data_key.as_ref(), &envelope.nonce, &envelope.ciphertext, &context.canonical_bytes())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SecretsManager {
    pub client: aws_sdk_secretsmanager::Client,
    pub prefix: String,
}

impl SecretsManager {
    pub(crate) fn secret_id(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }
}

#[async_trait]
impl Secrets for SecretsManager {
    async fn get(&self, name: &str) -> Result<SecretString> {
        let id = self.secret_id(name);
        let out = self.client.get_secret_value().secret_id(&id).send().await.map_err(|e| match e.code() {
            Some("ResourceNotFoundException") => PortError::not_found(format!("secret {id}")),
            _ => sdk_error("GetSecretValue", &e),
        })?;
        out.secret_string
            .map(SecretString::new)
            .ok_or_else(|| PortError::corrupt(format!("secret {id} has no string value")))
    }
}
