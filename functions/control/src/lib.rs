//! The control plane: organisations, keys, agents, numbers, calls, billing and admission as
//! use-cases (plain async functions over the ports and the domain, failing with
//! [`ControlError`]), and [`http`], the axum `Router` under `/v1` that parses requests,
//! authorises the caller and maps errors, mounted both by the Lambda function
//! (`functions/api`) and by the local `golos serve`.
//!
//! The use-case modules never import `http`; `http` calls them.

pub mod admission;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod billing;
pub mod call_events;
pub mod call_tokens;
pub mod calls;
pub mod credentials;
pub mod dead_letters;
pub mod erasure;
pub mod error;
pub mod http;
pub mod keys;
pub mod numbers;
pub mod orgs;
pub mod payments;
pub mod reconcile;
pub mod retention;
pub mod sip_trunks;
pub mod state;
pub mod tool_signing;
pub mod transcripts;
pub mod webhook_delivery;
pub mod webhook_payloads;
pub mod webhooks;

pub use error::{ControlError, ControlResult};
pub use http::{openapi, payments_router, router, ApiError, ApiResult};
pub use state::{
    ControlConfig, ControlMetrics, ControlState, EventQueues, CALL_TOKEN_KEY_SECRET, OPERATOR_KEY_SECRET, PEPPER_SECRET,
};
