//! Identifiers. Each is a validated string newtype so that ids of different kinds cannot be
//! swapped and so that they are safe to embed in storage keys (`ORG#<id>`) and URLs.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix that generated ids of this kind carry (`org_…`).
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(raw: impl Into<String>) -> Result<Self, DomainError> {
                let raw = raw.into();
                validate_id(stringify!($name), &raw)?;
                Ok(Self(raw))
            }

            /// Builds an id from a random or sequential suffix: `<prefix>_<suffix>`.
            pub fn with_suffix(suffix: &str) -> Result<Self, DomainError> {
                Self::parse(format!("{}_{}", $prefix, suffix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// An organisation: the tenant that owns agents, keys, numbers and a balance.
    OrgId, "org"
);
id_type!(
    /// An agent configuration inside an organisation.
    AgentId, "agt"
);
id_type!(
    /// The public part of an API key (`gk_<id>_<secret>`); the secret is never stored.
    ApiKeyId, "key"
);
id_type!(
    /// One call, inbound or outbound, on any transport.
    CallId, "call"
);
id_type!(
    /// A SIP trunk: where an org's phone calls come from.
    TrunkId, "trk"
);

id_type!(
    /// A customer's webhook endpoint: where an org's events are delivered.
    WebhookEndpointId, "whe"
);
id_type!(
    /// One attempt to deliver one event to one webhook endpoint.
    WebhookDeliveryId, "whd"
);

pub const MAX_ID_LEN: usize = 64;

fn validate_id(kind: &'static str, raw: &str) -> Result<(), DomainError> {
    if raw.is_empty() {
        return Err(DomainError::InvalidId { kind, reason: "empty" });
    }
    if raw.len() > MAX_ID_LEN {
        return Err(DomainError::InvalidId { kind, reason: "longer than 64 characters" });
    }
    // `#` separates key parts in the single-table layout and must never appear inside an id.
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(DomainError::InvalidId { kind, reason: "only ASCII letters, digits, `_` and `-` are allowed" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_separator_and_empty() {
        assert!(OrgId::parse("org_1").is_ok());
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse("org#1").is_err());
        assert!(OrgId::parse("a".repeat(65)).is_err());
        assert_eq!(AgentId::with_suffix("x1").unwrap().as_str(), "agt_x1");
    }

    #[test]
    fn serde_validates() {
        let ok: CallId = serde_json::from_str("\"call_abc\"").unwrap();
        assert_eq!(ok.as_str(), "call_abc");
        assert!(serde_json::from_str::<CallId>("\"bad id\"").is_err());
    }
}
