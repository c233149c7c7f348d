//! `/v1/sip-trunks`: the operator's SIP trunks ([`crate::sip_trunks`]); an org's admins read
//! their own. The digest password is write-only.

use super::error::{ApiError, ApiResult};
use super::extract::{if_match, Authed, JsonBody, ListQuery, QueryParams};
use super::middleware::Caller;
use crate::sip_trunks::{self, NewTrunk, TrunkChanges};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use golos_domain::rbac::Action;
use golos_domain::OrgId;
use golos_ports::SipTrunk;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrunk {
    /// The organisation whose calls the trunk brings.
    pub org_id: String,
    /// 1-100 characters.
    pub name: String,
    /// Where the trunk's INVITEs come from: networks (`185.71.76.0/27`) or addresses, at most
    /// 50; `/0` is refused.
    #[serde(default)]
    pub source_networks: Vec<String>,
    /// Digest credentials the trunk authenticates with (with or instead of its networks).
    pub digest_username: Option<String>,
    /// Write-only: stored encrypted, never shown again.
    pub digest_password: Option<String>,
    /// E.164 numbers granted to the organisation that this trunk carries.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Where golos sends the trunk's OPTIONS health checks: `host` or `host:port` (port 5060
    /// by default; an IPv6 address in brackets), an IP address or a DNS name. Without it the
    /// trunk is not probed and its circuit breaker stays closed.
    pub sip_address: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrunk {
    pub name: Option<String>,
    pub source_networks: Option<Vec<String>>,
    /// `null` removes the digest credentials.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub digest_username: Option<Option<String>>,
    pub digest_password: Option<String>,
    pub numbers: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `null` stops the health checks.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub sip_address: Option<Option<String>>,
}

/// A field that was sent, even as `null` (`Some(None)`), apart from one left out (`None`):
/// merge-patch semantics, where absent keeps and `null` removes.
#[allow(clippy::option_option)]
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A trunk as the API shows it: never its password.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkView {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub source_networks: Vec<String>,
    pub digest_username: Option<String>,
    /// The first 16 hex digits of the password's SHA-256, when one is set.
    pub digest_password_fingerprint: Option<String>,
    /// E.164. The business's own numbers, shown in full to the operator and its admins.
    pub numbers: Vec<String>,
    pub enabled: bool,
    /// Where the OPTIONS health checks go, `host:port`; `null`: not probed.
    pub sip_address: Option<String>,
    /// Also the `ETag`.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<SipTrunk> for TrunkView {
    fn from(t: SipTrunk) -> Self {
        Self {
            id: t.id.to_string(),
            org_id: t.org_id.to_string(),
            name: t.name,
            source_networks: t.source_networks,
            digest_username: t.digest_username,
            digest_password_fingerprint: t.digest_fingerprint,
            numbers: t.numbers.iter().map(golos_domain::PhoneNumber::expose_e164).collect(),
            enabled: t.enabled,
            sip_address: t.sip_address,
            version: t.version,
            created_at: t.created_at.to_string(),
            updated_at: t.updated_at.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkList {
    pub items: Vec<TrunkView>,
    pub next_cursor: Option<String>,
}

fn with_etag(status: StatusCode, trunk: SipTrunk) -> Response {
    let etag = format!("\"{}\"", trunk.version);
    let mut response = (status, Json(TrunkView::from(trunk))).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The operator sees every trunk; an org member with `ReadSipTrunks` only its org's.
fn scope(caller: &Caller) -> ApiResult<Option<OrgId>> {
    match caller {
        Caller::Operator => Ok(None),
        member @ Caller::Member { .. } => Ok(Some(member.member(Action::ReadSipTrunks)?.id.clone())),
    }
}

/// Create a SIP trunk for an organisation (operator).
#[utoipa::path(post, path = "/v1/sip-trunks", tag = "sip-trunks", request_body = CreateTrunk,
    responses((status = 201, body = TrunkView), (status = 403, description = "operator_only"), (status = 404, description = "no such organisation"),
        (status = 422, description = "validation_failed: networks, credentials, numbers not granted to the organisation")))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    JsonBody(body): JsonBody<CreateTrunk>,
) -> ApiResult<Response> {
    caller.require_operator()?;
    let org = OrgId::parse(&body.org_id).map_err(|_| ApiError::not_found(format!("organisation {}", body.org_id)))?;
    let new = NewTrunk {
        name: body.name,
        source_networks: body.source_networks,
        digest_username: body.digest_username,
        digest_password: body.digest_password,
        numbers: body.numbers,
        enabled: body.enabled,
        sip_address: body.sip_address,
    };
    Ok(with_etag(StatusCode::CREATED, sip_trunks::create(&state, &actor, &org, new).await?))
}

/// SIP trunks: all of them for the operator, the organisation's own for its admins.
#[utoipa::path(get, path = "/v1/sip-trunks", tag = "sip-trunks", params(ListQuery), responses((status = 200, body = TrunkList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<TrunkList>> {
    let org = scope(&caller)?;
    let page = sip_trunks::list(&state, org.as_ref(), &query.page()?).await?;
    Ok(Json(TrunkList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// One SIP trunk; the `ETag` header carries its version.
#[utoipa::path(get, path = "/v1/sip-trunks/{trunk_id}", tag = "sip-trunks", params(("trunk_id" = String, Path)),
    responses((status = 200, body = TrunkView), (status = 404)))]
pub async fn get(Authed { state, caller, .. }: Authed, Path(trunk_id): Path<String>) -> ApiResult<Response> {
    let org = scope(&caller)?;
    Ok(with_etag(StatusCode::OK, sip_trunks::get(&state, &trunk_id, org.as_ref()).await?))
}

/// Change a SIP trunk (operator): only the fields sent change; with `If-Match` only over
/// that version (`412 version_mismatch` otherwise).
#[utoipa::path(patch, path = "/v1/sip-trunks/{trunk_id}", tag = "sip-trunks",
    params(("trunk_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateTrunk,
    responses((status = 200, body = TrunkView), (status = 404), (status = 412, description = "version_mismatch"), (status = 422)))]
pub async fn update(
    Authed { state, caller, actor }: Authed,
    Path(trunk_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateTrunk>,
) -> ApiResult<Response> {
    caller.require_operator()?;
    let changes = TrunkChanges {
        name: body.name,
        source_networks: body.source_networks,
        digest_username: body.digest_username,
        digest_password: body.digest_password,
        numbers: body.numbers,
        enabled: body.enabled,
        sip_address: body.sip_address,
    };
    let trunk = sip_trunks::update(&state, &actor, &trunk_id, changes, if_match(&headers)?).await?;
    Ok(with_etag(StatusCode::OK, trunk))
}

/// Delete a SIP trunk (operator): its calls are refused from then on.
#[utoipa::path(delete, path = "/v1/sip-trunks/{trunk_id}", tag = "sip-trunks", params(("trunk_id" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete(Authed { state, caller, actor }: Authed, Path(trunk_id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_operator()?;
    sip_trunks::delete(&state, &actor, &trunk_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
