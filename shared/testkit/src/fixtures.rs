//! Fixtures shared by the contract suites: ids, orgs, agents, events, a deterministic PRNG.

use golos_domain::agent::{AgentConfig, AgentLimits, FaqEntry, ProviderChains, ToolSpec, TtsKind, VoiceConfig};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::plans::Plan;
use golos_domain::{AgentId, ApiKeyId, CallId, Kopecks, OrgId, Timestamp};
use golos_ports::Org;

/// A fixed instant (2026-11-22T00:00:00Z) so stored times are predictable.
pub const T0: Timestamp = Timestamp::from_millis(1_795_305_600_000);

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

pub fn org_id() -> OrgId {
    OrgId::with_suffix(&suffix()).expect("valid id")
}

pub fn agent_id() -> AgentId {
    AgentId::with_suffix(&suffix()).expect("valid id")
}

pub fn key_id() -> ApiKeyId {
    ApiKeyId::with_suffix(&suffix()).expect("valid id")
}

pub fn call_id() -> CallId {
    CallId::with_suffix(&suffix()).expect("valid id")
}

pub fn org(id: &OrgId) -> Org {
    Org {
        id: id.clone(),
        name: "ООО «Ромашка»".into(),
        plan: Plan::Start,
        quotas: Plan::Start.default_quotas(),
        settings: serde_json::json!({"webhook_url": "https://example.test/hook"}),
        disabled: false,
        created_at: T0,
        version: 1,
    }
}

/// A valid FAQ agent, as the demo creates.
pub fn agent_config(name: &str) -> AgentConfig {
    AgentConfig {
        name: name.into(),
        system_prompt: "You are the friendly host of a small café.".into(),
        greeting: Some("Hello, Café Romashka!".into()),
        language: "en-US".into(),
        voice: VoiceConfig { provider: TtsKind::EspeakNg, voice_id: "en-us".into() },
        providers: ProviderChains::default(),
        tools: vec![ToolSpec::EndCall],
        faq: vec![FaqEntry { questions: vec!["when are you open".into()], answer: "From nine to nine.".into() }],
        limits: AgentLimits::default(),
        priority: golos_domain::agent::DEFAULT_PRIORITY,
        enabled: true,
    }
}

pub fn credit(payment_id: &str, kopecks: i64) -> LedgerEventKind {
    LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Yookassa,
        payment_id: payment_id.into(),
        amount: Kopecks::new(kopecks),
    }
}

pub fn call_debit(call: &str, duration_secs: u64, rate: i64) -> LedgerEventKind {
    LedgerEventKind::call_debit(CallId::parse(call).expect("valid call id"), duration_secs, Kopecks::new(rate))
        .expect("valid debit")
}

/// xorshift64*: deterministic, dependency-free randomness for workload generation.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn trunk_id() -> golos_domain::TrunkId {
    golos_domain::TrunkId::with_suffix(&suffix()).expect("valid id")
}

pub fn webhook_endpoint_id() -> golos_domain::WebhookEndpointId {
    golos_domain::WebhookEndpointId::with_suffix(&suffix()).expect("valid id")
}

pub fn webhook_delivery_id() -> golos_domain::WebhookDeliveryId {
    golos_domain::WebhookDeliveryId::with_suffix(&suffix()).expect("valid id")
}
