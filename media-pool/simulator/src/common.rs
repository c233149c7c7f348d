//! Small helpers shared by the protocol modules.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::scenario::LlmReply;

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(HeaderName::from_static(name), value);
    }
}

/// One SSE event without a name: `data: {json}\n\n`.
pub(crate) fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One named SSE event: `event: NAME\ndata: {json}\n\n`.
pub(crate) fn sse_event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Splits `text` into `n` (at least one) pieces of nearly equal length on char boundaries.
pub(crate) fn split_fragments(text: &str, n: usize) -> Vec<&str> {
    let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let n = n.clamp(1, chars.len().max(1));
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..=n {
        let end = if i == n { text.len() } else { chars[chars.len() * i / n] };
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// The reply for request `ordinal` whose last message is `last`: see `LlmReply::when`.
pub(crate) fn pick_reply(replies: &[LlmReply], ordinal: u64, last: Option<&Value>) -> LlmReply {
    if replies.iter().any(|r| r.when.is_some()) {
        let mut text = String::new();
        if let Some(last) = last {
            collect_strings(last, &mut text);
        }
        if let Some(hit) = replies.iter().find(|r| r.when.as_deref().is_some_and(|w| text.contains(w))) {
            return hit.clone();
        }
    }
    let cycled: Vec<&LlmReply> = replies.iter().filter(|r| r.when.is_none()).collect();
    if cycled.is_empty() {
        return LlmReply::workload();
    }
    cycled[((ordinal - 1) % cycled.len() as u64) as usize].clone()
}

fn collect_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

pub(crate) fn json_error(
    status: StatusCode,
    body: &Value,
    retry_after_s: Option<u64>,
    request_id_header: &'static str,
    request_id: &str,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    set_header(&mut response, "content-type", "application/json");
    set_header(&mut response, request_id_header, request_id);
    if let Some(secs) = retry_after_s {
        set_header(&mut response, "retry-after", &secs.to_string());
    }
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{pick_reply, split_fragments};
    use crate::scenario::LlmReply;

    #[test]
    fn replies_match_the_last_message_first_then_cycle() {
        let replies = vec![
            LlmReply::text(["A"]),
            LlmReply::text(["Hours"]).when("opening hours"),
            LlmReply::text(["Booked"]).when("\"ok\":true"),
            LlmReply::text(["B"]),
        ];
        let user = json!({"role": "user", "content": "what are your opening hours"});
        assert_eq!(pick_reply(&replies, 7, Some(&user)).tokens, ["Hours"]);
        let tool = json!({"role": "tool", "tool_call_id": "c", "content": "{\"ok\":true}"});
        assert_eq!(pick_reply(&replies, 7, Some(&tool)).tokens, ["Booked"]);
        let other = json!({"role": "user", "content": [{"type": "text", "text": "hello"}]});
        assert_eq!(pick_reply(&replies, 1, Some(&other)).tokens, ["A"]);
        assert_eq!(pick_reply(&replies, 2, Some(&other)).tokens, ["B"]);
        assert_eq!(pick_reply(&[], 1, None), LlmReply::workload());
    }

    #[test]
    fn fragments_reassemble_and_respect_char_boundaries() {
        let text = "{\"city\":\"Москва\",\"n\":1}";
        for n in 0..30 {
            let pieces = split_fragments(text, n);
            assert_eq!(pieces.concat(), text);
            assert!(!pieces.is_empty());
        }
        assert_eq!(split_fragments("", 3), vec![""]);
        assert_eq!(split_fragments("abcdef", 3), vec!["ab", "cd", "ef"]);
    }
}
