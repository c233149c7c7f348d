//! The control-plane API as an AWS Lambda function: the same axum router as `golos serve`,
//! behind API Gateway (HTTP API v2 or REST v1 events) through `lambda_http`.

use axum::extract::ConnectInfo;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use std::net::{IpAddr, SocketAddr};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    golos_telemetry::init(golos_telemetry::LogFormat::Json);
    // API Gateway gives the caller's address in the request context; the router then sees it
    // exactly like a socket peer, so per-IP rate limits work the same in both deployments.
    let config = golos_control::ControlConfig { trust_forwarded_for: false, ..golos_control::ControlConfig::default() };
    let state = golos_bootstrap::control_state(&golos_bootstrap::Backend::Aws, config)
        .await
        .map_err(|e| format!("start-up failed: {e:#}"))?;
    let router = golos_control::router(state);
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
