//! `/v1/agents`: CRUD with `ETag`/`If-Match` optimistic concurrency.

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::{if_match, JsonBody, ListQuery, QueryParams};
use crate::agents;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
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

fn parse_agent_id(raw: &str) -> ApiResult<AgentId> {
    AgentId::parse(raw).map_err(|_| ApiError::not_found(format!("agent {raw}")))
}

/// Create an agent (admin, editor).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body(content = Object, description = "agent configuration"),
    responses((status = 201, body = AgentView), (status = 403, description = "quota_exceeded (max_agents)"), (status = 422, description = "validation_failed with errors[]")))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    JsonBody(config): JsonBody<AgentConfig>,
) -> ApiResult<Response> {
    let org = caller.member(Action::WriteAgents)?;
    let agent = agents::create(&state, &actor, org, &config).await?;
    Ok(with_etag(StatusCode::CREATED, agent))
}

/// List agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListQuery), responses((status = 200, body = AgentList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<AgentList>> {
    let org = caller.member(Action::ReadAgents)?;
    let page = agents::list(&state, org, &query.page()?).await?;
    Ok(Json(AgentList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Get an agent; the `ETag` header carries its version.
#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)), responses((status = 200, body = AgentView), (status = 404)))]
pub async fn get(Authed { state, caller, .. }: Authed, Path(agent_id): Path<String>) -> ApiResult<Response> {
    let org = caller.member(Action::ReadAgents)?;
    let id = parse_agent_id(&agent_id)?;
    Ok(with_etag(StatusCode::OK, agents::get(&state, org, &id).await?))
}

/// Replace an agent's configuration. `If-Match` with the current `ETag` is required; a
/// stale one is answered 412 with the current version.
#[utoipa::path(put, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path), ("If-Match" = String, Header)), request_body(content = Object),
    responses((status = 200, body = AgentView), (status = 412, description = "version_mismatch"), (status = 428, description = "if_match_required")))]
pub async fn update(
    Authed { state, caller, actor }: Authed,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    JsonBody(config): JsonBody<AgentConfig>,
) -> ApiResult<Response> {
    let org = caller.member(Action::WriteAgents)?;
    let id = parse_agent_id(&agent_id)?;
    let expected = if_match(&headers)?.ok_or_else(|| {
        ApiError::new(StatusCode::PRECONDITION_REQUIRED, "if_match_required", "send If-Match with the agent's ETag")
    })?;
    let agent = agents::update(&state, &actor, org, &id, &config, expected).await?;
    Ok(with_etag(StatusCode::OK, agent))
}

/// Delete an agent; `If-Match` is optional and, when given, must match.
#[utoipa::path(delete, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)), responses((status = 204), (status = 404), (status = 412)))]
pub async fn delete(
    Authed { state, caller, actor }: Authed,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let org = caller.member(Action::DeleteAgents)?;
    let id = parse_agent_id(&agent_id)?;
    agents::delete(&state, &actor, org, &id, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
