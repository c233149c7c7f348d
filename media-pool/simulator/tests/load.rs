//! Many concurrent streams on one simulator: every chunk still leaves on its absolute deadline
//! (no drift, no stream delaying another), checked on the virtual clock.

use std::time::Duration;

use futures::StreamExt;
use golos_simulator::{Provider, Scenario, Simulator, WORKLOAD_TOKENS};
use serde_json::json;
use tokio::time::Instant;

const CALLS: usize = 100;

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_tts_and_llm_streams_stay_on_schedule() {
    let mut scenario = Scenario::default();
    scenario.log.bodies = false;
    let sim = Simulator::start(scenario).await.unwrap();
    let client = reqwest::Client::new();
    let tts_url = format!("{}/v1/text-to-speech/v/stream?output_format=pcm_16000", sim.elevenlabs_base_url());
    let llm_url = format!("{}/chat/completions", sim.openai_base_url());
    let text = WORKLOAD_TOKENS.concat(); // 30 words → 6 s → 300 chunks

    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let (client, tts_url, llm_url, text) = (client.clone(), tts_url.clone(), llm_url.clone(), text.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the starts over 1 s like the workload's ramp.
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            let started = Instant::now();
            let llm = client
                .post(&llm_url)
                .bearer_auth("k")
                .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                .send();
            let tts = client.post(&tts_url).header("xi-api-key", "k").json(&json!({"text": text})).send();
            let (llm, tts) = tokio::join!(llm, tts);
            let mut late = Vec::new();
            let mut body = tts.unwrap().bytes_stream();
            let mut k = 0u64;
            let mut bytes = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                bytes += chunk.len();
                let due = Duration::from_millis(100 + 20 * k);
                if started.elapsed() != due {
                    late.push((k, started.elapsed(), due));
                }
                k += 1;
            }
            let llm_bytes = llm.unwrap().bytes().await.unwrap();
            assert!(llm_bytes.ends_with(b"data: [DONE]\n\n"));
            (bytes, late)
        }));
    }
    for task in tasks {
        let (bytes, late) = task.await.unwrap();
        assert_eq!(bytes, 192_000, "6 s of 16 kHz PCM (WORKLOAD §2.4)");
        assert!(late.is_empty(), "chunks off schedule: {late:?}");
    }
    assert_eq!(sim.request_count(Provider::ElevenLabs), CALLS as u64);
    assert_eq!(sim.request_count(Provider::OpenAi), CALLS as u64);
}
