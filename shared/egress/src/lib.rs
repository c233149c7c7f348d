//! One egress policy for every address a tenant can make golos contact: function-tool URLs,
//! custom provider endpoints (LLM, TTS, STT), and later webhook endpoints (DESIGN.md,
//! "Tenant isolation"; docs/security.md, "Egress").
//!
//! - [`classify`]: which addresses are not the public internet (loopback, private, link-local,
//!   CGNAT, cloud metadata, multicast, every IPv6 form embedding an IPv4 address…).
//! - [`EgressAllowlist`]: the operator's exceptions, `GOLOS_EGRESS_ALLOW`.
//! - [`check_url`]: scheme, userinfo and IP-literal checks on a URL; pure, so agent validation
//!   runs it at write time.
//! - With the `net` feature, [`net::EgressClient`] (reqwest whose resolver returns only allowed
//!   addresses, so the check holds on the address actually connected to and DNS rebinding
//!   cannot slip past it; no redirects, no proxies), [`net::connect_websocket`] for WebSocket
//!   providers, and capped body reads ([`net::read_capped`], [`net::capped_stream`]).

pub mod allow;
pub mod classify;
#[cfg(feature = "net")]
pub mod net;
pub mod target;

pub use allow::{EgressAllowlist, HostRule};
pub use classify::{classify, Forbidden};
pub use target::{check_parsed, check_url, is_operator_allowed, Protocol};

/// Everything the egress policy refuses, and the failures of connecting through it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    #[error("the scheme `{0}` is not allowed here")]
    Scheme(String),
    #[error("`{0}://` is allowed only to destinations the operator allows; use https or wss")]
    PlainText(String),
    #[error("URLs with credentials (user:password@) are not allowed; send them in headers")]
    Userinfo,
    /// An address, written in the URL or resolved from its name.
    #[error("{destination} is a {class} address, which golos does not connect to")]
    Forbidden { destination: String, class: crate::Forbidden },
    #[error("{host} resolves only to addresses golos does not connect to ({class})")]
    ForbiddenResolution { host: String, class: crate::Forbidden },
    #[error("port {port} of {host} is not allowed (the operator allows other ports of it)")]
    PortNotAllowed { host: String, port: u16 },
    #[error("invalid GOLOS_EGRESS_ALLOW entry `{0}`: expected a network, an address, a host or host:port")]
    InvalidAllowEntry(String),
    #[error("could not resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("timed out: {0}")]
    Timeout(String),
}

impl EgressError {
    /// A stable code for tool errors and API answers.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::Scheme(_) | Self::PlainText(_) => "scheme_not_allowed",
            Self::Userinfo => "userinfo_not_allowed",
            Self::Forbidden { .. } | Self::ForbiddenResolution { .. } | Self::PortNotAllowed { .. } => {
                "destination_forbidden"
            }
            Self::InvalidAllowEntry(_) => "invalid_allowlist",
            Self::Resolve { .. } => "unresolvable",
            Self::Connect(_) => "connection_failed",
            Self::TooLarge { .. } => "response_too_large",
            Self::Timeout(_) => "timed_out",
        }
    }

    /// Whether the policy refused the destination (as opposed to the network failing).
    pub const fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl(_)
                | Self::Scheme(_)
                | Self::PlainText(_)
                | Self::Userinfo
                | Self::Forbidden { .. }
                | Self::ForbiddenResolution { .. }
                | Self::PortNotAllowed { .. }
        )
    }
}
