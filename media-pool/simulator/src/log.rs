//! What clients sent, so tests can assert on it.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::scenario::{Fault, LogConfig};
use crate::Provider;

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub provider: Provider,
    /// 1-based, per provider.
    pub ordinal: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower case; values that are not UTF-8 are dropped.
    pub headers: Vec<(String, String)>,
    /// Empty when `LogConfig::bodies` is off (and for WebSocket upgrades).
    pub body: Bytes,
    /// The fault the simulator chose for this request, if any.
    pub fault: Option<Fault>,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One finished Deepgram live connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeepgramSession {
    pub ordinal: u64,
    pub query: Option<String>,
    pub audio_bytes: u64,
    pub audio_messages: u64,
    pub keep_alives: u64,
    pub finalizes: u64,
    pub close_stream: bool,
    /// Utterances that got a final transcript.
    pub utterances: u64,
    /// Text messages that were not valid control messages.
    pub unknown_messages: u64,
}

#[derive(Debug)]
pub(crate) struct RequestLog {
    config: LogConfig,
    entries: Mutex<VecDeque<LoggedRequest>>,
    sessions: Mutex<Vec<DeepgramSession>>,
}

pub(crate) struct Entry<'a> {
    pub provider: Provider,
    pub ordinal: u64,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub fault: Option<&'a Fault>,
}

impl<'a> Entry<'a> {
    /// The entry of one received request, as every endpoint records it.
    pub(crate) fn of(
        provider: Provider,
        ordinal: u64,
        method: &'a axum::http::Method,
        uri: &'a axum::http::Uri,
        headers: &'a HeaderMap,
        body: &'a Bytes,
        fault: Option<&'a Fault>,
    ) -> Self {
        Self { provider, ordinal, method: method.as_str(), path: uri.path(), query: uri.query(), headers, body, fault }
    }
}

impl RequestLog {
    pub(crate) fn new(config: LogConfig) -> Self {
        Self { config, entries: Mutex::new(VecDeque::new()), sessions: Mutex::new(Vec::new()) }
    }

    pub(crate) fn record(&self, e: &Entry<'_>) {
        if self.config.max_entries == 0 {
            return;
        }
        let entry = LoggedRequest {
            provider: e.provider,
            ordinal: e.ordinal,
            method: e.method.to_owned(),
            path: e.path.to_owned(),
            query: e.query.map(str::to_owned),
            headers: e
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: if self.config.bodies { e.body.clone() } else { Bytes::new() },
            fault: e.fault.cloned(),
        };
        let mut entries = self.entries.lock().expect("log lock poisoned");
        if entries.len() >= self.config.max_entries {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub(crate) fn requests(&self, provider: Provider) -> Vec<LoggedRequest> {
        let entries = self.entries.lock().expect("log lock poisoned");
        entries.iter().filter(|e| e.provider == provider).cloned().collect()
    }

    pub(crate) fn last(&self, provider: Provider) -> Option<LoggedRequest> {
        let entries = self.entries.lock().expect("log lock poisoned");
        entries.iter().rev().find(|e| e.provider == provider).cloned()
    }

    pub(crate) fn record_session(&self, session: DeepgramSession) {
        self.sessions.lock().expect("log lock poisoned").push(session);
    }

    pub(crate) fn sessions(&self) -> Vec<DeepgramSession> {
        self.sessions.lock().expect("log lock poisoned").clone()
    }
}
