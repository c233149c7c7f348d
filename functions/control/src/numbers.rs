//! Phone numbers routed to agents, and the inbound routing lookup.

use crate::common::{audit, JsonBody, ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::{Caller, RequestContext};
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::rbac::Action;
use golos_domain::{AgentId, PhoneNumber};
use golos_ports::NumberAssignment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignNumber {
    pub agent_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    /// E.164. A business's own number, so shown in full to its members (never logged).
    pub number: String,
    pub org_id: String,
    pub agent_id: String,
    pub assigned_at: String,
}

impl From<NumberAssignment> for NumberView {
    fn from(a: NumberAssignment) -> Self {
        Self {
            number: a.number.expose_e164(),
            org_id: a.org_id.to_string(),
            agent_id: a.agent_id.to_string(),
            assigned_at: a.assigned_at.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberList {
    pub items: Vec<NumberView>,
    pub next_cursor: Option<String>,
}

fn parse_number(raw: &str) -> ApiResult<PhoneNumber> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::bad_request("invalid_phone_number", e.to_string()))
}

/// Route a number to an agent (admin). Re-assigning moves it to another agent.
#[utoipa::path(put, path = "/v1/numbers/{number}", tag = "numbers", params(("number" = String, Path, description = "E.164, e.g. +7 495 123-45-67 written without spaces")), request_body = AssignNumber,
    responses((status = 200, body = NumberView), (status = 409, description = "held by another organisation")))]
pub async fn assign(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<AssignNumber>,
) -> ApiResult<Json<NumberView>> {
    let org = caller.member(Action::ManageNumbers)?;
    let number = parse_number(&number)?;
    let agent_id = AgentId::parse(&body.agent_id)
        .map_err(|_| ApiError::bad_request("unknown_agent", "agent_id is not an agent of this organisation"))?;
    if state.stores.agents.get(&org.id, &agent_id).await?.is_none() {
        return Err(ApiError::bad_request("unknown_agent", "agent_id is not an agent of this organisation"));
    }
    let assignment =
        NumberAssignment { number: number.clone(), org_id: org.id.clone(), agent_id, assigned_at: state.clock.now() };
    state.numbers.assign(&assignment).await.map_err(|e| match e {
        golos_ports::PortError::AlreadyExists { .. } => {
            ApiError::new(StatusCode::CONFLICT, "number_taken", "this number is assigned to another organisation")
        }
        other => other.into(),
    })?;
    audit(&state, &caller, &ctx, &org.id, "number.assign", &number.masked()).await;
    Ok(Json(assignment.into()))
}

/// The organisation's numbers.
#[utoipa::path(get, path = "/v1/numbers", tag = "numbers", params(ListQuery), responses((status = 200, body = NumberList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<NumberList>> {
    let org = caller.member(Action::ReadNumbers)?;
    let page = state.numbers.list(&org.id, &query.page()?).await?;
    Ok(Json(NumberList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Release a number (admin).
#[utoipa::path(delete, path = "/v1/numbers/{number}", tag = "numbers", params(("number" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn release(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(number): Path<String>,
) -> ApiResult<StatusCode> {
    let org = caller.member(Action::ManageNumbers)?;
    let number = parse_number(&number)?;
    state.numbers.release(&org.id, &number).await?;
    audit(&state, &caller, &ctx, &org.id, "number.release", &number.masked()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Inbound routing (operator): which organisation and agent answer calls to a number.
#[utoipa::path(get, path = "/v1/routing/{number}", tag = "numbers", params(("number" = String, Path)), responses((status = 200, body = NumberView), (status = 404)))]
pub async fn route(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<Json<NumberView>> {
    caller.require_operator()?;
    let number = parse_number(&number)?;
    let assignment =
        state.numbers.route(&number).await?.ok_or_else(|| ApiError::not_found(format!("number {number}")))?;
    Ok(Json(assignment.into()))
}
