//! API key tokens: `gk_<key id hex>_<secret>`. Only an HMAC-SHA256 of the secret under a
//! server-side pepper is stored, so a leaked table cannot be used to call the API, and the
//! comparison is constant-time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use golos_domain::ApiKeyId;
use golos_ports::SecretString;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const TOKEN_PREFIX: &str = "gk_";

/// A freshly minted key: the id to store and the token to show the user once.
#[derive(Debug)]
pub struct MintedKey {
    pub id: ApiKeyId,
    pub token: SecretString,
    pub secret_hash: String,
}

/// Mints a key: 128-bit id, 256-bit secret.
pub fn mint(pepper: &SecretString) -> Result<MintedKey, getrandom::Error> {
    let mut id_bytes = [0u8; 16];
    getrandom::getrandom(&mut id_bytes)?;
    let id_hex = hex(&id_bytes);
    let secret = random_secret()?;
    let id = ApiKeyId::with_suffix(&id_hex).expect("hex is a valid id suffix");
    Ok(MintedKey {
        token: SecretString::new(format!("{TOKEN_PREFIX}{id_hex}_{secret}")),
        secret_hash: hash_secret(pepper, &secret),
        id,
    })
}

/// 256 random bits, URL-safe base64: key secrets, peppers, operator keys.
pub fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Splits a presented token into its key id and secret; `None` if it is not shaped like one.
pub fn parse(token: &str) -> Option<(ApiKeyId, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id_hex, secret) = rest.split_once('_')?;
    if id_hex.len() != 32 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) || secret.len() < 16 || secret.len() > 128 {
        return None;
    }
    Some((ApiKeyId::with_suffix(id_hex).ok()?, secret))
}

/// Hex HMAC-SHA256 of `secret` under the pepper.
pub fn hash_secret(pepper: &SecretString, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Constant-time check of a presented secret against a stored hash.
pub fn verify(pepper: &SecretString, secret: &str, stored_hash: &str) -> bool {
    hash_secret(pepper, secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_verify() {
        let pepper = SecretString::new("pepper");
        let key = mint(&pepper).unwrap();
        let (id, secret) = parse(key.token.expose()).unwrap();
        assert_eq!(id, key.id);
        assert!(verify(&pepper, secret, &key.secret_hash));
        assert!(!verify(&SecretString::new("other pepper"), secret, &key.secret_hash));
        assert!(!verify(&pepper, "wrong-secret-wrong-secret", &key.secret_hash));
        assert!(!key.secret_hash.contains(secret), "only the hash is stored");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "gk_",
            "gk_abc_def",
            "sk_00000000000000000000000000000000_aaaaaaaaaaaaaaaaaaaa",
            "gk_0000000000000000000000000000000g_aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
