//! A minimal SSE reader written from the WHATWG event-stream format (events separated by a blank
//! line, `event:` and `data:` fields), independent of the simulator and of golos-providers.
#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    /// Time since the request was sent (virtual time in paused tests).
    pub at: Duration,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// Reads the whole body as SSE. Returns the events and, if the body ended with an error, that error.
pub async fn read_sse(response: reqwest::Response, started: Instant) -> (Vec<SseEvent>, Option<reqwest::Error>) {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => buffer.push_str(std::str::from_utf8(&bytes).expect("SSE is UTF-8")),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let raw: String = buffer.drain(..end + 2).collect();
            let mut event = SseEvent { event: None, data: String::new(), at: started.elapsed() };
            for line in raw.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event.event = Some(name.trim_start().to_owned());
                } else if let Some(data) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                } else if !line.is_empty() && !line.starts_with(':') {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            events.push(event);
        }
    }
    assert!(failure.is_some() || buffer.is_empty(), "body ended inside an event: {buffer:?}");
    (events, failure)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
