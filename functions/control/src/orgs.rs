//! Organisations: created by the operator; read by members; settings by admins.

use crate::api_keys::{issue_key, CreatedKey, NewKey};
use crate::common::{audit, JsonBody, ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::{Caller, RequestContext, SecretInResponse};
use crate::state::ControlState;
use axum::extract::{Path, State};
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

/// How many times a PATCH without `If-Match` re-reads and re-applies its fields when another
/// edit wins the race; each round is one conditional write, so edits never undo each other.
const UPDATE_ATTEMPTS: usize = 20;

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

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request("invalid_name", "name must be 1-200 characters"));
    }
    Ok(())
}

fn check_settings(settings: &serde_json::Value) -> ApiResult<()> {
    if !settings.is_object() || settings.to_string().len() > 16 * 1024 {
        return Err(ApiError::bad_request("invalid_settings", "settings must be a JSON object under 16 KiB"));
    }
    crate::retention::validate(settings).map_err(|reason| ApiError::bad_request("invalid_settings", reason))?;
    Ok(())
}

pub fn parse_org_id(raw: &str) -> ApiResult<OrgId> {
    OrgId::parse(raw).map_err(|_| ApiError::not_found(format!("organisation {raw}")))
}

/// Create an organisation (operator).
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 400, description = "invalid input"), (status = 403, description = "not the operator")))]
pub async fn create(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<CreateOrg>,
) -> ApiResult<(StatusCode, Json<OrgView>)> {
    caller.require_operator()?;
    check_name(&body.name)?;
    let plan = parse_plan(body.plan.as_deref())?.unwrap_or(Plan::Start);
    let quotas = body.quotas.unwrap_or_else(|| plan.default_quotas());
    quotas.validate().map_err(|e| ApiError::bad_request("invalid_quotas", e.to_string()))?;
    let settings = body.settings.unwrap_or_else(|| serde_json::json!({}));
    check_settings(&settings)?;
    let id = OrgId::with_suffix(&state.ids.new_suffix()).map_err(ApiError::internal)?;
    let org = Org {
        id: id.clone(),
        name: body.name,
        plan,
        quotas,
        settings,
        disabled: false,
        created_at: state.clock.now(),
        version: 1,
    };
    state.stores.orgs.create(&org).await?;
    audit(&state, &caller, &ctx, &id, "org.create", id.as_str()).await;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// List organisations (operator).
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", params(ListQuery), responses((status = 200, body = OrgList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<OrgList>> {
    caller.require_operator()?;
    let page = state.stores.orgs.list(&query.page()?).await?;
    Ok(Json(OrgList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Get an organisation (operator, or a member of it).
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path)), responses((status = 200, body = OrgView), (status = 404)))]
pub async fn get(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::ReadOrg)?;
    let org = state.stores.orgs.get(&id).await?.ok_or_else(|| ApiError::not_found(format!("organisation {id}")))?;
    Ok(with_etag(org))
}

/// Update an organisation: the operator changes plan, quotas and the disabled flag; an admin
/// of the org may change its name and settings. Only the fields sent change. With `If-Match`
/// (the `ETag` of a GET) the update applies only over that version (`412 version_mismatch`
/// otherwise); without it, the fields are applied over whatever is current, atomically, so
/// a concurrent edit (an operator's disable, say) is never undone.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateOrg,
    responses((status = 200, body = OrgView), (status = 412, description = "version_mismatch")))]
pub async fn update(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateOrg>,
) -> ApiResult<Response> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::UpdateOrgSettings)?;
    let operator_fields = body.plan.is_some() || body.quotas.is_some() || body.disabled.is_some();
    if operator_fields {
        caller.require_operator()?;
    }
    let expected = crate::common::if_match(&headers)?;
    for _ in 0..UPDATE_ATTEMPTS {
        let mut org =
            state.stores.orgs.get(&id).await?.ok_or_else(|| ApiError::not_found(format!("organisation {id}")))?;
        if let Some(expected) = expected {
            if expected != org.version {
                return Err(golos_ports::PortError::Conflict { expected, actual: org.version }.into());
            }
        }
        apply_update(&mut org, &body)?;
        match state.stores.orgs.update(&org).await {
            Ok(version) => {
                org.version = version;
                audit(&state, &caller, &ctx, &id, "org.update", id.as_str()).await;
                return Ok(with_etag(org));
            }
            Err(conflict @ golos_ports::PortError::Conflict { .. }) if expected.is_some() => {
                return Err(conflict.into())
            }
            Err(golos_ports::PortError::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "concurrent_update", "the organisation kept changing; retry"))
}

fn apply_update(org: &mut Org, body: &UpdateOrg) -> ApiResult<()> {
    if let Some(name) = &body.name {
        check_name(name)?;
        org.name.clone_from(name);
    }
    if let Some(plan) = parse_plan(body.plan.as_deref())? {
        org.plan = plan;
        if body.quotas.is_none() {
            org.quotas = Quotas {
                monthly_minutes: plan.monthly_minutes(),
                rate_per_minute: plan.rate_per_minute(),
                ..org.quotas
            };
        }
    }
    if let Some(quotas) = body.quotas {
        quotas.validate().map_err(|e| ApiError::bad_request("invalid_quotas", e.to_string()))?;
        org.quotas = quotas;
    }
    if let Some(disabled) = body.disabled {
        org.disabled = disabled;
    }
    if let Some(settings) = &body.settings {
        check_settings(settings)?;
        org.settings.clone_from(settings);
    }
    Ok(())
}

/// Issue an API key for an organisation: how the operator hands an org its first admin key.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/api-keys", tag = "api-keys", params(("org_id" = String, Path)), request_body = NewKey, responses((status = 201, body = CreatedKey)))]
pub async fn create_key_for_org(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    let id = parse_org_id(&org_id)?;
    caller.operator_or_member(&id, Action::ManageApiKeys)?;
    if state.stores.orgs.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("organisation {id}")));
    }
    let created = issue_key(&state, &id, body).await?;
    audit(&state, &caller, &ctx, &id, "api_key.create", &created.key.id).await;
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}
