//! Envelope encryption and secrets.

use crate::fixtures;
use crate::Harness;
use golos_ports::{EncryptionContext, Envelope, PortError};

pub async fn envelope_round_trip_and_context_binding(h: &impl Harness) {
    let crypto = h.crypto();
    let org = fixtures::org_id();
    let context = EncryptionContext::new([("org", org.as_str()), ("purpose", "transcript")]);
    let plaintext = "Оператор: Здравствуйте! Caller: +7 916 123-45-67".as_bytes();
    let envelope = crypto.encrypt(plaintext, &context).await.unwrap();
    assert!(
        !envelope.ciphertext.windows(8).any(|w| plaintext.windows(8).any(|p| p == w)),
        "ciphertext must not contain the plaintext"
    );
    let stored = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
    assert_eq!(crypto.decrypt(&stored, &context).await.unwrap(), plaintext);
    // Each encryption uses a fresh data key and nonce.
    let again = crypto.encrypt(plaintext, &context).await.unwrap();
    assert_ne!(again.ciphertext, envelope.ciphertext);
    assert_ne!(again.wrapped_key, envelope.wrapped_key);

    let other_org = EncryptionContext::new([("org", "org_other"), ("purpose", "transcript")]);
    assert!(
        matches!(crypto.decrypt(&stored, &other_org).await, Err(PortError::Corrupt { .. })),
        "another org's context must not decrypt"
    );
    let mut tampered = stored.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(matches!(crypto.decrypt(&tampered, &context).await, Err(PortError::Corrupt { .. })));
    let mut bad_key = stored;
    let last = bad_key.wrapped_key.len() - 1;
    bad_key.wrapped_key[last] ^= 1;
    assert!(crypto.decrypt(&bad_key, &context).await.is_err());
    assert_eq!(crypto.decrypt(&crypto.encrypt(b"", &context).await.unwrap(), &context).await.unwrap(), b"");
}

pub async fn secrets_by_name(h: &impl Harness) {
    let secrets = h.secrets();
    let name = format!("yookassa-{}", fixtures::key_id());
    assert!(matches!(secrets.get(&name).await, Err(PortError::NotFound { .. })));
    h.put_secret(&name, "shop:s3cr3t").await;
    let value = secrets.get(&name).await.unwrap();
    assert_eq!(value.expose(), "shop:s3cr3t");
    assert!(!format!("{value:?} {value}").contains("s3cr3t"), "a secret never prints");
}
