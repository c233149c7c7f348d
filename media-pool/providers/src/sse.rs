//! Server-sent events as the WHATWG spec frames them: `event:`/`data:` lines, a blank line
//! ends an event, `:` starts a comment, and lines end in LF, CRLF or CR. Bytes may arrive
//! split anywhere, even inside a UTF-8 character.

use crate::llm::{LlmEvent, LlmStream};
use crate::ProviderError;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use std::collections::VecDeque;

/// The longest line, and the most `data` one event may gather. Provider events are a few
/// hundred bytes (one token, one tool-argument fragment); a server sending a line without end
/// is failing, and must not grow the worker's memory.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the server sent no `event:` line.
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// A CR ended the last line; an LF right after it belongs to that line ending.
    after_cr: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ProviderError> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.buffer);
                    let line = String::from_utf8(line)
                        .map_err(|_| ProviderError::BadResponse("event stream is not UTF-8".into()))?;
                    if let Some(event) = self.line(&line)? {
                        events.push(event);
                    }
                }
                _ => {
                    if self.buffer.len() >= MAX_EVENT_BYTES {
                        return Err(too_long());
                    }
                    self.buffer.push(byte);
                }
            }
        }
        Ok(events)
    }

    /// Whether a partial event is pending: a stream that ends here was cut off.
    pub fn is_mid_event(&self) -> bool {
        !self.buffer.is_empty() || self.data.is_some()
    }

    fn line(&mut self, line: &str) -> Result<Option<SseEvent>, ProviderError> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            return Ok(data.map(|data| SseEvent { event: event.unwrap_or_else(|| "message".into()), data }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) if data.len() + 1 + value.len() > MAX_EVENT_BYTES => return Err(too_long()),
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        Ok(None)
    }
}

fn too_long() -> ProviderError {
    ProviderError::BadResponse(format!("an event-stream line or event is longer than {MAX_EVENT_BYTES} bytes"))
}

/// The events of a response body, in order; a body that ends inside an event or a transport
/// error ends the stream with an error.
pub fn events(response: reqwest::Response) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    let body = response.bytes_stream();
    futures::stream::unfold(
        (body, SseParser::default(), VecDeque::new(), false),
        |(mut body, mut parser, mut pending, done)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((Ok(event), (body, parser, pending, done)));
                }
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(bytes)) => match parser.push(&bytes) {
                        Ok(events) => pending.extend(events),
                        Err(e) => return Some((Err(e), (body, parser, pending, true))),
                    },
                    Some(Err(e)) => return Some((Err(ProviderError::from(e)), (body, parser, pending, true))),
                    None if parser.is_mid_event() => {
                        let err = ProviderError::Connection("the event stream ended inside an event".into());
                        return Some((Err(err), (body, parser, pending, true)));
                    }
                    None => return None,
                }
            }
        },
    )
}

/// What an LLM adapter knows of its protocol: the events one SSE event means. An `End`
/// must be the last event it ever returns.
pub(crate) trait EventDecoder: Send + 'static {
    fn event(&mut self, event: &SseEvent) -> Result<Vec<LlmEvent>, ProviderError>;

    /// The body ended cleanly without an `End`: the events that still complete the stream,
    /// if the protocol allows that, else `None` (the stream was cut off).
    fn end_of_body(&mut self) -> Option<Result<Vec<LlmEvent>, ProviderError>> {
        None
    }
}

/// The LLM events of a response: a decoder error, a transport error or a body that ends
/// before `End` ends the stream with an error.
pub(crate) fn llm_stream(response: reqwest::Response, decoder: impl EventDecoder) -> LlmStream {
    struct State<D> {
        events: BoxStream<'static, Result<SseEvent, ProviderError>>,
        decoder: D,
        pending: VecDeque<LlmEvent>,
        finished: bool,
    }
    let state = State { events: events(response).boxed(), decoder, pending: VecDeque::new(), finished: false };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                if matches!(event, LlmEvent::End(_)) {
                    st.finished = true;
                    st.pending.clear();
                }
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let failure = match st.events.next().await {
                Some(Ok(event)) => match st.decoder.event(&event) {
                    Ok(decoded) => {
                        st.pending.extend(decoded);
                        continue;
                    }
                    Err(e) => e,
                },
                Some(Err(e)) => e,
                None => match st.decoder.end_of_body() {
                    Some(Ok(decoded)) if decoded.iter().any(|e| matches!(e, LlmEvent::End(_))) => {
                        st.pending.extend(decoded);
                        continue;
                    }
                    Some(Err(e)) => e,
                    _ => ProviderError::Connection("the stream ended before its last event".into()),
                },
            };
            st.finished = true;
            return Some((Err(failure), st));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        input.chunks(piece).flat_map(|c| parser.push(c).unwrap()).collect()
    }

    #[test]
    fn frames_events_however_the_bytes_are_split() {
        let input =
            "event: message_start\ndata: {\"a\":1}\n\n: comment\r\ndata: line1\r\ndata:line2\r\n\r\ndata: é\r\r";
        let expected = vec![
            SseEvent { event: "message_start".into(), data: "{\"a\":1}".into() },
            SseEvent { event: "message".into(), data: "line1\nline2".into() },
            SseEvent { event: "message".into(), data: "é".into() },
        ];
        for piece in 1..input.len() {
            assert_eq!(parse_in_pieces(input.as_bytes(), piece), expected, "piece size {piece}");
        }
    }

    #[test]
    fn a_line_without_end_is_an_error_not_memory() {
        let mut parser = SseParser::default();
        let piece = vec![b'x'; 16 * 1024];
        parser.push(b"data: ").unwrap();
        let outcome: Result<Vec<()>, ProviderError> = (0..8).map(|_| parser.push(&piece).map(|_| ())).collect();
        assert!(matches!(outcome, Err(ProviderError::BadResponse(ref m)) if m.contains("longer than")), "{outcome:?}");
        assert!(parser.buffer.len() <= MAX_EVENT_BYTES);
        // Many lines of one event add up the same way.
        let mut parser = SseParser::default();
        let line = format!("data: {}\n", "y".repeat(1_000));
        let outcome: Result<Vec<()>, ProviderError> =
            (0..70).map(|_| parser.push(line.as_bytes()).map(|_| ())).collect();
        assert!(outcome.is_err());
    }

    #[test]
    fn a_blank_line_without_data_is_no_event() {
        assert!(parse_in_pieces(b"event: ping\n\n\n", 4).is_empty());
    }
}
