//! A response body sent piece by piece at absolute deadlines `t0 + offset`, so a late tick never
//! pushes the following ones back (WORKLOAD.md §1), with the stream-level faults applied.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::time::Instant;

use crate::scenario::Fault;
use crate::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Finish,
    /// Abort the body: hyper drops the connection without the terminating chunk.
    Reset,
    /// Keep the connection open and silent until shutdown.
    Stall,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub items: Vec<(Duration, Bytes)>,
    pub end: End,
}

impl Plan {
    pub(crate) fn new(items: Vec<(Duration, Bytes)>) -> Self {
        Self { items, end: End::Finish }
    }

    /// Applies the stream-shaped faults; `Status`, `Hang` and `Slow` are the handlers' business.
    pub(crate) fn apply(
        &mut self,
        fault: Option<&Fault>,
        malformed: impl FnOnce(&Bytes) -> Bytes,
        stream_error: impl FnOnce() -> Bytes,
    ) {
        match fault {
            Some(Fault::ResetAfter { events }) => {
                self.items.truncate(*events);
                self.end = End::Reset;
            }
            Some(Fault::StallAfter { events }) => {
                self.items.truncate(*events);
                self.end = End::Stall;
            }
            Some(Fault::Malformed { event }) => {
                if let Some(item) = self.items.get_mut(*event) {
                    item.1 = malformed(&item.1);
                }
            }
            Some(Fault::StreamError { events }) => {
                let at = self.items.get(*events).or(self.items.last()).map_or(Duration::ZERO, |i| i.0);
                self.items.truncate(*events);
                self.items.push((at, stream_error()));
            }
            Some(Fault::Status { .. } | Fault::Hang | Fault::Slow { .. }) | None => {}
        }
    }

    pub(crate) fn into_body(self, t0: Instant, shared: Arc<Shared>) -> Body {
        struct State {
            items: std::vec::IntoIter<(Duration, Bytes)>,
            t0: Instant,
            end: End,
            shared: Arc<Shared>,
            done: bool,
        }
        let state = State { items: self.items.into_iter(), t0, end: self.end, shared, done: false };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            if let Some((offset, bytes)) = st.items.next() {
                tokio::select! {
                    () = tokio::time::sleep_until(st.t0 + offset) => return Some((Ok(bytes), st)),
                    () = st.shared.shutdown_signal() => {
                        st.done = true;
                        return Some((Err(aborted("simulator shutting down")), st));
                    }
                }
            }
            st.done = true;
            match st.end {
                End::Finish => None,
                End::Reset => {
                    // Give hyper a Pending so it flushes the events already written; an error right
                    // after the last event would abort with that event still in its buffer.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                    Some((Err(aborted("simulated connection reset")), st))
                }
                End::Stall => {
                    st.shared.shutdown_signal().await;
                    Some((Err(aborted("simulator shutting down")), st))
                }
            }
        });
        Body::from_stream(stream)
    }
}

fn aborted(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, why)
}

/// Cuts the JSON of an SSE event (or a whole JSON body) in half, keeping the framing, so the client
/// gets a well-framed event whose payload does not parse.
pub(crate) fn truncate_json(event: &Bytes) -> Bytes {
    let text = String::from_utf8_lossy(event);
    let Some(start) = text.find('{') else {
        return Bytes::from_static(b"data: {\"truncated\n\n");
    };
    let end = text.rfind('}').unwrap_or(text.len());
    let mut cut = start + (end - start) / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + 2);
    out.push_str(&text[..cut]);
    if text.ends_with("\n\n") {
        out.push_str("\n\n");
    }
    Bytes::from(out)
}

/// Offset of paced item `k` (0-based): computed by multiplication, never accumulated.
pub(crate) fn at(first_ms: u64, interval_ms: u64, k: usize) -> Duration {
    Duration::from_millis(first_ms + interval_ms * k as u64)
}
