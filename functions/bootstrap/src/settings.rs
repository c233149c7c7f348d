//! What every golos binary is configured with, read in one place.
//!
//! Four layers, each over the one before: the defaults, a TOML settings file (`--config` or
//! `GOLOS_CONFIG`), the environment (the names in docs/configuration.md, which operators and
//! infra/terraform set), and the flags of `golos serve`. A binary calls [`Settings::load`]
//! once in `main` and hands the typed sections down; nothing below it reads the environment.
//!
//! The loader is written out rather than built on `config` or `figment`. The variables came
//! first and do not follow a path scheme (`GOLOS_TABLE` is `aws.table`, `GOLOS_LISTEN` is
//! `server.listen`), `AWS_REGION` stands in for an unset region, a blank AWS variable means
//! unset while a blank `GOLOS_SHARDS` is an error, and lists are comma-separated: those
//! crates would need a mapping per name anyway, and they guess a value's type from its text
//! (`true`, `[a]`, `{…}`), which would change what some values mean. Here each variable is
//! parsed exactly as before, and an error names it.

use anyhow::{anyhow, Context};
use golos_control::ControlConfig;
use golos_telemetry::LogFormat;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Every option, by concern. `Default` is the bottom layer; the file names the same
/// sections and keys (docs/configuration.md has an example).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub worker: WorkerSettings,
    pub sip: SipSettings,
    pub control: ControlSettings,
    pub aws: AwsSettings,
    pub telemetry: TelemetrySettings,
}

/// Where `golos serve` listens and which backend holds the state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub ops_listen: Option<SocketAddr>,
    pub backend: BackendKind,
    pub data_dir: PathBuf,
    pub trust_forwarded_for: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: None,
            backend: BackendKind::Local,
            data_dir: PathBuf::from(".golos"),
            trust_forwarded_for: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// SQLite, a local key file and secret files under --data-dir: no cloud account needed.
    Local,
    /// DynamoDB, SQS, KMS and Secrets Manager, configured by GOLOS_* and AWS_* variables.
    Aws,
}

/// The media worker's live calls and its shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// `None`: one engine thread per core.
    pub shards: Option<usize>,
    pub clips_dir: Option<PathBuf>,
    pub ws_max_connections: usize,
    pub ws_max_connections_per_ip: usize,
    pub twilio_max_connections_per_ip: usize,
    pub drain_secs: u64,
    /// `ExpiresInMinutes` of the ECS task scale-in protection set while calls are live
    /// (renewed half-way through); 1 to 2,880.
    pub scale_in_protection_minutes: u32,
    /// `ECS_AGENT_URI`, injected by the ECS agent: where task scale-in protection is set.
    /// Not a file key: it names the task the process runs in.
    #[serde(skip)]
    pub ecs_agent_uri: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        // The same numbers as `golos::calls::DEFAULT_*` (a test in the worker holds them
        // together): this crate sits below the worker and cannot name them.
        Self {
            shards: None,
            clips_dir: None,
            ws_max_connections: 2_000,
            ws_max_connections_per_ip: 20,
            twilio_max_connections_per_ip: 200,
            drain_secs: 600,
            scale_in_protection_minutes: 15,
            ecs_agent_uri: None,
        }
    }
}

/// The SIP edge: phone calls from trunks straight to this worker (docs/telephony.md). Off
/// unless `listen` is set: most deployments take WebSocket calls only, and a SIP port open by
/// default would answer scanners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSettings {
    /// UDP and TCP, e.g. `0.0.0.0:5060`.
    pub listen: Option<SocketAddr>,
    /// Where each call's RTP socket is bound, one port a call.
    pub rtp_ports: PortRange,
    /// The address written into our SDP (where the trunk sends RTP); `None` is the listen
    /// address, which must then be a specific one.
    pub public_address: Option<IpAddr>,
    /// How often each trunk with a `sip_address` gets an OPTIONS health check (also the
    /// longest a check waits for its answer, at most 30 s).
    pub probe_every_ms: u64,
    /// Failures in a row (calls' or checks': timeouts, transport errors, 5xx/6xx) that open
    /// a trunk's circuit breaker.
    pub breaker_failures_to_open: u32,
    /// How long an open breaker refuses the trunk's calls before checks may close it.
    pub breaker_open_ms: u64,
    /// Good checks in a row, after `breaker_open_ms`, that close it.
    pub breaker_probes_to_close: u32,
    /// An answered call from which no RTP arrives for this long is ended (BYE): the far end
    /// is gone without one. At least 1.
    pub rtp_media_timeout_secs: u64,
}

/// The product default of `sip.rtp_media_timeout_secs`: long enough for a trunk that
/// pauses its stream (silence suppression, a re-INVITE) and short enough that a call whose
/// far end vanished is not billed on for long.
pub const DEFAULT_RTP_MEDIA_TIMEOUT_SECS: u64 = 30;

impl Default for SipSettings {
    fn default() -> Self {
        // The reviews' numbers, as `golos_sip::breaker::BreakerConfig::default()` (a test in
        // the worker holds them together): this crate does not depend on golos-sip.
        Self {
            listen: None,
            rtp_ports: PortRange::default(),
            public_address: None,
            probe_every_ms: 30_000,
            breaker_failures_to_open: 5,
            breaker_open_ms: 30_000,
            breaker_probes_to_close: 3,
            rtp_media_timeout_secs: DEFAULT_RTP_MEDIA_TIMEOUT_SECS,
        }
    }
}

impl SipSettings {
    /// How long an answered call may go without RTP from the trunk (checked: at least 1 s).
    pub fn media_timeout(&self) -> anyhow::Result<std::time::Duration> {
        if self.rtp_media_timeout_secs == 0 {
            return Err(anyhow!("GOLOS_RTP_MEDIA_TIMEOUT_SECS: {MEDIA_TIMEOUT}, not 0"));
        }
        Ok(std::time::Duration::from_secs(self.rtp_media_timeout_secs))
    }

    /// The address our SDP answers carry, when SIP is on.
    pub fn media_address(&self) -> anyhow::Result<Option<IpAddr>> {
        let Some(listen) = self.listen else { return Ok(None) };
        match self.public_address {
            Some(address) => Ok(Some(address)),
            // 0.0.0.0 in SDP means "hold" (RFC 2543): the trunk would send us nothing.
            None if listen.ip().is_unspecified() => Err(anyhow!(
                "GOLOS_SIP_PUBLIC_ADDRESS: required when GOLOS_SIP_LISTEN ({listen}) is not a specific address"
            )),
            None => Ok(Some(listen.ip())),
        }
    }

    /// The breaker's numbers, each checked, an error naming its variable.
    pub fn check_breaker(&self) -> anyhow::Result<()> {
        let check = |ok: bool, name: &str, expected: &str, value: &dyn Display| {
            if ok {
                Ok(())
            } else {
                Err(anyhow!("{name}: {expected}, not {value}"))
            }
        };
        check(self.probe_every_ms >= 100, "GOLOS_SIP_PROBE_EVERY_MS", PROBE_EVERY, &self.probe_every_ms)?;
        check(self.breaker_open_ms >= 100, "GOLOS_SIP_BREAKER_OPEN_MS", BREAKER_OPEN, &self.breaker_open_ms)?;
        check(
            self.breaker_failures_to_open >= 1,
            "GOLOS_SIP_BREAKER_FAILURES_TO_OPEN",
            AT_LEAST_ONE,
            &self.breaker_failures_to_open,
        )?;
        check(
            self.breaker_probes_to_close >= 1,
            "GOLOS_SIP_BREAKER_PROBES_TO_CLOSE",
            AT_LEAST_ONE,
            &self.breaker_probes_to_close,
        )
    }
}

/// An inclusive range of UDP ports, written `first-last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        // 1000 calls' worth, above the ephemeral ports Linux hands out (32768+).
        Self { first: 20_000, last: 20_999 }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (first, last) = s.split_once('-').ok_or_else(|| format!("a port range like 20000-20999, not {s:?}"))?;
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        match (port(first), port(last)) {
            (Some(first), Some(last)) if first <= last => Ok(Self { first, last }),
            _ => Err(format!("a port range like 20000-20999 (1-65535, first <= last), not {s:?}")),
        }
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The control plane's options: becomes a [`ControlConfig`] by [`Settings::control_config`].
/// Lists stay text until then so that an entry that does not parse is reported under the
/// variable's name, wherever it came from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    pub yookassa_api_url: String,
    pub yookassa_allowed_ips: Vec<String>,
    pub egress_allow: Vec<String>,
    pub lease_ttl_ms: i64,
    pub sweep_interval_ms: u64,
    pub hold_max_waiters_per_org: u32,
    pub reconcile_call_window_days: u32,
    pub auth_failures_per_ip_per_minute: u32,
    pub webhook_timeout_ms: u64,
    pub webhook_max_attempts: u32,
    pub webhook_retry_unit_ms: u64,
    pub webhook_disable_after_failures: u32,
    pub webhook_consumers: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        let config = ControlConfig::default();
        Self {
            yookassa_api_url: config.yookassa.api_base,
            yookassa_allowed_ips: golos_control::payments::PUBLISHED_NETWORKS.map(str::to_owned).to_vec(),
            egress_allow: Vec::new(),
            lease_ttl_ms: config.lease_ttl_ms,
            sweep_interval_ms: config.sweep_interval_ms,
            hold_max_waiters_per_org: config.hold_max_waiters_per_org,
            reconcile_call_window_days: config.reconcile_call_window_days,
            auth_failures_per_ip_per_minute: config.auth_failures_per_ip_per_minute,
            webhook_timeout_ms: duration_ms(config.webhooks.timeout),
            webhook_max_attempts: config.webhooks.max_attempts,
            webhook_retry_unit_ms: duration_ms(config.webhooks.retry_unit),
            webhook_disable_after_failures: config.webhooks.disable_after_failures,
            webhook_consumers: config.webhooks.consumers,
        }
    }
}

/// The AWS backend's resources: becomes a [`golos_aws::AwsConfig`] by [`Settings::aws_config`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// `None` until loaded: then the file's, `GOLOS_AWS_REGION`, or else `AWS_REGION`.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub table: String,
    pub queue_prefix: String,
    pub kms_key_id: Option<String>,
    pub secrets_prefix: String,
}

/// Where neither the file nor `GOLOS_AWS_REGION` nor `AWS_REGION` names a region.
pub const DEFAULT_AWS_REGION: &str = "us-east-1";

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            table: "golos".to_owned(),
            queue_prefix: "golos".to_owned(),
            kms_key_id: None,
            secrets_prefix: "golos".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `None` until loaded: then JSON in Lambda/ECS, pretty elsewhere, unless set.
    pub log_format: Option<LogFormat>,
    /// tracing `EnvFilter` directives (`RUST_LOG`); `None` is `info`.
    pub log_filter: Option<String>,
}

impl TelemetrySettings {
    pub fn format(&self) -> LogFormat {
        self.log_format.unwrap_or(LogFormat::Pretty)
    }
}

/// The flags of `golos serve` (and of `reconcile` and `init-secrets`, which open the same
/// backend): the top layer. Each one's variable is read by [`Settings::load`], under it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// TOML settings file, under the environment and these flags [env: GOLOS_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed at start) [env: GOLOS_LISTEN]
    /// [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A second listener for the operator's routes (`/ready`, `/metrics`), e.g.
    /// 10.0.0.5:9464 on the private network; they then leave the public listener. Without
    /// it, `/metrics` on the public listener needs the operator key [env: GOLOS_OPS_LISTEN]
    #[arg(long)]
    pub ops_listen: Option<SocketAddr>,
    /// Where the embedded backend keeps its database, key file and secrets
    /// [env: GOLOS_DATA_DIR] [default: .golos]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// [env: GOLOS_BACKEND] [default: local]
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Take the client address from X-Forwarded-For (only behind a trusted proxy)
    /// [env: GOLOS_TRUST_FORWARDED_FOR=true|false]
    #[arg(long)]
    pub trust_forwarded_for: bool,
    /// After SIGTERM, how long live calls may go on before they are ended (`forced_shutdown`)
    /// [env: GOLOS_DRAIN_SECS] [default: 600]
    #[arg(long)]
    pub drain_secs: Option<u64>,
    /// Engine threads for live calls (default: one per core) [env: GOLOS_SHARDS]
    #[arg(long)]
    pub shards: Option<usize>,
    /// Folder of pre-recorded clips for agents with a `prerecorded` TTS tier
    /// [env: GOLOS_CLIPS_DIR]
    #[arg(long)]
    pub clips_dir: Option<PathBuf>,
    /// Call sockets (`/ws/calls` and `/ws/twilio` together) this worker holds; more are
    /// answered 503. 0: no cap [env: GOLOS_WS_MAX_CONNECTIONS] [default: 2000]
    #[arg(long)]
    pub ws_max_connections: Option<usize>,
    /// Call sockets one client address may hold on `/ws/calls`. 0: no cap
    /// [env: GOLOS_WS_MAX_CONNECTIONS_PER_IP] [default: 20]
    #[arg(long)]
    pub ws_max_connections_per_ip: Option<usize>,
    /// Call sockets one client address may hold on `/ws/twilio`. 0: no cap
    /// [env: GOLOS_TWILIO_MAX_CONNECTIONS_PER_IP] [default: 200]
    #[arg(long)]
    pub twilio_max_connections_per_ip: Option<usize>,
    /// Take phone calls over SIP on this address, e.g. 0.0.0.0:5060 (UDP and TCP); unset:
    /// no SIP [env: GOLOS_SIP_LISTEN]
    #[arg(long)]
    pub sip_listen: Option<SocketAddr>,
    /// UDP ports for the calls' RTP, one a call [env: GOLOS_RTP_PORTS] [default: 20000-20999]
    #[arg(long)]
    pub rtp_ports: Option<PortRange>,
    /// The address trunks send RTP to, written in our SDP (default: the SIP listen address)
    /// [env: GOLOS_SIP_PUBLIC_ADDRESS]
    #[arg(long)]
    pub sip_public_address: Option<IpAddr>,
}

impl Flags {
    fn apply(&self, settings: &mut Settings) {
        let (server, worker) = (&mut settings.server, &mut settings.worker);
        if let Some(listen) = self.listen {
            server.listen = listen;
        }
        if self.ops_listen.is_some() {
            server.ops_listen = self.ops_listen;
        }
        if let Some(dir) = &self.data_dir {
            server.data_dir.clone_from(dir);
        }
        if let Some(backend) = self.backend {
            server.backend = backend;
        }
        // A switch: present turns it on; absent leaves the layers below to decide.
        if self.trust_forwarded_for {
            server.trust_forwarded_for = true;
        }
        if let Some(secs) = self.drain_secs {
            worker.drain_secs = secs;
        }
        if self.shards.is_some() {
            worker.shards = self.shards;
        }
        if self.clips_dir.is_some() {
            worker.clips_dir.clone_from(&self.clips_dir);
        }
        if let Some(max) = self.ws_max_connections {
            worker.ws_max_connections = max;
        }
        if let Some(max) = self.ws_max_connections_per_ip {
            worker.ws_max_connections_per_ip = max;
        }
        if let Some(max) = self.twilio_max_connections_per_ip {
            worker.twilio_max_connections_per_ip = max;
        }
        let sip = &mut settings.sip;
        if self.sip_listen.is_some() {
            sip.listen = self.sip_listen;
        }
        if let Some(range) = self.rtp_ports {
            sip.rtp_ports = range;
        }
        if self.sip_public_address.is_some() {
            sip.public_address = self.sip_public_address;
        }
    }
}

/// A snapshot of the process environment: loading is then a function of its inputs, and
/// tests give it variables without touching the process's own.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The variables of this process. One that is not UTF-8 counts as unset, as
    /// `std::env::var` made it before.
    pub fn from_process() -> Self {
        Self(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn non_blank(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// Sets one option from its variable's text; the error follows "NAME: ".
type Setter = fn(&mut Settings, &str) -> Result<(), String>;

/// Every `GOLOS_*` option variable but the AWS ones. A blank value is a value (an error for
/// a number or an address, as the flags' parser made it before; an empty list for a list).
const VARS: &[(&str, Setter)] = &[
    ("GOLOS_LISTEN", |s, v| assign(&mut s.server.listen, parse(v, "an address like 127.0.0.1:8080"))),
    ("GOLOS_OPS_LISTEN", |s, v| assign(&mut s.server.ops_listen, parse(v, "an address like 10.0.0.5:9464").map(Some))),
    ("GOLOS_DATA_DIR", |s, v| assign(&mut s.server.data_dir, path(v))),
    ("GOLOS_BACKEND", |s, v| {
        assign(
            &mut s.server.backend,
            clap::ValueEnum::from_str(v, false).map_err(|_| format!("local or aws, not {v:?}")),
        )
    }),
    ("GOLOS_TRUST_FORWARDED_FOR", |s, v| assign(&mut s.server.trust_forwarded_for, parse(v, "true or false"))),
    ("GOLOS_DRAIN_SECS", |s, v| assign(&mut s.worker.drain_secs, parse(v, "whole seconds"))),
    ("GOLOS_SCALE_IN_PROTECTION_MINUTES", |s, v| {
        assign(&mut s.worker.scale_in_protection_minutes, parse(v, PROTECTION_MINUTES))
    }),
    ("GOLOS_SHARDS", |s, v| assign(&mut s.worker.shards, parse(v, "a number of threads").map(Some))),
    ("GOLOS_CLIPS_DIR", |s, v| assign(&mut s.worker.clips_dir, path(v).map(Some))),
    ("GOLOS_WS_MAX_CONNECTIONS", |s, v| {
        assign(&mut s.worker.ws_max_connections, parse(v, "a whole number (0: no cap)"))
    }),
    ("GOLOS_WS_MAX_CONNECTIONS_PER_IP", |s, v| {
        assign(&mut s.worker.ws_max_connections_per_ip, parse(v, "a whole number (0: no cap)"))
    }),
    ("GOLOS_TWILIO_MAX_CONNECTIONS_PER_IP", |s, v| {
        assign(&mut s.worker.twilio_max_connections_per_ip, parse(v, "a whole number (0: no cap)"))
    }),
    ("GOLOS_SIP_LISTEN", |s, v| assign(&mut s.sip.listen, parse(v, "an address like 0.0.0.0:5060").map(Some))),
    ("GOLOS_RTP_PORTS", |s, v| assign(&mut s.sip.rtp_ports, v.parse())),
    ("GOLOS_SIP_PUBLIC_ADDRESS", |s, v| {
        assign(&mut s.sip.public_address, parse(v, "an IP address like 203.0.113.7").map(Some))
    }),
    ("GOLOS_SIP_PROBE_EVERY_MS", |s, v| assign(&mut s.sip.probe_every_ms, parse(v, PROBE_EVERY))),
    ("GOLOS_SIP_BREAKER_OPEN_MS", |s, v| assign(&mut s.sip.breaker_open_ms, parse(v, BREAKER_OPEN))),
    ("GOLOS_SIP_BREAKER_FAILURES_TO_OPEN", |s, v| assign(&mut s.sip.breaker_failures_to_open, parse(v, AT_LEAST_ONE))),
    ("GOLOS_SIP_BREAKER_PROBES_TO_CLOSE", |s, v| assign(&mut s.sip.breaker_probes_to_close, parse(v, AT_LEAST_ONE))),
    ("GOLOS_RTP_MEDIA_TIMEOUT_SECS", |s, v| assign(&mut s.sip.rtp_media_timeout_secs, parse(v, MEDIA_TIMEOUT))),
    ("GOLOS_YOOKASSA_API_URL", |s, v| assign(&mut s.control.yookassa_api_url, Ok(v.to_owned()))),
    ("GOLOS_YOOKASSA_ALLOWED_IPS", |s, v| assign(&mut s.control.yookassa_allowed_ips, Ok(list(v)))),
    ("GOLOS_EGRESS_ALLOW", |s, v| assign(&mut s.control.egress_allow, Ok(list(v)))),
    ("GOLOS_LEASE_TTL_MS", |s, v| assign(&mut s.control.lease_ttl_ms, parse(v, LEASE_TTL))),
    ("GOLOS_SWEEP_INTERVAL_MS", |s, v| assign(&mut s.control.sweep_interval_ms, parse(v, SWEEP_INTERVAL))),
    ("GOLOS_HOLD_MAX_WAITERS_PER_ORG", |s, v| assign(&mut s.control.hold_max_waiters_per_org, parse(v, HOLD_MAX))),
    ("GOLOS_RECONCILE_CALL_WINDOW_DAYS", |s, v| {
        assign(&mut s.control.reconcile_call_window_days, parse(v, CALL_WINDOW))
    }),
    ("GOLOS_AUTH_FAILURES_PER_IP_PER_MINUTE", |s, v| {
        assign(&mut s.control.auth_failures_per_ip_per_minute, parse(v, AUTH_FAILURES))
    }),
    ("GOLOS_WEBHOOK_TIMEOUT_MS", |s, v| assign(&mut s.control.webhook_timeout_ms, parse(v, WEBHOOK_TIMEOUT))),
    ("GOLOS_WEBHOOK_MAX_ATTEMPTS", |s, v| assign(&mut s.control.webhook_max_attempts, parse(v, WEBHOOK_ATTEMPTS))),
    ("GOLOS_WEBHOOK_RETRY_UNIT_MS", |s, v| assign(&mut s.control.webhook_retry_unit_ms, parse(v, WEBHOOK_RETRY_UNIT))),
    ("GOLOS_WEBHOOK_DISABLE_AFTER_FAILURES", |s, v| {
        assign(&mut s.control.webhook_disable_after_failures, parse(v, AT_LEAST_ONE))
    }),
    ("GOLOS_WEBHOOK_CONSUMERS", |s, v| assign(&mut s.control.webhook_consumers, parse(v, WEBHOOK_CONSUMERS))),
    // Anything else leaves the format to the layers below (and, at the bottom, to where the
    // process runs), as it always has: a typo must not stop a deployment's logging.
    ("GOLOS_LOG_FORMAT", |s, v| {
        match v {
            "json" => s.telemetry.log_format = Some(LogFormat::Json),
            "pretty" => s.telemetry.log_format = Some(LogFormat::Pretty),
            _ => {}
        }
        Ok(())
    }),
    ("RUST_LOG", |s, v| assign(&mut s.telemetry.log_filter, Ok(Some(v.to_owned())))),
];

/// The AWS backend's variables. A blank one counts as unset, so an empty `GOLOS_KMS_KEY_ID`
/// means "no key" rather than a key named "" (as `AwsConfig::from_env` read them).
const AWS_VARS: &[(&str, Setter)] = &[
    ("GOLOS_AWS_REGION", |s, v| assign(&mut s.aws.region, Ok(Some(v.to_owned())))),
    ("GOLOS_AWS_ENDPOINT_URL", |s, v| assign(&mut s.aws.endpoint_url, Ok(Some(v.to_owned())))),
    ("GOLOS_TABLE", |s, v| assign(&mut s.aws.table, Ok(v.to_owned()))),
    ("GOLOS_QUEUE_PREFIX", |s, v| assign(&mut s.aws.queue_prefix, Ok(v.to_owned()))),
    ("GOLOS_KMS_KEY_ID", |s, v| assign(&mut s.aws.kms_key_id, Ok(Some(v.to_owned())))),
    ("GOLOS_SECRETS_PREFIX", |s, v| assign(&mut s.aws.secrets_prefix, Ok(v.to_owned()))),
];

const LEASE_TTL: &str = "milliseconds, at least 1000";
const SWEEP_INTERVAL: &str = "milliseconds, at least 100";
const HOLD_MAX: &str = "a whole number (0: no hold queue)";
const CALL_WINDOW: &str = "whole days, 1 to 3650";
const AUTH_FAILURES: &str = "a whole number, at least 1";
const WEBHOOK_TIMEOUT: &str = "milliseconds, 100 to 30000";
const WEBHOOK_ATTEMPTS: &str = "a whole number, 1 to 10";
const WEBHOOK_RETRY_UNIT: &str = "milliseconds, 10 to 60000";
const WEBHOOK_CONSUMERS: &str = "a whole number, 1 to 64";

fn duration_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
const PROBE_EVERY: &str = "milliseconds, at least 100";
const BREAKER_OPEN: &str = "milliseconds, at least 100";
const AT_LEAST_ONE: &str = "a whole number, at least 1";
const PROTECTION_MINUTES: &str = "whole minutes, 1 to 2880";
const MEDIA_TIMEOUT: &str = "whole seconds, at least 1";

fn assign<T>(slot: &mut T, value: Result<T, String>) -> Result<(), String> {
    *slot = value?;
    Ok(())
}

fn parse<T: FromStr>(value: &str, expected: &str) -> Result<T, String>
where
    T::Err: Display,
{
    value.parse().map_err(|e| format!("{expected}, not {value:?} ({e})"))
}

fn path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("a path, not empty".to_owned());
    }
    Ok(PathBuf::from(value))
}

/// Kept entry by entry: the parsers split on commas again, so `join(",")` gives them back
/// exactly the variable's text.
fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::to_owned).collect()
}

impl Settings {
    /// The settings of this process: defaults, then the file (`flags.config`, else
    /// `GOLOS_CONFIG`), then `env`, then `flags`. Values that do not parse or are out of
    /// range are an error naming their variable. The AWS section is checked only when used
    /// ([`Settings::aws_config`]): a local deployment does not care about it.
    pub fn load(flags: &Flags, env: &Env) -> anyhow::Result<Self> {
        let file = flags.config.as_deref().or_else(|| env.non_blank("GOLOS_CONFIG").map(Path::new));
        let mut settings = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        for (name, set) in VARS {
            if let Some(value) = env.get(name) {
                set(&mut settings, value).map_err(|e| anyhow!("{name}: {e}"))?;
            }
        }
        for (name, set) in AWS_VARS {
            if let Some(value) = env.non_blank(name) {
                set(&mut settings, value).map_err(|e| anyhow!("{name}: {e}"))?;
            }
        }
        flags.apply(&mut settings);
        // Defaults that depend on where the process runs: they lose to every layer, so they
        // are filled in only where none of them set a value.
        if settings.aws.region.is_none() {
            settings.aws.region = env.non_blank("AWS_REGION").map(str::to_owned);
        }
        settings.worker.ecs_agent_uri = env.non_blank("ECS_AGENT_URI").map(str::to_owned);
        let minutes = settings.worker.scale_in_protection_minutes;
        if !(1..=2_880).contains(&minutes) {
            return Err(anyhow!("GOLOS_SCALE_IN_PROTECTION_MINUTES: {PROTECTION_MINUTES}, not {minutes}"));
        }
        if settings.telemetry.log_format.is_none() {
            let in_cloud = ["AWS_LAMBDA_FUNCTION_NAME", "ECS_CONTAINER_METADATA_URI_V4"]
                .iter()
                .any(|name| env.get(name).is_some());
            settings.telemetry.log_format = Some(if in_cloud { LogFormat::Json } else { LogFormat::Pretty });
        }
        settings.control_config()?;
        settings.sip.media_address()?;
        settings.sip.check_breaker()?;
        settings.sip.media_timeout()?;
        Ok(settings)
    }

    /// [`Settings::load`] for a process without flags (the Lambda functions).
    pub fn from_environment() -> anyhow::Result<Self> {
        Self::load(&Flags::default(), &Env::from_process())
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the settings file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("the settings file {}", path.display()))
    }

    /// The control plane's configuration; each value checked, an error naming its variable.
    pub fn control_config(&self) -> anyhow::Result<ControlConfig> {
        let c = &self.control;
        let check = |ok: bool, name: &str, expected: &str, value: &dyn Display| {
            if ok {
                Ok(())
            } else {
                Err(anyhow!("{name}: {expected}, not {value}"))
            }
        };
        check(c.lease_ttl_ms >= 1_000, "GOLOS_LEASE_TTL_MS", LEASE_TTL, &c.lease_ttl_ms)?;
        check(c.sweep_interval_ms >= 100, "GOLOS_SWEEP_INTERVAL_MS", SWEEP_INTERVAL, &c.sweep_interval_ms)?;
        check(
            (1..=3_650).contains(&c.reconcile_call_window_days),
            "GOLOS_RECONCILE_CALL_WINDOW_DAYS",
            CALL_WINDOW,
            &c.reconcile_call_window_days,
        )?;
        check(
            c.auth_failures_per_ip_per_minute >= 1,
            "GOLOS_AUTH_FAILURES_PER_IP_PER_MINUTE",
            AUTH_FAILURES,
            &c.auth_failures_per_ip_per_minute,
        )?;
        check(
            (100..=30_000).contains(&c.webhook_timeout_ms),
            "GOLOS_WEBHOOK_TIMEOUT_MS",
            WEBHOOK_TIMEOUT,
            &c.webhook_timeout_ms,
        )?;
        check(
            (1..=10).contains(&c.webhook_max_attempts),
            "GOLOS_WEBHOOK_MAX_ATTEMPTS",
            WEBHOOK_ATTEMPTS,
            &c.webhook_max_attempts,
        )?;
        check(
            (10..=60_000).contains(&c.webhook_retry_unit_ms),
            "GOLOS_WEBHOOK_RETRY_UNIT_MS",
            WEBHOOK_RETRY_UNIT,
            &c.webhook_retry_unit_ms,
        )?;
        check(
            c.webhook_disable_after_failures >= 1,
            "GOLOS_WEBHOOK_DISABLE_AFTER_FAILURES",
            AT_LEAST_ONE,
            &c.webhook_disable_after_failures,
        )?;
        check(
            (1..=64).contains(&c.webhook_consumers),
            "GOLOS_WEBHOOK_CONSUMERS",
            WEBHOOK_CONSUMERS,
            &c.webhook_consumers,
        )?;
        let webhooks = golos_control::webhook_delivery::DeliveryConfig {
            timeout: std::time::Duration::from_millis(c.webhook_timeout_ms),
            max_attempts: c.webhook_max_attempts,
            retry_unit: std::time::Duration::from_millis(c.webhook_retry_unit_ms),
            disable_after_failures: c.webhook_disable_after_failures,
            consumers: c.webhook_consumers,
            ..golos_control::webhook_delivery::DeliveryConfig::default()
        };
        let mut config = ControlConfig {
            webhooks,
            trust_forwarded_for: self.server.trust_forwarded_for,
            lease_ttl_ms: c.lease_ttl_ms,
            sweep_interval_ms: c.sweep_interval_ms,
            hold_max_waiters_per_org: c.hold_max_waiters_per_org,
            reconcile_call_window_days: c.reconcile_call_window_days,
            auth_failures_per_ip_per_minute: c.auth_failures_per_ip_per_minute,
            egress: golos_egress::EgressAllowlist::parse(&c.egress_allow.join(",")).context("GOLOS_EGRESS_ALLOW")?,
            ..ControlConfig::default()
        };
        config.yookassa.api_base.clone_from(&c.yookassa_api_url);
        config.yookassa.allowed_networks = golos_control::payments::parse_networks(&c.yookassa_allowed_ips.join(","))
            .map_err(|e| anyhow!("GOLOS_YOOKASSA_ALLOWED_IPS: {e}"))?;
        Ok(config)
    }

    /// The AWS backend's configuration, checked (table and queue names, endpoint URL).
    pub fn aws_config(&self) -> anyhow::Result<golos_aws::AwsConfig> {
        let aws = &self.aws;
        let config = golos_aws::AwsConfig {
            region: aws.region.clone().unwrap_or_else(|| DEFAULT_AWS_REGION.to_owned()),
            endpoint_url: aws.endpoint_url.clone(),
            table_name: aws.table.clone(),
            queue_prefix: aws.queue_prefix.clone(),
            kms_key_id: aws.kms_key_id.clone(),
            secrets_prefix: aws.secrets_prefix.clone(),
        };
        config.validate().context("reading AWS configuration")?;
        Ok(config)
    }

    /// The backend `server.backend` names, with its configuration.
    pub fn backend(&self) -> anyhow::Result<crate::Backend> {
        Ok(match self.server.backend {
            BackendKind::Local => crate::Backend::Local { data_dir: self.server.data_dir.clone() },
            BackendKind::Aws => crate::Backend::Aws(self.aws_config()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().copied().collect()
    }

    fn load(flags: &Flags, vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::load(flags, &env(vars))
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("golos.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn each_layer_overrides_the_one_below() {
        let (_dir, path) = file(
            "[control]\nlease_ttl_ms = 40000\nsweep_interval_ms = 2000\n\
             [worker]\nshards = 2\ndrain_secs = 60\n",
        );
        let vars =
            [("GOLOS_CONFIG", path.to_str().unwrap()), ("GOLOS_SWEEP_INTERVAL_MS", "3000"), ("GOLOS_DRAIN_SECS", "30")];
        let settings = load(&Flags { drain_secs: Some(5), ..Flags::default() }, &vars).unwrap();
        assert_eq!(settings.control.hold_max_waiters_per_org, 100, "default");
        assert_eq!(settings.control.lease_ttl_ms, 40_000, "file over default");
        assert_eq!(settings.worker.shards, Some(2), "file over default");
        assert_eq!(settings.control.sweep_interval_ms, 3_000, "environment over file");
        assert_eq!(settings.worker.drain_secs, 5, "flag over environment over file");
    }

    #[test]
    fn the_config_flag_wins_over_golos_config() {
        let (_a, from_env) = file("[worker]\ndrain_secs = 1\n");
        let (_b, from_flag) = file("[worker]\ndrain_secs = 2\n");
        let flags = Flags { config: Some(from_flag), ..Flags::default() };
        let settings = load(&flags, &[("GOLOS_CONFIG", from_env.to_str().unwrap())]).unwrap();
        assert_eq!(settings.worker.drain_secs, 2);
    }

    #[test]
    fn without_anything_the_defaults_are_the_control_planes() {
        let settings = load(&Flags::default(), &[]).unwrap();
        assert_eq!(
            format!("{:?}", settings.control_config().unwrap()),
            format!("{:?}", ControlConfig::default()),
            "the defaults are ControlConfig's own"
        );
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.server.data_dir, Path::new(".golos"));
        assert_eq!(settings.server.backend, BackendKind::Local);
        assert_eq!(settings.telemetry.format(), LogFormat::Pretty);
        assert_eq!(settings.aws_config().unwrap().region, "us-east-1");
    }

    #[test]
    fn aws_region_is_the_fallback_below_the_file_and_golos_aws_region() {
        let region = |vars: &[(&str, &str)]| load(&Flags::default(), vars).unwrap().aws_config().unwrap().region;
        assert_eq!(region(&[("AWS_REGION", "eu-west-1")]), "eu-west-1");
        let (_dir, path) = file("[aws]\nregion = \"eu-north-1\"\n");
        let path = path.to_str().unwrap();
        assert_eq!(region(&[("AWS_REGION", "eu-west-1"), ("GOLOS_CONFIG", path)]), "eu-north-1");
        assert_eq!(
            region(&[("AWS_REGION", "eu-west-1"), ("GOLOS_CONFIG", path), ("GOLOS_AWS_REGION", "ap-south-1")]),
            "ap-south-1"
        );
    }

    #[test]
    fn a_blank_aws_variable_is_unset_and_a_blank_flag_variable_an_error() {
        let settings = load(&Flags::default(), &[("GOLOS_KMS_KEY_ID", " "), ("GOLOS_TABLE", "")]).unwrap();
        assert_eq!((settings.aws.kms_key_id, settings.aws.table.as_str()), (None, "golos"));
        let err = load(&Flags::default(), &[("GOLOS_SHARDS", "")]).unwrap_err();
        assert!(err.to_string().starts_with("GOLOS_SHARDS: "), "{err:#}");
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (name, value) in [
            ("GOLOS_LEASE_TTL_MS", "500"),
            ("GOLOS_LEASE_TTL_MS", "soon"),
            ("GOLOS_SWEEP_INTERVAL_MS", "99"),
            ("GOLOS_HOLD_MAX_WAITERS_PER_ORG", "-1"),
            ("GOLOS_RECONCILE_CALL_WINDOW_DAYS", "0"),
            ("GOLOS_AUTH_FAILURES_PER_IP_PER_MINUTE", "0"),
            ("GOLOS_EGRESS_ALLOW", "not a host!"),
            ("GOLOS_YOOKASSA_ALLOWED_IPS", "10.0.0.0/99"),
            ("GOLOS_LISTEN", "localhost"),
            ("GOLOS_BACKEND", "sqlite"),
            ("GOLOS_TRUST_FORWARDED_FOR", "1"),
            ("GOLOS_SIP_PROBE_EVERY_MS", "99"),
            ("GOLOS_SIP_PROBE_EVERY_MS", "often"),
            ("GOLOS_SIP_BREAKER_OPEN_MS", "0"),
            ("GOLOS_SIP_BREAKER_FAILURES_TO_OPEN", "0"),
            ("GOLOS_SIP_BREAKER_PROBES_TO_CLOSE", "-3"),
        ] {
            let err = load(&Flags::default(), &[(name, value)]).expect_err(name);
            assert!(format!("{err:#}").starts_with(&format!("{name}: ")), "{name}={value}: {err:#}");
        }
        let err = load(&Flags::default(), &[("GOLOS_TABLE", "x")]).unwrap().aws_config().unwrap_err();
        assert!(format!("{err:#}").contains("invalid table name"), "{err:#}");
    }

    #[test]
    fn a_value_from_the_file_is_checked_like_its_variable() {
        let (_dir, path) = file("[control]\nlease_ttl_ms = 10\n");
        let err = load(&Flags::default(), &[("GOLOS_CONFIG", path.to_str().unwrap())]).unwrap_err();
        assert!(format!("{err:#}").starts_with("GOLOS_LEASE_TTL_MS: "), "{err:#}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let (_dir, path) = file("[server]\nlisten_on = \"0.0.0.0:80\"\n");
        let err = load(&Flags::default(), &[("GOLOS_CONFIG", path.to_str().unwrap())]).unwrap_err();
        assert!(format!("{err:#}").contains("listen_on"), "{err:#}");
    }

    #[test]
    fn lists_reach_their_parsers_as_the_variable_wrote_them() {
        let vars =
            [("GOLOS_EGRESS_ALLOW", "127.0.0.1/32, llm.internal,localhost:11434"), ("GOLOS_YOOKASSA_ALLOWED_IPS", "")];
        let config = load(&Flags::default(), &vars).unwrap().control_config().unwrap();
        let expected = golos_egress::EgressAllowlist::parse("127.0.0.1/32, llm.internal,localhost:11434").unwrap();
        assert_eq!(config.egress, expected);
        assert!(config.yookassa.allowed_networks.is_empty(), "an empty variable replaces the published list");
    }

    #[test]
    fn the_log_format_follows_the_runtime_unless_set() {
        let format = |vars: &[(&str, &str)]| load(&Flags::default(), vars).unwrap().telemetry.format();
        assert_eq!(format(&[("AWS_LAMBDA_FUNCTION_NAME", "golos-api")]), LogFormat::Json);
        assert_eq!(format(&[("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4")]), LogFormat::Json);
        assert_eq!(
            format(&[("ECS_CONTAINER_METADATA_URI_V4", "x"), ("GOLOS_LOG_FORMAT", "pretty")]),
            LogFormat::Pretty
        );
        assert_eq!(format(&[("GOLOS_LOG_FORMAT", "json")]), LogFormat::Json);
        assert_eq!(format(&[("GOLOS_LOG_FORMAT", "yaml")]), LogFormat::Pretty, "unknown: as if unset");
    }

    #[test]
    fn sip_is_off_by_default_and_layers_like_the_rest() {
        let settings = load(&Flags::default(), &[]).unwrap();
        assert_eq!(settings.sip.listen, None);
        assert_eq!(settings.sip.media_address().unwrap(), None);
        let (_dir, path) = file("[sip]\nlisten = \"127.0.0.1:5060\"\nrtp_ports = \"30000-30099\"\n");
        let vars = [("GOLOS_CONFIG", path.to_str().unwrap()), ("GOLOS_RTP_PORTS", "31000-31009")];
        let settings = load(&Flags::default(), &vars).unwrap();
        assert_eq!(settings.sip.rtp_ports, PortRange { first: 31_000, last: 31_009 });
        assert_eq!(settings.sip.media_address().unwrap(), Some(IpAddr::from([127, 0, 0, 1])));
        let flags = Flags { sip_public_address: Some(IpAddr::from([203, 0, 113, 7])), ..Flags::default() };
        let settings = load(&flags, &vars).unwrap();
        assert_eq!(settings.sip.media_address().unwrap(), Some(IpAddr::from([203, 0, 113, 7])));
    }

    #[test]
    fn the_trunk_breakers_timings_layer_like_the_rest() {
        let defaults = load(&Flags::default(), &[]).unwrap().sip;
        assert_eq!(
            (
                defaults.probe_every_ms,
                defaults.breaker_open_ms,
                defaults.breaker_failures_to_open,
                defaults.breaker_probes_to_close
            ),
            (30_000, 30_000, 5, 3),
            "the reviews' numbers"
        );
        let (_dir, path) = file("[sip]\nprobe_every_ms = 1000\nbreaker_open_ms = 5000\nbreaker_probes_to_close = 2\n");
        let vars = [("GOLOS_CONFIG", path.to_str().unwrap()), ("GOLOS_SIP_PROBE_EVERY_MS", "200")];
        let sip = load(&Flags::default(), &vars).unwrap().sip;
        assert_eq!((sip.probe_every_ms, sip.breaker_open_ms, sip.breaker_probes_to_close), (200, 5_000, 2));
        let (_dir, path) = file("[sip]\nbreaker_failures_to_open = 0\n");
        let err = load(&Flags::default(), &[("GOLOS_CONFIG", path.to_str().unwrap())]).unwrap_err();
        assert!(format!("{err:#}").starts_with("GOLOS_SIP_BREAKER_FAILURES_TO_OPEN: "), "{err:#}");
    }

    #[test]
    fn the_rtp_media_timeout_is_30_s_unless_set_and_never_0() {
        let settings = load(&Flags::default(), &[]).unwrap();
        assert_eq!(settings.sip.media_timeout().unwrap(), std::time::Duration::from_secs(30));
        let settings = load(&Flags::default(), &[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", "2")]).unwrap();
        assert_eq!(settings.sip.media_timeout().unwrap(), std::time::Duration::from_secs(2));
        for bad in ["0", "-1", "two"] {
            let err = load(&Flags::default(), &[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", bad)]).unwrap_err();
            assert!(format!("{err:#}").starts_with("GOLOS_RTP_MEDIA_TIMEOUT_SECS: "), "{bad}: {err:#}");
        }
    }

    #[test]
    fn sip_on_an_unspecified_address_needs_a_public_one() {
        let err = load(&Flags::default(), &[("GOLOS_SIP_LISTEN", "0.0.0.0:5060")]).unwrap_err();
        assert!(format!("{err:#}").starts_with("GOLOS_SIP_PUBLIC_ADDRESS: "), "{err:#}");
        let err = load(&Flags::default(), &[("GOLOS_RTP_PORTS", "20999-20000")]).unwrap_err();
        assert!(format!("{err:#}").starts_with("GOLOS_RTP_PORTS: "), "{err:#}");
    }

    #[test]
    fn the_ecs_agent_uri_and_the_protection_length() {
        let settings = load(&Flags::default(), &[]).unwrap();
        assert_eq!((settings.worker.ecs_agent_uri, settings.worker.scale_in_protection_minutes), (None, 15));
        let vars = [("ECS_AGENT_URI", "http://169.254.170.2/api/abc"), ("GOLOS_SCALE_IN_PROTECTION_MINUTES", "60")];
        let settings = load(&Flags::default(), &vars).unwrap();
        assert_eq!(settings.worker.ecs_agent_uri.as_deref(), Some("http://169.254.170.2/api/abc"));
        assert_eq!(settings.worker.scale_in_protection_minutes, 60);
        for bad in ["0", "2881", "soon"] {
            let err = load(&Flags::default(), &[("GOLOS_SCALE_IN_PROTECTION_MINUTES", bad)]).unwrap_err();
            assert!(format!("{err:#}").starts_with("GOLOS_SCALE_IN_PROTECTION_MINUTES: "), "{err:#}");
        }
        let (_dir, path) = file("[worker]\necs_agent_uri = \"http://x\"\n");
        assert!(load(&Flags::default(), &[("GOLOS_CONFIG", path.to_str().unwrap())]).is_err(), "not a file key");
    }

    /// The example in docs/configuration.md is a file golos accepts.
    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("../../../docs/configuration.md");
        let example = doc.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a toml example");
        let (_dir, path) = file(example);
        let settings = load(&Flags::default(), &[("GOLOS_CONFIG", path.to_str().unwrap())]).unwrap();
        settings.aws_config().unwrap();
    }
}
