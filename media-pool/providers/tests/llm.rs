//! The OpenAI-compatible and Anthropic adapters against the provider simulator, which speaks
//! the documented wire protocols with injected faults. Time is tokio's paused clock: the
//! simulator's latencies pass instantly and exactly.

use futures::StreamExt;
use golos_ports::SecretString;
use golos_providers::anthropic::{AnthropicConfig, AnthropicLlm};
use golos_providers::openai::{OpenAiConfig, OpenAiLlm};
use golos_providers::{
    FinishReason, LlmEvent, LlmProvider, LlmRequest, Message, ProviderError, ToolCall, ToolDefinition,
};
use golos_simulator::{
    Fault, FaultRule, LlmReply, Provider, Scenario, Simulator, SimulatorHandle, ToolCallScript, WORKLOAD_TOKENS,
};
use serde_json::json;
use std::time::Duration;

/// The simulator listens on loopback, which only an operator can allow.
fn loopback_http() -> golos_egress::net::EgressClient {
    golos_providers::build::provider_http(golos_egress::EgressAllowlist::parse("127.0.0.1/32").unwrap())
}

const KEY: &str = "sk-test-key";

fn openai(sim: &SimulatorHandle) -> OpenAiLlm {
    OpenAiLlm::new(
        OpenAiConfig {
            name: "openai".into(),
            base_url: sim.openai_base_url(),
            api_key: Some(SecretString::new(KEY)),
            model: "gpt-4o-mini".into(),
        },
        loopback_http(),
    )
}

fn anthropic(sim: &SimulatorHandle) -> AnthropicLlm {
    AnthropicLlm::new(
        AnthropicConfig {
            name: "anthropic".into(),
            base_url: sim.anthropic_base_url(),
            api_key: SecretString::new(KEY),
            model: "claude-3-5-haiku-latest".into(),
        },
        loopback_http(),
    )
}

fn request() -> LlmRequest {
    let mut request = LlmRequest::new(vec![
        Message::System("You answer for a cafe.".into()),
        Message::User("When are you open?".into()),
    ]);
    request.tools.push(ToolDefinition {
        name: "book_table".into(),
        description: "Book a table".into(),
        parameters: json!({"type": "object", "properties": {"guests": {"type": "integer"}}, "required": ["guests"]}),
    });
    request
}

/// Everything a stream yields, with the text deltas joined.
#[derive(Debug, Default, PartialEq)]
struct Collected {
    text: String,
    deltas: usize,
    tool_calls: Vec<ToolCall>,
    end: Option<FinishReason>,
    error: Option<ProviderError>,
}

async fn collect(provider: &dyn LlmProvider, request: &LlmRequest) -> Result<Collected, ProviderError> {
    let mut stream = provider.stream(request).await?;
    let mut out = Collected::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(LlmEvent::TextDelta(t)) => {
                out.text.push_str(&t);
                out.deltas += 1;
            }
            Ok(LlmEvent::ToolCall(call)) => out.tool_calls.push(call),
            Ok(LlmEvent::End(reason)) => {
                assert!(out.end.is_none(), "two End events");
                out.end = Some(reason);
            }
            Err(e) => {
                out.error = Some(e);
                assert!(stream.next().await.is_none(), "an error is the last item");
                break;
            }
        }
    }
    Ok(out)
}

async fn sim_with(configure: impl FnOnce(&mut Scenario)) -> SimulatorHandle {
    let mut scenario = Scenario::default();
    scenario.openai.api_key = Some(KEY.into());
    scenario.anthropic.api_key = Some(KEY.into());
    configure(&mut scenario);
    Simulator::start(scenario).await.unwrap()
}

fn both(sim: &SimulatorHandle) -> [(Box<dyn LlmProvider>, Provider); 2] {
    [(Box::new(openai(sim)), Provider::OpenAi), (Box::new(anthropic(sim)), Provider::Anthropic)]
}

#[tokio::test(start_paused = true)]
async fn streams_the_text_token_by_token_and_sends_the_documented_request() {
    let sim = sim_with(|_| {}).await;
    for (provider, which) in both(&sim) {
        let got = collect(provider.as_ref(), &request()).await.unwrap();
        assert_eq!(got.text, WORKLOAD_TOKENS.concat(), "{which:?}");
        assert_eq!(got.deltas, WORKLOAD_TOKENS.len(), "{which:?}");
        assert_eq!(got.end, Some(FinishReason::Stop), "{which:?}");
        assert_eq!(got.error, None);
        let body = sim.last_body_json(which).unwrap();
        assert_eq!(body["stream"], true);
        if which == Provider::OpenAi {
            assert_eq!(body["messages"][0], json!({"role": "system", "content": "You answer for a cafe."}));
            assert_eq!(body["tools"][0]["function"]["name"], "book_table");
        } else {
            assert_eq!(body["system"], "You answer for a cafe.");
            assert_eq!(body["tools"][0]["input_schema"]["required"], json!(["guests"]));
            let logged = sim.last_request(which).unwrap();
            let header = |name: &str| logged.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn tool_call_arguments_split_across_chunks_are_reassembled() {
    let arguments = r#"{"guests": 4, "time": "19:30", "name": "Анна"}"#;
    let reply = LlmReply::text(["One moment."])
        .with_tool_call(ToolCallScript::new("book_table", arguments).fragments(7))
        .with_tool_call(ToolCallScript::new("end_call", "{}").fragments(1));
    let sim = sim_with(|s| {
        s.openai.replies = vec![reply.clone()];
        s.anthropic.replies = vec![reply.clone()];
    })
    .await;
    for (provider, which) in both(&sim) {
        let got = collect(provider.as_ref(), &request()).await.unwrap();
        assert_eq!(got.text, "One moment.", "{which:?}");
        let calls: Vec<(&str, &str)> = got.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("book_table", arguments), ("end_call", "{}")], "{which:?}");
        assert!(got.tool_calls.iter().all(|c| !c.id.is_empty()));
        assert_eq!(got.tool_calls[0].parse_arguments().unwrap()["guests"], 4);
        assert_eq!(got.end, Some(FinishReason::ToolCalls), "{which:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_tool_arguments_reach_the_caller_as_text() {
    let reply = LlmReply::default().with_tool_call(ToolCallScript::new("book_table", r#"{"guests": 4,"#).fragments(2));
    let sim = sim_with(|s| {
        s.openai.replies = vec![reply.clone()];
        s.anthropic.replies = vec![reply.clone()];
    })
    .await;
    for (provider, which) in both(&sim) {
        let got = collect(provider.as_ref(), &request()).await.unwrap();
        assert_eq!(got.tool_calls.len(), 1, "{which:?}");
        assert!(got.tool_calls[0].parse_arguments().is_err(), "the engine retries; the adapter does not judge");
    }
}

#[tokio::test(start_paused = true)]
async fn http_errors_are_classified() {
    let sim = sim_with(|s| {
        for llm in [&mut s.openai, &mut s.anthropic] {
            llm.faults = vec![
                FaultRule::first(1, Fault::rate_limited(7)),
                FaultRule::requests(2, Some(2), Fault::status(500)),
                FaultRule::requests(3, Some(3), Fault::status(503)),
            ];
        }
        s.anthropic.faults.push(FaultRule::requests(4, Some(4), Fault::status(529)));
    })
    .await;
    for (provider, which) in both(&sim) {
        let err = |r: Result<Collected, ProviderError>| r.unwrap_err();
        assert_eq!(
            err(collect(provider.as_ref(), &request()).await),
            ProviderError::RateLimited { retry_after: Some(Duration::from_secs(7)) },
            "{which:?}"
        );
        assert!(matches!(err(collect(provider.as_ref(), &request()).await), ProviderError::Server { status: 500, .. }));
        assert!(matches!(err(collect(provider.as_ref(), &request()).await), ProviderError::Server { status: 503, .. }));
    }
    let overloaded = collect(&anthropic(&sim), &request()).await.unwrap_err();
    assert!(matches!(overloaded, ProviderError::Server { status: 529, .. }), "{overloaded:?}");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_key_is_an_auth_error_and_never_appears_in_it() {
    let sim = sim_with(|s| {
        s.openai.api_key = Some("the-right-key".into());
        s.anthropic.api_key = Some("the-right-key".into());
    })
    .await;
    for (provider, which) in both(&sim) {
        let error = collect(provider.as_ref(), &request()).await.unwrap_err();
        assert_eq!(error, ProviderError::Auth { status: 401 }, "{which:?}");
        assert!(!format!("{error} {error:?} {provider:?}").contains(KEY));
    }
}

#[tokio::test(start_paused = true)]
async fn a_reset_mid_stream_ends_the_stream_with_a_connection_error() {
    let sim = sim_with(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::ResetAfter { events: 4 })];
        s.anthropic.faults = vec![FaultRule::always(Fault::ResetAfter { events: 6 })];
    })
    .await;
    for (provider, which) in both(&sim) {
        let got = collect(provider.as_ref(), &request()).await.unwrap();
        assert!(!got.text.is_empty() && got.text.len() < WORKLOAD_TOKENS.concat().len(), "{which:?}: {got:?}");
        assert_eq!(got.end, None);
        assert!(matches!(got.error, Some(ProviderError::Connection(_))), "{which:?}: {got:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_json_mid_stream_is_a_bad_response() {
    let sim = sim_with(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::Malformed { event: 3 })];
        s.anthropic.faults = vec![FaultRule::always(Fault::Malformed { event: 5 })];
    })
    .await;
    for (provider, which) in both(&sim) {
        let got = collect(provider.as_ref(), &request()).await.unwrap();
        assert!(matches!(got.error, Some(ProviderError::BadResponse(_))), "{which:?}: {got:?}");
        assert_eq!(got.end, None);
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_event_inside_the_stream_is_classified() {
    let sim = sim_with(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::StreamError { events: 3 })];
        s.anthropic.faults = vec![FaultRule::always(Fault::StreamError { events: 4 })];
    })
    .await;
    let got = collect(&openai(&sim), &request()).await.unwrap();
    assert!(matches!(got.error, Some(ProviderError::Server { .. } | ProviderError::RateLimited { .. })), "{got:?}");
    let got = collect(&anthropic(&sim), &request()).await.unwrap();
    assert!(matches!(got.error, Some(ProviderError::Server { status: 529, .. })), "{got:?}");
    assert!(!got.text.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_is_cut_by_the_caller_timeout() {
    let sim = sim_with(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::Hang)];
        s.anthropic.faults = vec![FaultRule::always(Fault::StallAfter { events: 2 })];
    })
    .await;
    let started = tokio::time::Instant::now();
    let hang = tokio::time::timeout(Duration::from_secs(5), collect(&openai(&sim), &request())).await;
    assert!(hang.is_err());
    let stall = tokio::time::timeout(Duration::from_secs(5), collect(&anthropic(&sim), &request())).await;
    assert!(stall.is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}
