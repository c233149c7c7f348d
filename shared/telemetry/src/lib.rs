//! Tracing initialisation shared by every binary: JSON lines in Lambda/ECS (where a log
//! pipeline parses them), human-readable text locally.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl LogFormat {
    /// JSON when running in Lambda or ECS, or when `GOLOS_LOG_FORMAT=json`.
    pub fn from_env() -> Self {
        let forced = std::env::var("GOLOS_LOG_FORMAT").ok();
        let in_cloud = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var_os("ECS_CONTAINER_METADATA_URI_V4").is_some();
        match forced.as_deref() {
            Some("json") => Self::Json,
            Some("pretty") => Self::Pretty,
            _ if in_cloud => Self::Json,
            _ => Self::Pretty,
        }
    }
}

/// Installs the global subscriber; the level comes from `RUST_LOG` (default `info`).
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
