//! Tracing initialisation shared by every binary: JSON lines in Lambda/ECS (where a log
//! pipeline parses them), human-readable text locally. Which one, and the level filter, come
//! from the binary's settings (`golos_bootstrap::settings`), not from the environment.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The most the SIP stack may log.
const SIP_STACK_CEILING: &str = "rsipstack=warn";

/// Installs the global subscriber with `filter` (tracing `EnvFilter` syntax, the `RUST_LOG`
/// setting); none, or one that does not parse, is `info`. Calling it twice is harmless (the
/// second call is ignored).
pub fn init(format: LogFormat, filter: Option<&str>) {
    let filter = filter.and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    // The SIP stack (behind golos-sip) logs whole SIP messages, caller numbers included, at
    // info and below; golos never logs a raw phone number, so its target stops at warn.
    let filter = filter.add_directive(SIP_STACK_CEILING.parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
