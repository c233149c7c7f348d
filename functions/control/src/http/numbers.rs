//! `/v1/orgs/{id}/numbers`, `/v1/numbers`, `/v1/routing`: granting, routing and looking up
//! phone numbers ([`crate::numbers`]).

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::{JsonBody, ListQuery, QueryParams};
use super::orgs::parse_org_id;
use crate::numbers;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use golos_domain::rbac::Action;
use golos_domain::PhoneNumber;
use golos_ports::NumberAssignment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignNumber {
    pub agent_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantNumber {
    /// E.164: `+`, the country code, then the number.
    pub number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    /// E.164. A business's own number, so shown in full to its members (never logged).
    pub number: String,
    pub org_id: String,
    /// The agent answering calls to the number; `null` while it is granted but not routed.
    pub agent_id: Option<String>,
    pub granted_at: String,
}

impl From<NumberAssignment> for NumberView {
    fn from(a: NumberAssignment) -> Self {
        Self {
            number: a.number.expose_e164(),
            org_id: a.org_id.to_string(),
            agent_id: a.agent_id.map(|agent| agent.to_string()),
            granted_at: a.granted_at.to_string(),
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

/// Grant a number to an organisation (operator): only then can its admins route it. Granting
/// it again to the same organisation changes nothing.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/numbers", tag = "numbers",
    params(("org_id" = String, Path)), request_body = GrantNumber,
    responses((status = 201, body = NumberView), (status = 404, description = "no such organisation"),
        (status = 409, description = "granted to another organisation")))]
pub async fn grant(
    Authed { state, caller, actor }: Authed,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<GrantNumber>,
) -> ApiResult<(StatusCode, Json<NumberView>)> {
    caller.require_operator()?;
    let org = parse_org_id(&org_id)?;
    let number = parse_number(&body.number)?;
    let granted = numbers::grant(&state, &actor, &org, &number).await?;
    Ok((StatusCode::CREATED, Json(granted.into())))
}

/// Revoke an organisation's number (operator), and its routing with it.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/numbers/{number}", tag = "numbers",
    params(("org_id" = String, Path), ("number" = String, Path)),
    responses((status = 204), (status = 404, description = "not granted to this organisation")))]
pub async fn revoke(
    Authed { state, caller, actor }: Authed,
    Path((org_id, number)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_operator()?;
    let org = parse_org_id(&org_id)?;
    let number = parse_number(&number)?;
    numbers::revoke(&state, &actor, &org, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Route a number granted to the organisation to an agent (admin). Routing it again moves it
/// to another agent.
#[utoipa::path(put, path = "/v1/numbers/{number}", tag = "numbers", params(("number" = String, Path, description = "E.164: +, the country code, then the number, without spaces")), request_body = AssignNumber,
    responses((status = 200, body = NumberView), (status = 404, description = "not granted to this organisation")))]
pub async fn assign(
    Authed { state, caller, actor }: Authed,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<AssignNumber>,
) -> ApiResult<Json<NumberView>> {
    let org = caller.member(Action::ManageNumbers)?;
    let number = parse_number(&number)?;
    let routed = numbers::assign(&state, &actor, &org.id, &number, &body.agent_id).await?;
    Ok(Json(routed.into()))
}

/// The organisation's numbers, routed or not.
#[utoipa::path(get, path = "/v1/numbers", tag = "numbers", params(ListQuery), responses((status = 200, body = NumberList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<NumberList>> {
    let org = caller.member(Action::ReadNumbers)?;
    let page = numbers::list(&state, &org.id, &query.page()?).await?;
    Ok(Json(NumberList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Un-route a number (admin): calls to it are no longer answered; the grant stays.
#[utoipa::path(delete, path = "/v1/numbers/{number}", tag = "numbers", params(("number" = String, Path)),
    responses((status = 204), (status = 404, description = "not granted to this organisation")))]
pub async fn release(Authed { state, caller, actor }: Authed, Path(number): Path<String>) -> ApiResult<StatusCode> {
    let org = caller.member(Action::ManageNumbers)?;
    let number = parse_number(&number)?;
    numbers::release(&state, &actor, &org.id, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Inbound routing (operator): which organisation and agent answer calls to a number. Only a
/// number both granted and routed is found.
#[utoipa::path(get, path = "/v1/routing/{number}", tag = "numbers", params(("number" = String, Path)), responses((status = 200, body = NumberView), (status = 404)))]
pub async fn route(Authed { state, caller, .. }: Authed, Path(number): Path<String>) -> ApiResult<Json<NumberView>> {
    caller.require_operator()?;
    let number = parse_number(&number)?;
    Ok(Json(numbers::route(&state, &number).await?.into()))
}
