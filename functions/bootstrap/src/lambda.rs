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

/// What every function does first: its settings from the environment, JSON logs (whatever
/// `GOLOS_LOG_FORMAT` says: a function's lines are read from CloudWatch, never from a
/// terminal), and the control plane over AWS ([`control_state`]).
pub async fn start() -> Result<(crate::settings::Settings, golos_control::ControlState), String> {
    let settings = crate::settings::Settings::from_environment().map_err(|e| format!("configuration: {e:#}"))?;
    golos_telemetry::init(golos_telemetry::LogFormat::Json, settings.telemetry.log_filter.as_deref());
    let state = control_state(&settings).await.map_err(|e| format!("start-up failed: {e:#}"))?;
    Ok((settings, state))
}

/// The messages of an SQS batch as the `Queue` port's consumers take them.
pub fn sqs_messages(event: aws_lambda_events::event::sqs::SqsEvent) -> Vec<golos_ports::QueueMessage> {
    event
        .records
        .into_iter()
        .map(|record| golos_ports::QueueMessage {
            id: record.message_id.unwrap_or_default(),
            receipt: record.receipt_handle.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        })
        .collect()
}

/// The partial batch failure answer: SQS redelivers only these messages.
pub fn batch_failures<'a>(
    failed: impl IntoIterator<Item = &'a golos_ports::QueueMessage>,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let mut response = aws_lambda_events::event::sqs::SqsBatchResponse::default();
    for message in failed {
        let mut failure = aws_lambda_events::event::sqs::BatchItemFailure::default();
        failure.item_identifier.clone_from(&message.id);
        response.batch_item_failures.push(failure);
    }
    response
}
