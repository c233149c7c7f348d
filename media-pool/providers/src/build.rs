//! Chains from an agent's configuration: `golos_domain::agent::ProviderChains` names the
//! tiers, the caller supplies the organisation's credentials they name and the platform's
//! own provider keys, and tiers that cannot be built here are reported, not fatal.
//!
//! Which key a tier uses: the org credential it names; without one, the platform's key for
//! that provider, and only when the tier keeps the provider's default endpoint, so a tenant
//! can never have the platform's key sent to a host of its choosing.

use crate::anthropic::{AnthropicConfig, AnthropicLlm, ANTHROPIC_BASE_URL, ANTHROPIC_DEFAULT_MODEL};
use crate::canned::CannedLlm;
use crate::chain::{Breakers, ChainConfig, LlmChain, SttChain, TtsChain};
use crate::clips::ClipLibrary;
use crate::deepgram::{DeepgramConfig, DeepgramStt, DEEPGRAM_BASE_URL};
use crate::elevenlabs::{ElevenLabsConfig, ElevenLabsTts, ELEVENLABS_BASE_URL, ELEVENLABS_DEFAULT_MODEL};
use crate::espeak::EspeakTts;
use crate::google_tts::{GoogleTts, GoogleTtsConfig, GOOGLE_TTS_BASE_URL};
use crate::openai::{OpenAiConfig, OpenAiLlm, OPENAI_BASE_URL, OPENAI_DEFAULT_MODEL};
use crate::pocketsphinx::PocketsphinxStt;
use crate::polly::{PollyConfig, PollyTts};
use crate::{LlmProvider, SttProvider, TtsProvider};
use golos_domain::agent::{AgentConfig, LlmKind, ProviderRef, SttKind, TtsKind};
use golos_egress::net::EgressClient;
use golos_egress::{EgressAllowlist, Protocol};
use golos_ports::SecretString;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// llama.cpp's `llama-server` default; vLLM and Ollama tiers name their `endpoint`.
pub const LOCAL_OPENAI_BASE_URL: &str = "http://127.0.0.1:8080/v1";
/// ElevenLabs' "Rachel", for an ElevenLabs tier that is not the agent's own voice.
pub const ELEVENLABS_DEFAULT_VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

/// The longest a provider's HTTP request may take, body included: a backstop behind the
/// chain's own deadlines (first output 1.5 s, whole turn 30 s), for callers outside a chain.
pub const PROVIDER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the media worker brings: shared clients and breakers, and the secrets it resolved.
#[derive(Clone)]
pub struct BuildContext {
    /// Every HTTP tier connects through it, under the egress policy; WebSocket tiers connect
    /// under its allowlist too.
    pub http: EgressClient,
    pub breakers: Breakers,
    pub chain: ChainConfig,
    /// The organisation's credentials by name, as in `ProviderRef::credentials_secret`.
    pub credentials: HashMap<String, SecretString>,
    /// The platform's own keys by provider (`openai`, `anthropic`, `elevenlabs`, `google`,
    /// `deepgram`), used only at the provider's default endpoint.
    pub platform_keys: HashMap<&'static str, SecretString>,
    /// For Polly tiers.
    pub aws_region: String,
    /// Folder of pre-recorded clips; without one the `prerecorded` tier is skipped.
    pub clips_dir: Option<PathBuf>,
}

impl fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the values stay out of every log.
        let mut names: Vec<&String> = self.credentials.keys().collect();
        names.sort();
        let mut platform: Vec<&&str> = self.platform_keys.keys().collect();
        platform.sort();
        f.debug_struct("BuildContext")
            .field("chain", &self.chain)
            .field("credentials", &names)
            .field("platform_keys", &platform)
            .field("aws_region", &self.aws_region)
            .field("clips_dir", &self.clips_dir)
            .finish_non_exhaustive()
    }
}

impl BuildContext {
    /// Tiers may reach the public internet only; see [`BuildContext::with_egress`].
    pub fn new(credentials: HashMap<String, SecretString>) -> Self {
        Self::with_egress(credentials, EgressAllowlist::none())
    }

    /// With the operator's egress exceptions (self-hosted models, simulators).
    pub fn with_egress(credentials: HashMap<String, SecretString>, egress: EgressAllowlist) -> Self {
        Self {
            http: provider_http(egress),
            breakers: Breakers::default(),
            chain: ChainConfig::default(),
            credentials,
            platform_keys: HashMap::new(),
            aws_region: "eu-central-1".into(),
            clips_dir: None,
        }
    }
}

/// The HTTP client of provider tiers under `egress`, with [`PROVIDER_REQUEST_TIMEOUT`].
pub fn provider_http(egress: EgressAllowlist) -> EgressClient {
    let builder = reqwest::Client::builder().timeout(PROVIDER_REQUEST_TIMEOUT);
    // Building fails only without a TLS backend, which this crate always links.
    EgressClient::with_builder(egress, builder).expect("the provider HTTP client builds")
}

/// A tier left out of a chain, and why (no credentials, not implemented, not an STT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTier {
    /// `llm`, `tts` or `stt`.
    pub chain: &'static str,
    pub index: usize,
    pub reason: String,
}

#[derive(Debug)]
pub struct AgentChains {
    pub llm: LlmChain,
    pub tts: TtsChain,
    pub stt: SttChain,
    /// The agent's STT chain ends with the DTMF menu: when no recogniser is left, the caller
    /// is asked to use the keypad rather than the call giving up.
    pub dtmf_menu: bool,
    pub skipped: Vec<SkippedTier>,
}

/// The providers whose platform keys the agent's chains may use: those of tiers that name
/// no credential and keep the default endpoint.
pub fn platform_keys_needed(agent: &AgentConfig) -> Vec<&'static str> {
    let p = &agent.providers;
    let wants = |credential: &Option<String>, endpoint: &Option<String>| credential.is_none() && endpoint.is_none();
    let mut providers: Vec<&'static str> = p
        .llm
        .iter()
        .filter(|r| wants(&r.credentials_secret, &r.endpoint))
        .filter_map(|r| llm_provider_id(r.kind))
        .chain(
            p.tts.iter().filter(|r| wants(&r.credentials_secret, &r.endpoint)).filter_map(|r| tts_provider_id(r.kind)),
        )
        .chain(
            p.stt.iter().filter(|r| wants(&r.credentials_secret, &r.endpoint)).filter_map(|r| stt_provider_id(r.kind)),
        )
        .collect();
    providers.sort_unstable();
    providers.dedup();
    providers
}

/// The platform secret holding the platform's own key for `provider`, e.g. `provider-openai`.
pub fn platform_key_secret(provider: &str) -> String {
    format!("provider-{provider}")
}

const fn llm_provider_id(kind: LlmKind) -> Option<&'static str> {
    match kind {
        LlmKind::Openai => Some("openai"),
        LlmKind::Anthropic => Some("anthropic"),
        LlmKind::OpenaiCompatible | LlmKind::Canned => None,
    }
}

const fn tts_provider_id(kind: TtsKind) -> Option<&'static str> {
    match kind {
        TtsKind::Elevenlabs => Some("elevenlabs"),
        TtsKind::Google => Some("google"),
        TtsKind::Polly | TtsKind::EspeakNg | TtsKind::Prerecorded => None,
    }
}

const fn stt_provider_id(kind: SttKind) -> Option<&'static str> {
    match kind {
        SttKind::Deepgram => Some("deepgram"),
        SttKind::Google | SttKind::Pocketsphinx | SttKind::DtmfMenu => None,
    }
}

fn breaker_key<K: fmt::Debug>(chain: &str, tier: &ProviderRef<K>, base: &str) -> String {
    format!("{chain}:{:?}:{base}:{}", tier.kind, tier.model.as_deref().unwrap_or_default())
}

/// The key a tier of `provider` authenticates with (see the module's rule).
fn secret<K>(ctx: &BuildContext, tier: &ProviderRef<K>, provider: &str) -> Result<SecretString, String> {
    if let Some(name) = tier.credentials_secret.as_deref() {
        return ctx
            .credentials
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the organisation has no provider credential `{name}`"));
    }
    if tier.endpoint.is_some() {
        return Err("a custom endpoint needs one of the organisation's own credentials".into());
    }
    ctx.platform_keys.get(provider).cloned().ok_or_else(|| format!("no credential, and no platform key for {provider}"))
}

/// Builds the three chains of an agent.
pub async fn build_chains(agent: &AgentConfig, ctx: &BuildContext) -> AgentChains {
    let mut skipped = Vec::new();
    let mut llm = LlmChain::new(ctx.chain);
    for (index, tier) in agent.providers.llm.iter().enumerate() {
        match llm_tier(agent, tier, ctx) {
            Ok((provider, base)) => llm.push(provider, ctx.breakers.get(&breaker_key("llm", tier, &base))),
            Err(reason) => skipped.push(SkippedTier { chain: "llm", index, reason }),
        }
    }
    let mut tts = TtsChain::new(ctx.chain);
    for (index, tier) in agent.providers.tts.iter().enumerate() {
        match tts_tier(agent, tier, ctx).await {
            Ok((provider, base)) => tts.push(provider, ctx.breakers.get(&breaker_key("tts", tier, &base))),
            Err(reason) => skipped.push(SkippedTier { chain: "tts", index, reason }),
        }
    }
    let mut stt = SttChain::new(ctx.chain);
    let dtmf_menu = agent.providers.stt.iter().any(|tier| tier.kind == SttKind::DtmfMenu);
    for (index, tier) in agent.providers.stt.iter().enumerate().filter(|(_, t)| t.kind != SttKind::DtmfMenu) {
        match stt_tier(tier, ctx) {
            Ok((provider, base)) => stt.push(provider, ctx.breakers.get(&breaker_key("stt", tier, &base))),
            Err(reason) => skipped.push(SkippedTier { chain: "stt", index, reason }),
        }
    }
    for s in &skipped {
        tracing::info!(chain = s.chain, index = s.index, reason = %s.reason, "provider tier left out");
    }
    AgentChains { llm, tts, stt, dtmf_menu, skipped }
}

type Built<P> = Result<(Arc<P>, String), String>;

fn llm_tier(agent: &AgentConfig, tier: &ProviderRef<LlmKind>, ctx: &BuildContext) -> Built<dyn LlmProvider> {
    let model = |default: &str| tier.model.clone().unwrap_or_else(|| default.to_owned());
    match tier.kind {
        LlmKind::Openai | LlmKind::OpenaiCompatible => {
            let cloud = tier.kind == LlmKind::Openai;
            let base = tier
                .endpoint
                .clone()
                .unwrap_or_else(|| if cloud { OPENAI_BASE_URL } else { LOCAL_OPENAI_BASE_URL }.to_owned());
            // A local server usually takes no key; the cloud always does.
            let api_key =
                if cloud || tier.credentials_secret.is_some() { Some(secret(ctx, tier, "openai")?) } else { None };
            let config = OpenAiConfig {
                name: if cloud { "openai" } else { "openai-compatible" }.into(),
                base_url: base.clone(),
                api_key,
                model: model(if cloud { OPENAI_DEFAULT_MODEL } else { "default" }),
            };
            Ok((Arc::new(OpenAiLlm::new(config, ctx.http.clone())), base))
        }
        LlmKind::Anthropic => {
            let base = tier.endpoint.clone().unwrap_or_else(|| ANTHROPIC_BASE_URL.to_owned());
            let config = AnthropicConfig {
                name: "anthropic".into(),
                base_url: base.clone(),
                api_key: secret(ctx, tier, "anthropic")?,
                model: model(ANTHROPIC_DEFAULT_MODEL),
            };
            Ok((Arc::new(AnthropicLlm::new(config, ctx.http.clone())), base))
        }
        LlmKind::Canned => Ok((Arc::new(CannedLlm::for_language(agent.faq.clone(), &agent.language)), "local".into())),
    }
}

async fn tts_tier(agent: &AgentConfig, tier: &ProviderRef<TtsKind>, ctx: &BuildContext) -> Built<dyn TtsProvider> {
    // The agent's voice belongs to its own provider; other tiers use `model` or their default.
    let own_voice = (agent.voice.provider == tier.kind).then(|| agent.voice.voice_id.clone());
    match tier.kind {
        TtsKind::Elevenlabs => {
            let base = tier.endpoint.clone().unwrap_or_else(|| ELEVENLABS_BASE_URL.to_owned());
            let config = ElevenLabsConfig {
                name: "elevenlabs".into(),
                base_url: base.clone(),
                api_key: secret(ctx, tier, "elevenlabs")?,
                voice_id: own_voice.unwrap_or_else(|| ELEVENLABS_DEFAULT_VOICE.to_owned()),
                model_id: tier.model.clone().unwrap_or_else(|| ELEVENLABS_DEFAULT_MODEL.to_owned()),
            };
            Ok((Arc::new(ElevenLabsTts::new(config, ctx.http.clone())), base))
        }
        TtsKind::Google => {
            let base = tier.endpoint.clone().unwrap_or_else(|| GOOGLE_TTS_BASE_URL.to_owned());
            let config = GoogleTtsConfig {
                name: "google".into(),
                base_url: base.clone(),
                api_key: secret(ctx, tier, "google")?,
                voice_name: own_voice.or_else(|| tier.model.clone()),
            };
            Ok((Arc::new(GoogleTts::new(config, ctx.http.clone())), base))
        }
        TtsKind::Polly => {
            // The AWS SDK connects by itself, outside the egress client: a custom endpoint is
            // taken only where the operator allows its destination, since requests to it are
            // signed with the platform's AWS credentials.
            if let Some(endpoint) = &tier.endpoint {
                check_operator_allowed(endpoint, ctx.http.allowlist())?;
            }
            let polly = PollyTts::connect(PollyConfig {
                name: "polly".into(),
                region: ctx.aws_region.clone(),
                endpoint_url: tier.endpoint.clone(),
                voice_id: own_voice.or_else(|| tier.model.clone()),
            })
            .await;
            Ok((Arc::new(polly), tier.endpoint.clone().unwrap_or_else(|| ctx.aws_region.clone())))
        }
        TtsKind::EspeakNg => Ok((Arc::new(EspeakTts::new(own_voice.or_else(|| tier.model.clone()))), "local".into())),
        TtsKind::Prerecorded => {
            let dir = ctx.clips_dir.clone().ok_or("no folder of pre-recorded clips is configured")?;
            let base = dir.display().to_string();
            Ok((Arc::new(ClipLibrary::new(dir)), base))
        }
    }
}

fn stt_tier(tier: &ProviderRef<SttKind>, ctx: &BuildContext) -> Built<dyn SttProvider> {
    match tier.kind {
        SttKind::Deepgram => {
            let base = tier.endpoint.clone().unwrap_or_else(|| DEEPGRAM_BASE_URL.to_owned());
            let mut config = DeepgramConfig::new(base.clone(), secret(ctx, tier, "deepgram")?);
            if let Some(model) = &tier.model {
                config.model.clone_from(model);
            }
            Ok((Arc::new(DeepgramStt::new(config, Arc::clone(ctx.http.allowlist()))), base))
        }
        SttKind::Google => Err("Google streaming STT is not implemented yet".into()),
        SttKind::Pocketsphinx => Ok((Arc::new(PocketsphinxStt::default()), "local".into())),
        // Not a recogniser: `build_chains` records it as `AgentChains::dtmf_menu`.
        SttKind::DtmfMenu => Err("the DTMF menu is the call engine's last resort, not a recogniser".into()),
    }
}

/// A custom endpoint the operator's allowlist covers itself (public destinations do not count:
/// the tier would carry the platform's credentials there).
fn check_operator_allowed(endpoint: &str, allow: &EgressAllowlist) -> Result<(), String> {
    let url = golos_egress::check_url(endpoint, Protocol::Http, allow).map_err(|e| format!("endpoint refused: {e}"))?;
    if golos_egress::is_operator_allowed(&url, allow) {
        Ok(())
    } else {
        Err("a custom Polly endpoint must be a destination the operator allows (GOLOS_EGRESS_ALLOW)".into())
    }
}
