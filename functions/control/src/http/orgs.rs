//! `/v1/orgs`: organisations, created by the operator; read by members; settings by admins.

use super::api_keys::{CreatedKey, NewKey};
use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::{if_match, JsonBody, ListQuery, QueryParams};
use super::middleware::SecretInResponse;
use crate::orgs::{self, NewOrg, OrgChanges};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use golos_domain::plans::{Plan, Quotas};
use golos_domain::rbac::Action;
use golos_domain::OrgId;
use golos_ports::Org;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Display name, 1-200 characters.
    pub name: String,
    /// `trial`, `start` (default), `business` or `enterprise`.
    pub plan: Option<String>,
    /// Overrides of the plan's quotas.
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<Quotas>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub name: Option<String>,
    /// Operator only.
    pub plan: Option<String>,
    /// Operator only.
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<Quotas>,
    /// Operator only.
    pub disabled: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub plan: String,
    #[schema(value_type = Object)]
    pub quotas: Quotas,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub disabled: bool,
    pub created_at: String,
    /// Also the `ETag`; send it as `If-Match` to update only what you read.
    pub version: u64,
}

impl From<Org> for OrgView {
    fn from(org: Org) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name,
            plan: org.plan.as_str().into(),
            quotas: org.quotas,
            settings: org.settings,
            disabled: org.disabled,
            created_at: org.created_at.to_string(),
            version: org.version,
        }
    }
}

fn with_etag(org: Org) -> Response {
    let etag = format!("\"{}\"", org.version);
    let mut response = Json(OrgView::from(org)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgList {
    pub items: Vec<OrgView>,
    pub next_cursor: Option<String>,
}

fn parse_plan(plan: Option<&str>) -> ApiResult<Option<Plan>> {
    plan.map(|p| {
        p.parse::<Plan>().map_err(|_| {
            ApiError::bad_request(
                "unknown_plan",
                format!("unknown plan `{p}`; one of trial, start, business, enterprise"),
            )
        })
    })
    .transpose()
}

pub fn parse_org_id(raw: &str) -> ApiResult<OrgId> {
    OrgId::parse(raw).map_err(|_| ApiError::not_found(format!("organisation {raw}")))
}

/// Create an organisation (operator).
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 400, description = "invalid input"), (status = 403, description = "not the operator")))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    JsonBody(body): JsonBody<CreateOrg>,
) -> ApiResult<(StatusCode, Json<OrgView>)> {
    caller.require_operator()?;
    let new = NewOrg {
        name: body.name,
        plan: parse_plan(body.plan.as_deref())?,
        quotas: body.quotas,
        settings: body.settings,
    };
    let org = orgs::create(&state, &actor, new).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// List organisations (operator).
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", params(ListQuery), responses((status = 200, body = OrgList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<OrgList>> {
    caller.require_operator()?;
    let page = orgs::list(&state, &query.page()?).await?;
    Ok(Json(OrgList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Get an organisation (operator, or a member of it).
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path)), responses((status = 200, body = OrgView), (status = 404)))]
pub async fn get(Authed { state, caller, .. }: Authed, Path(org_id): Path<String>) -> ApiResult<Response> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::ReadOrg)?;
    Ok(with_etag(orgs::get(&state, &id).await?))
}

/// Update an organisation: the operator changes plan, quotas and the disabled flag; an admin
/// of the org may change its name and settings. Only the fields sent change. With `If-Match`
/// (the `ETag` of a GET) the update applies only over that version (`412 version_mismatch`
/// otherwise); without it, the fields are applied over whatever is current, atomically, so
/// a concurrent edit (an operator's disable, say) is never undone.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateOrg,
    responses((status = 200, body = OrgView), (status = 412, description = "version_mismatch")))]
pub async fn update(
    Authed { state, caller, actor }: Authed,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateOrg>,
) -> ApiResult<Response> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::UpdateOrgSettings)?;
    // Refused before anything is parsed: a member learns nothing about operator fields.
    if body.plan.is_some() || body.quotas.is_some() || body.disabled.is_some() {
        caller.require_operator()?;
    }
    let changes = OrgChanges {
        plan: parse_plan(body.plan.as_deref())?,
        name: body.name,
        quotas: body.quotas,
        disabled: body.disabled,
        settings: body.settings,
    };
    let expected = if_match(&headers)?;
    Ok(with_etag(orgs::update(&state, &actor, &id, &changes, expected).await?))
}

/// Issue an API key for an organisation: how the operator hands an org its first admin key.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/api-keys", tag = "api-keys", params(("org_id" = String, Path)), request_body = NewKey, responses((status = 201, body = CreatedKey)))]
pub async fn create_key_for_org(
    Authed { state, caller, actor }: Authed,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::ManageApiKeys)?;
    let created = CreatedKey::from(crate::api_keys::issue(&state, &actor, &id, body.parse()?).await?);
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}
