//! Real-time load against a separately running simulator, to measure its CPU cost (a
//! measurement, not a test): `golos-simulator --port 0` in one shell, then
//! `GOLOS_SIM_URL=http://127.0.0.1:PORT SIM_CALLS=400 cargo run --release -p golos-simulator --example realtime_load`
//! and read the simulator's CPU time (e.g. `ps -o cputime`). Each call streams one 30-word
//! ElevenLabs response (6 s of paced audio) and one OpenAI completion.

use golos_simulator::WORKLOAD_TOKENS;
use serde_json::json;

#[tokio::main]
async fn main() {
    let base = std::env::var("GOLOS_SIM_URL").expect("GOLOS_SIM_URL");
    let calls: usize = std::env::var("SIM_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let text = WORKLOAD_TOKENS.concat();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let (client, base, text) = (client.clone(), base.clone(), text.clone());
        tasks.push(tokio::spawn(async move {
            let tts = client
                .post(format!("{base}/v1/text-to-speech/v/stream?output_format=pcm_16000"))
                .header("xi-api-key", "k")
                .json(&json!({"text": text}))
                .send();
            let llm = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth("k")
                .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                .send();
            let (tts, llm) = tokio::join!(tts, llm);
            let audio = tts.unwrap().bytes().await.unwrap().len();
            let _ = llm.unwrap().bytes().await.unwrap();
            audio
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 192_000);
    }
    println!("{calls} calls done in {:?}", started.elapsed());
}
