//! OpenAI chat completions against a client written from the API reference.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ms, read_sse};
use golos_simulator::{
    Fault, FaultRule, LlmReply, Provider, Scenario, Simulator, SimulatorHandle, ToolCallScript, WORKLOAD_TOKENS,
};
use serde_json::{json, Value};
use tokio::time::Instant;

fn request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You answer questions about opening hours."},
            {"role": "user", "content": "what are your opening hours"},
        ],
    })
}

async fn post(sim: &SimulatorHandle, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("{}/chat/completions", sim.openai_base_url())).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("request sent")
}

#[tokio::test(start_paused = true)]
async fn streams_workload_tokens_as_chunks_paced_from_the_request() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let started = Instant::now();
    let response = post(&sim, Some("sk-test"), &request("gpt-4o-mini", true)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (events, failure) = read_sse(response, started).await;
    assert!(failure.is_none());

    assert!(events.iter().all(|e| e.event.is_none()), "OpenAI events carry no event name");
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(common::SseEvent::json).collect();
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert_eq!(chunk["choices"][0]["index"], 0);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));

    let content: Vec<(&str, Duration)> = events
        .iter()
        .zip(&chunks)
        .filter_map(|(e, c)| c["choices"][0]["delta"]["content"].as_str().filter(|s| !s.is_empty()).map(|s| (s, e.at)))
        .collect();
    let tokens: Vec<&str> = content.iter().map(|(t, _)| *t).collect();
    assert_eq!(tokens, WORKLOAD_TOKENS);
    // WORKLOAD §2.3: token i is due at request + 200 + 20·(i−1) ms, exactly, on the virtual clock.
    for (i, (_, at)) in content.iter().enumerate() {
        assert_eq!(*at, ms(200 + 20 * i as u64), "token {i}");
    }
    assert_eq!(events[0].at, Duration::ZERO, "the role chunk comes before the first token");
    assert_eq!(sim.request_count(Provider::OpenAi), 1);
}

#[tokio::test(start_paused = true)]
async fn tool_call_arguments_split_across_chunks_reassemble_to_json() {
    let mut scenario = Scenario::default();
    let args = r#"{"city":"Москва","days":3,"units":"metric"}"#;
    scenario.openai.replies = vec![LlmReply::text(["Let me check."])
        .with_tool_call(ToolCallScript::new("get_weather", args).fragments(5))
        .with_tool_call(ToolCallScript::new("end_call", "{}").fragments(1))];
    let sim = Simulator::start(scenario).await.unwrap();
    let started = Instant::now();
    let (events, failure) = read_sse(post(&sim, Some("k"), &request("gpt-4o", true)).await, started).await;
    assert!(failure.is_none());
    assert_eq!(events.last().unwrap().data, "[DONE]");

    // Reassemble by index, as the reference says: id/type/name come first, arguments accrete.
    let mut calls: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut fragments: BTreeMap<u64, usize> = BTreeMap::new();
    let mut finish = None;
    for event in &events[..events.len() - 1] {
        let chunk = event.json();
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("index on every tool_calls delta");
            let entry = calls.entry(index).or_default();
            if let Some(id) = call["id"].as_str() {
                assert!(entry.0.is_empty(), "id only in the first delta of a call");
                assert_eq!(call["type"], "function");
                entry.0 = id.to_owned();
                entry.1 = call["function"]["name"].as_str().unwrap().to_owned();
            }
            if let Some(piece) = call["function"]["arguments"].as_str() {
                entry.2.push_str(piece);
                *fragments.entry(index).or_default() += usize::from(!piece.is_empty());
            }
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(calls.len(), 2);
    let (id, name, arguments) = &calls[&0];
    assert!(id.starts_with("call_"));
    assert_eq!(name, "get_weather");
    assert_eq!(serde_json::from_str::<Value>(arguments).unwrap(), serde_json::from_str::<Value>(args).unwrap());
    assert_eq!(fragments[&0], 5, "arguments really were split");
    assert_eq!(calls[&1].1, "end_call");
    assert_eq!(calls[&1].2, "{}");
}

#[tokio::test(start_paused = true)]
async fn non_streaming_returns_a_chat_completion_after_the_whole_generation() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let started = Instant::now();
    let response = post(&sim, Some("k"), &request("gpt-4o-mini", false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(started.elapsed(), ms(200 + 20 * 29));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], WORKLOAD_TOKENS.concat());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(start_paused = true)]
async fn bearer_auth_is_checked_and_logged() {
    let mut scenario = Scenario::default();
    scenario.openai.api_key = Some("sk-right".into());
    let sim = Simulator::start(scenario).await.unwrap();
    for key in [None, Some("sk-wrong")] {
        let response = post(&sim, key, &request("gpt-4o", true)).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(body["error"]["message"].is_string());
    }
    let response = post(&sim, Some("sk-right"), &request("gpt-4o", false)).await;
    assert_eq!(response.status(), 200);
    let last = sim.last_request(Provider::OpenAi).unwrap();
    assert_eq!(last.ordinal, 3);
    assert_eq!(last.header("authorization"), Some("Bearer sk-right"));
    assert_eq!(last.body_json().unwrap()["messages"][1]["content"], "what are your opening hours");
    assert_eq!(sim.request_count(Provider::OpenAi), 3);
}

#[tokio::test(start_paused = true)]
async fn malformed_body_and_missing_fields_are_400() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", sim.openai_base_url());
    let response = client.post(&url).bearer_auth("k").body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
    let response = client.post(&url).bearer_auth("k").json(&json!({"messages": []})).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(start_paused = true)]
async fn fault_schedule_first_two_rate_limited_then_ok() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::first(2, Fault::rate_limited(7))];
    let sim = Simulator::start(scenario).await.unwrap();
    for _ in 0..2 {
        let response = post(&sim, Some("k"), &request("gpt-4o", true)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
    let response = post(&sim, Some("k"), &request("gpt-4o", true)).await;
    assert_eq!(response.status(), 200);
    let (events, failure) = read_sse(response, Instant::now()).await;
    assert!(failure.is_none());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let log = sim.requests(Provider::OpenAi);
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].fault, Some(Fault::rate_limited(7)));
    assert_eq!(log[2].fault, None);
}

#[tokio::test(start_paused = true)]
async fn faults_follow_the_model_name() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::model("gpt-broken", Fault::status(500))];
    let sim = Simulator::start(scenario).await.unwrap();
    let response = post(&sim, Some("k"), &request("gpt-broken", false)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "server_error");
    assert_eq!(post(&sim, Some("k"), &request("gpt-fine", false)).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn connection_reset_mid_stream_is_a_body_error_after_some_chunks() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::always(Fault::ResetAfter { events: 4 })];
    let sim = Simulator::start(scenario).await.unwrap();
    let response = post(&sim, Some("k"), &request("gpt-4o", true)).await;
    assert_eq!(response.status(), 200);
    let (events, failure) = read_sse(response, Instant::now()).await;
    assert_eq!(events.len(), 4);
    assert!(failure.is_some(), "the body must fail, not end cleanly");
    assert!(events.iter().all(|e| e.data != "[DONE]"));
}

#[tokio::test(start_paused = true)]
async fn malformed_chunk_is_framed_but_unparsable_and_the_stream_goes_on() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::always(Fault::Malformed { event: 2 })];
    let sim = Simulator::start(scenario).await.unwrap();
    let (events, failure) = read_sse(post(&sim, Some("k"), &request("gpt-4o", true)).await, Instant::now()).await;
    assert!(failure.is_none());
    assert!(serde_json::from_str::<Value>(&events[2].data).is_err());
    assert!(events[2].data.starts_with('{'));
    assert!(serde_json::from_str::<Value>(&events[3].data).is_ok());
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test(start_paused = true)]
async fn hang_sends_nothing_until_the_client_gives_up_and_shutdown_still_completes() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::always(Fault::Hang)];
    let sim = Simulator::start(scenario).await.unwrap();
    let started = Instant::now();
    let outcome = tokio::time::timeout(ms(30_000), post(&sim, Some("k"), &request("gpt-4o", true))).await;
    assert!(outcome.is_err(), "no headers may arrive");
    assert_eq!(started.elapsed(), ms(30_000));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stall_after_chunks_and_slow_first_token() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![
        FaultRule::first(1, Fault::StallAfter { events: 3 }),
        FaultRule::requests(2, None, Fault::Slow { first_ms: 1500 }),
    ];
    let sim = Simulator::start(scenario).await.unwrap();
    let response = post(&sim, Some("k"), &request("gpt-4o", true)).await;
    let mut body = Box::pin(response.bytes_stream());
    let mut seen = 0;
    let stalled = tokio::time::timeout(ms(10_000), async {
        use futures::StreamExt;
        while let Some(Ok(bytes)) = body.next().await {
            seen += bytes.windows(2).filter(|w| w == b"\n\n").count();
        }
    })
    .await;
    assert!(stalled.is_err());
    assert_eq!(seen, 3);

    let started = Instant::now();
    let (events, _) = read_sse(post(&sim, Some("k"), &request("gpt-4o", true)).await, started).await;
    let first_content = events.iter().find(|e| e.data.contains("\"content\":\"Sure.\"")).unwrap();
    assert_eq!(first_content.at, ms(1500));
    drop(body);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn mid_stream_error_event_and_usage_chunk() {
    let mut scenario = Scenario::default();
    scenario.openai.faults = vec![FaultRule::first(1, Fault::StreamError { events: 5 })];
    let sim = Simulator::start(scenario).await.unwrap();
    let (events, failure) = read_sse(post(&sim, Some("k"), &request("gpt-4o", true)).await, Instant::now()).await;
    assert!(failure.is_none());
    assert_eq!(events.len(), 6);
    assert_eq!(events[5].json()["error"]["type"], "server_error");

    let mut body = request("gpt-4o", true);
    body["stream_options"] = json!({"include_usage": true});
    let (events, _) = read_sse(post(&sim, Some("k"), &body).await, Instant::now()).await;
    let usage = events[events.len() - 2].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 30);
    assert!(events[0].json()["usage"].is_null());
}
