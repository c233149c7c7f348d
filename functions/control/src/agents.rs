//! Agents: CRUD with `ETag`/`If-Match` optimistic concurrency and the domain's validation.

use crate::common::{audit, JsonBody, ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::{Caller, RequestContext};
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use golos_domain::agent::AgentConfig;
use golos_domain::rbac::Action;
use golos_domain::AgentId;
use golos_ports::AgentRecord;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub org_id: String,
    /// Also the `ETag`; send it back in `If-Match` to update.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The agent configuration as submitted.
    #[schema(value_type = Object)]
    pub config: AgentConfig,
}

impl From<AgentRecord> for AgentView {
    fn from(agent: AgentRecord) -> Self {
        Self {
            id: agent.id.to_string(),
            org_id: agent.org_id.to_string(),
            version: agent.version,
            created_at: agent.created_at.to_string(),
            updated_at: agent.updated_at.to_string(),
            config: agent.config,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<AgentView>,
    pub next_cursor: Option<String>,
}

fn with_etag(status: StatusCode, agent: AgentRecord) -> Response {
    let etag = format!("\"{}\"", agent.version);
    let mut response = (status, Json(AgentView::from(agent))).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

use crate::common::if_match;

fn parse_agent_id(raw: &str) -> ApiResult<AgentId> {
    AgentId::parse(raw).map_err(|_| ApiError::not_found(format!("agent {raw}")))
}

/// The org's quotas, and the operator's egress exceptions for the agent's URLs.
fn validated(state: &ControlState, org: &golos_ports::Org, config: &AgentConfig) -> ApiResult<()> {
    config.validate_for(&org.quotas, &state.config.egress).map_err(ApiError::validation)
}

/// Create an agent (admin, editor).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body(content = Object, description = "agent configuration"),
    responses((status = 201, body = AgentView), (status = 403, description = "quota_exceeded (max_agents)"), (status = 422, description = "validation_failed with errors[]")))]
pub async fn create(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(config): JsonBody<AgentConfig>,
) -> ApiResult<Response> {
    let org = caller.member(Action::WriteAgents)?;
    validated(&state, org, &config)?;
    crate::credentials::check_agent_credentials(&state, &org.id, &config).await?;
    let id = AgentId::with_suffix(&state.ids.new_suffix()).map_err(ApiError::internal)?;
    let agent =
        state.stores.agents.create(&org.id, &id, &config, org.quotas.max_agents, state.clock.now()).await.map_err(
            |e| match e {
                golos_ports::PortError::QuotaExceeded { limit, .. } => ApiError::forbidden(
                    "max_agents_reached",
                    format!("the organisation already has its maximum of {limit} agents"),
                ),
                other => other.into(),
            },
        )?;
    audit(&state, &caller, &ctx, &org.id, "agent.create", id.as_str()).await;
    Ok(with_etag(StatusCode::CREATED, agent))
}

/// List agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListQuery), responses((status = 200, body = AgentList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<AgentList>> {
    let org = caller.member(Action::ReadAgents)?;
    let page = state.stores.agents.list(&org.id, &query.page()?).await?;
    Ok(Json(AgentList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Get an agent; the `ETag` header carries its version.
#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)), responses((status = 200, body = AgentView), (status = 404)))]
pub async fn get(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(agent_id): Path<String>,
) -> ApiResult<Response> {
    let org = caller.member(Action::ReadAgents)?;
    let id = parse_agent_id(&agent_id)?;
    let agent =
        state.stores.agents.get(&org.id, &id).await?.ok_or_else(|| ApiError::not_found(format!("agent {id}")))?;
    Ok(with_etag(StatusCode::OK, agent))
}

/// Replace an agent's configuration. `If-Match` with the current `ETag` is required; a
/// stale one is answered 412 with the current version.
#[utoipa::path(put, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path), ("If-Match" = String, Header)), request_body(content = Object),
    responses((status = 200, body = AgentView), (status = 412, description = "version_mismatch"), (status = 428, description = "if_match_required")))]
pub async fn update(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    JsonBody(config): JsonBody<AgentConfig>,
) -> ApiResult<Response> {
    let org = caller.member(Action::WriteAgents)?;
    let id = parse_agent_id(&agent_id)?;
    let expected = if_match(&headers)?.ok_or_else(|| {
        ApiError::new(StatusCode::PRECONDITION_REQUIRED, "if_match_required", "send If-Match with the agent's ETag")
    })?;
    validated(&state, org, &config)?;
    crate::credentials::check_agent_credentials(&state, &org.id, &config).await?;
    let agent = state.stores.agents.update(&org.id, &id, &config, expected, state.clock.now()).await?;
    audit(&state, &caller, &ctx, &org.id, "agent.update", id.as_str()).await;
    Ok(with_etag(StatusCode::OK, agent))
}

/// Delete an agent; `If-Match` is optional and, when given, must match.
#[utoipa::path(delete, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)), responses((status = 204), (status = 404), (status = 412)))]
pub async fn delete(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let org = caller.member(Action::DeleteAgents)?;
    let id = parse_agent_id(&agent_id)?;
    state.stores.agents.delete(&org.id, &id, if_match(&headers)?).await?;
    audit(&state, &caller, &ctx, &org.id, "agent.delete", id.as_str()).await;
    Ok(StatusCode::NO_CONTENT)
}
