//! Serving an axum router as a Lambda function behind API Gateway, shared by every HTTP
//! function so they see callers the same way.

use axum::extract::ConnectInfo;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use std::net::{IpAddr, SocketAddr};
use tower::ServiceExt;

/// Runs `router` under the Lambda runtime until the runtime stops it. API Gateway gives the
/// caller's address in the request context; the router sees it exactly like a socket peer,
/// so per-IP limits and provider allowlists work the same in both deployments.
pub async fn serve_http(router: axum::Router) -> Result<(), lambda_http::Error> {
    let service = tower::service_fn(move |mut request: lambda_http::Request| {
        let router = router.clone();
        async move {
            if let Some(ip) = source_ip(&request) {
                request.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
            }
            let response = router.oneshot(request.map(|body| axum::body::Body::from(body.to_vec()))).await?;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| format!("response body: {e}"))?;
            Ok::<_, lambda_http::Error>(lambda_http::Response::from_parts(
                parts,
                lambda_http::Body::from(bytes.to_vec()),
            ))
        }
    });
    lambda_http::run(service).await
}

fn source_ip(request: &lambda_http::Request) -> Option<IpAddr> {
    let raw = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        _ => None,
    }?;
    raw.parse().ok()
}

/// The control plane as every Lambda function runs it: over AWS whatever `GOLOS_BACKEND`
/// says (a function has no disk to keep state on), and never trusting `X-Forwarded-For`:
/// API Gateway hands over the caller's address in the request context ([`serve_http`]), and
/// the header is whatever the caller wrote plus what API Gateway appended.
pub async fn control_state(settings: &crate::settings::Settings) -> anyhow::Result<golos_control::ControlState> {
    let config = golos_control::ControlConfig { trust_forwarded_for: false, ..settings.control_config()? };
    crate::control_state(&crate::Backend::Aws(settings.aws_config()?), config).await
}
