//! The HTTP face of the control plane. Every `/v1` request passes, in order: request/trace
//! ids → `X-API-Key` authentication (keys in URLs refused) and per-key+IP / per-org rate
//! limits → `Idempotency-Key` replay for POST → the handler, which parses the request,
//! checks the caller's role against the domain's RBAC matrix, calls the use-case and maps
//! its [`crate::ControlError`] to `application/problem+json` with a stable `code`.

pub mod admission;
pub mod agents;
pub mod api_keys;
pub mod audit_log;
pub mod billing;
pub mod call_events;
pub mod call_tokens;
pub mod calls;
pub mod credentials;
pub mod dead_letters;
pub mod erasure;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod numbers;
pub mod orgs;
pub mod payments;
pub mod sip_trunks;
pub mod tool_signing;
pub mod webhooks;

use crate::state::ControlState;
use axum::routing::{get, post, put};
use axum::Router;
pub use error::{ApiError, ApiResult};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "golos control-plane API", description = "Organisations, API keys, agents, numbers, calls, billing and audit of golos, the self-hostable voice-agent platform. Authenticate with `X-API-Key`. Errors are application/problem+json with a stable `code`."),
    paths(
        health::health,
        orgs::create, orgs::list, orgs::get, orgs::update, orgs::create_key_for_org,
        api_keys::create, api_keys::list, api_keys::revoke, api_keys::rotate,
        agents::create, agents::list, agents::get, agents::update, agents::delete, call_tokens::create,
        credentials::put, credentials::list, credentials::delete,
        tool_signing::secret,
        numbers::grant, numbers::revoke, numbers::assign, numbers::list, numbers::release, numbers::route,
        calls::list, calls::get, erasure::erase_call, erasure::erase_by_number,
        billing::balance, billing::ledger, billing::usage,
        audit_log::list,
        payments::receive_signed, payments::receive_yookassa,
        admission::admit_http, admission::heartbeat_http, admission::release_http, call_events::enqueue_http,
        sip_trunks::create, sip_trunks::list, sip_trunks::get, sip_trunks::update, sip_trunks::delete,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate_secret,
        webhooks::deliveries, webhooks::test, dead_letters::list, dead_letters::redrive,
    ),
    components(schemas(
        crate::webhook_payloads::DeliveredEvent, crate::webhook_payloads::CallStartedData,
        crate::webhook_payloads::CallEndedData, crate::webhook_payloads::TranscriptTurnData,
        crate::webhook_payloads::BalanceLowData, crate::webhook_payloads::QuotaExceededData,
        crate::webhook_payloads::ShutdownInitiatedData, crate::webhook_payloads::EndpointDisabledData,
        crate::webhook_payloads::EscalationTriggeredData, crate::webhook_payloads::CallTransferData,
        crate::webhook_payloads::TestData,
    )),
    modifiers(&ApiKeyAuth, &ProblemResponses),
    security(("api_key" = [])),
)]
#[derive(Debug)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// Every operation can answer with a problem document (bad input, auth, roles, rate
/// limits, unavailability); declaring it as the `default` response keeps each operation's
/// own list to its meaningful statuses while the document stays truthful.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder, Type};
        let problem = ObjectBuilder::new()
            .property("type", ObjectBuilder::new().schema_type(Type::String))
            .property("title", ObjectBuilder::new().schema_type(Type::String))
            .property("status", ObjectBuilder::new().schema_type(Type::Integer))
            .property("detail", ObjectBuilder::new().schema_type(Type::String))
            .property(
                "code",
                ObjectBuilder::new().schema_type(Type::String).description(Some("stable machine-readable error code")),
            )
            .required("code")
            .required("status");
        let response = ResponseBuilder::new()
            .description("An error as application/problem+json, with a stable `code`.")
            .content("application/problem+json", ContentBuilder::new().schema(Some(problem)).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
            {
                operation.responses.responses.entry("default".into()).or_insert_with(|| response.clone().into());
            }
        }
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Payment-provider webhooks: unauthenticated by API key, each provider checked its own way.
fn payment_routes() -> Router<ControlState> {
    Router::new()
        .route("/webhooks/payments/yookassa", post(payments::receive_yookassa))
        .route("/webhooks/payments/{provider}", post(payments::receive_signed))
}

/// Only the payment webhooks and `/health`: what the `payments` Lambda function serves.
pub fn payments_router(state: ControlState) -> Router {
    payment_routes()
        .route("/health", get(health::health))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::request_context))
        .with_state(state)
}

/// The whole control-plane router: `/v1/*`, `/health` and `/openapi.json`.
pub fn router(state: ControlState) -> Router {
    let v1 = Router::new()
        .route("/orgs", post(orgs::create).get(orgs::list))
        .route("/orgs/{org_id}", get(orgs::get).patch(orgs::update))
        .route("/orgs/{org_id}/api-keys", post(orgs::create_key_for_org))
        .route("/orgs/{org_id}/numbers", post(numbers::grant))
        .route("/orgs/{org_id}/numbers/{number}", axum::routing::delete(numbers::revoke))
        .route("/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/api-keys/{key_id}", axum::routing::delete(api_keys::revoke))
        .route("/api-keys/{key_id}/rotate", post(api_keys::rotate))
        .route("/agents", post(agents::create).get(agents::list))
        .route("/agents/{agent_id}", get(agents::get).put(agents::update).delete(agents::delete))
        .route("/agents/{agent_id}/call-tokens", post(call_tokens::create))
        .route("/provider-credentials", get(credentials::list))
        .route("/provider-credentials/{name}", put(credentials::put).delete(credentials::delete))
        .route("/tool-signing-secret", get(tool_signing::secret))
        .route("/numbers", get(numbers::list))
        .route("/numbers/{number}", put(numbers::assign).delete(numbers::release))
        .route("/routing/{number}", get(numbers::route))
        .route("/calls", get(calls::list))
        .route("/calls/{call_id}", get(calls::get).delete(erasure::erase_call))
        .route("/erasures", post(erasure::erase_by_number))
        .route("/balance", get(billing::balance))
        .route("/ledger", get(billing::ledger))
        .route("/usage", get(billing::usage))
        .route("/audit-log", get(audit_log::list))
        .route("/admissions", post(admission::admit_http))
        .route("/admissions/{call_id}/heartbeat", post(admission::heartbeat_http))
        .route("/admissions/{call_id}/release", post(admission::release_http))
        .route("/call-events", post(call_events::enqueue_http))
        .route("/sip-trunks", post(sip_trunks::create).get(sip_trunks::list))
        .route("/sip-trunks/{trunk_id}", get(sip_trunks::get).patch(sip_trunks::update).delete(sip_trunks::delete))
        .route("/webhook-endpoints", post(webhooks::create).get(webhooks::list))
        .route("/webhook-endpoints/{endpoint_id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/webhook-endpoints/{endpoint_id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/webhook-endpoints/{endpoint_id}/deliveries", get(webhooks::deliveries))
        .route("/webhook-endpoints/{endpoint_id}/test", post(webhooks::test))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/redrive", post(dead_letters::redrive))
        .fallback(|| async { ApiError::not_found("route") })
        // Layers run outside-in from the last added: authenticate, then idempotency.
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::idempotency))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::authenticate));
    Router::new()
        .nest("/v1", v1)
        .merge(payment_routes())
        .route("/health", get(health::health))
        .route("/openapi.json", get(|| async { axum::Json(openapi()) }))
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::request_context))
        .with_state(state)
}
