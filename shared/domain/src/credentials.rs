//! Provider credentials of an organisation: the API keys its agents use with LLM, TTS and
//! STT providers. They live in the org's own namespace; nothing a tenant writes can name a
//! platform secret, because an agent tier's `credentials_secret` is looked up only among the
//! org's credentials.

/// Longest credential value accepted (provider keys are well under 1 KiB; service-account
/// JSON for Google is a few KiB).
pub const MAX_CREDENTIAL_VALUE_BYTES: usize = 16 * 1024;
/// Credentials one organisation may hold.
pub const MAX_CREDENTIALS_PER_ORG: usize = 100;

/// 1-64 of `[A-Za-z0-9_.-]`, starting with a letter or digit: a name that is safe in a URL
/// path, a DynamoDB sort key and a log line.
pub fn is_credential_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `value` can be stored as a credential: not empty, bounded, and without control
/// characters that would corrupt an HTTP header it is sent in.
pub fn is_credential_value(value: &str) -> bool {
    !value.trim().is_empty()
        && value.len() <= MAX_CREDENTIAL_VALUE_BYTES
        && !value.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["openai", "eleven-labs_prod", "deepgram.v2", "a", &"x".repeat(64)] {
            assert!(is_credential_name(ok), "{ok}");
        }
        for bad in ["", "-lead", ".hidden", "a/b", "a b", "ключ", &"x".repeat(65), "../etc"] {
            assert!(!is_credential_name(bad), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert!(is_credential_value("sk-abc"));
        assert!(is_credential_value("{\n  \"type\": \"service_account\"\n}"));
        assert!(!is_credential_value("  "));
        assert!(!is_credential_value("a\u{0}b"));
        assert!(!is_credential_value(&"x".repeat(MAX_CREDENTIAL_VALUE_BYTES + 1)));
    }
}
