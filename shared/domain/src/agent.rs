//! Agent configuration and its validation. An agent is what a business builds: a prompt, a
//! language and voice, provider fallback chains, tools and limits. Validation reports every
//! problem at once, with the JSON path of the field, so an API can answer with all of them.

use crate::plans::Quotas;
use crate::PhoneNumber;
use golos_egress::{EgressAllowlist, EgressError, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_PROMPT_CHARS: usize = 32_000;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_TOOL_TIMEOUT_MS: u32 = 30_000;
/// Each provider tier runs behind the previous one; more than this is a configuration mistake.
pub const MAX_CHAIN_LEN: usize = 6;
/// FAQ entries of one agent, and phrases per entry: enough for a real FAQ, and bounded so
/// an agent is always one store item.
pub const MAX_FAQ_ENTRIES: usize = 200;
pub const MAX_FAQ_QUESTIONS: usize = 20;
/// Longest URL a tenant may give (tool URLs, provider endpoints).
pub const MAX_URL_CHARS: usize = 2_048;
/// The whole agent as JSON. A DynamoDB item holds 400 KB; this leaves room for the record's
/// own attributes, whatever mix of long fields a tenant sends.
pub const MAX_AGENT_JSON_BYTES: usize = 256 * 1024;
/// A tool's parameter schema as JSON.
pub const MAX_TOOL_SCHEMA_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub system_prompt: String,
    /// Spoken when the call is answered, before the caller says anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// BCP 47 language of the conversation, e.g. `ru-RU`, `en-US`.
    pub language: String,
    pub voice: VoiceConfig,
    #[serde(default)]
    pub providers: ProviderChains,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Canned answers: the last LLM tier, and the whole brain of a FAQ agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faq: Vec<FaqEntry>,
    #[serde(default)]
    pub limits: AgentLimits,
    /// The place of this agent's callers in the org's hold queue when every line is busy:
    /// 0..=9, higher first; equal priorities are served in arrival order.
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

/// Priority of an agent's callers in the hold queue unless the agent sets one.
pub const DEFAULT_PRIORITY: u8 = 5;
pub const MAX_PRIORITY: u8 = 9;

const fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

const fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    pub provider: TtsKind,
    pub voice_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmKind {
    Openai,
    Anthropic,
    /// llama.cpp, vLLM, Ollama or any other server of the OpenAI chat-completions protocol.
    OpenaiCompatible,
    /// Answers from the agent's `faq`; never fails, so it closes every chain.
    Canned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtsKind {
    Elevenlabs,
    Google,
    Polly,
    EspeakNg,
    Prerecorded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SttKind {
    Deepgram,
    Google,
    Pocketsphinx,
    DtmfMenu,
}

/// One tier of a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRef<K> {
    pub kind: K,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Base URL override (self-hosted models, regional endpoints, test simulators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of one of the organisation's provider credentials (`/v1/provider-credentials`),
    /// never a platform secret. Without it the tier uses the platform's own key for that
    /// provider, and only at the provider's default endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

impl<K> ProviderRef<K> {
    pub const fn of(kind: K) -> Self {
        Self { kind, model: None, endpoint: None, credentials_secret: None }
    }
}

/// Per-agent fallback chains; the defaults are the tiers of the reviews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderChains {
    pub llm: Vec<ProviderRef<LlmKind>>,
    pub tts: Vec<ProviderRef<TtsKind>>,
    pub stt: Vec<ProviderRef<SttKind>>,
}

impl Default for ProviderChains {
    fn default() -> Self {
        Self {
            llm: vec![
                ProviderRef::of(LlmKind::Openai),
                ProviderRef::of(LlmKind::Anthropic),
                ProviderRef::of(LlmKind::OpenaiCompatible),
                ProviderRef::of(LlmKind::Canned),
            ],
            tts: vec![
                ProviderRef::of(TtsKind::Elevenlabs),
                ProviderRef::of(TtsKind::Google),
                ProviderRef::of(TtsKind::Polly),
                ProviderRef::of(TtsKind::EspeakNg),
            ],
            stt: vec![
                ProviderRef::of(SttKind::Deepgram),
                ProviderRef::of(SttKind::Google),
                ProviderRef::of(SttKind::Pocketsphinx),
                ProviderRef::of(SttKind::DtmfMenu),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolSpec {
    /// A customer HTTPS endpoint described by a JSON schema, called with signed requests.
    Function {
        name: String,
        description: String,
        parameters: Value,
        url: String,
        #[serde(default = "default_tool_timeout_ms")]
        timeout_ms: u32,
    },
    EndCall,
    TransferCall {
        destination: PhoneNumber,
    },
    SendDtmf,
    /// A person takes over: with a `destination` the call is transferred there, without one
    /// the request is recorded for follow-up.
    EscalateToHuman {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<PhoneNumber>,
    },
}

const fn default_tool_timeout_ms() -> u32 {
    5_000
}

impl ToolSpec {
    /// The name the LLM calls the tool by.
    pub fn name(&self) -> &str {
        match self {
            Self::Function { name, .. } => name,
            Self::EndCall => "end_call",
            Self::TransferCall { .. } => "transfer_call",
            Self::SendDtmf => "send_dtmf",
            Self::EscalateToHuman { .. } => "escalate_to_human",
        }
    }
}

pub const BUILTIN_TOOL_NAMES: [&str; 4] = ["end_call", "transfer_call", "send_dtmf", "escalate_to_human"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    /// Phrases that select this answer (also the local STT grammar of a FAQ agent).
    pub questions: Vec<String>,
    pub answer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentLimits {
    pub max_concurrent_calls: u32,
    pub max_call_duration_secs: u32,
    /// Without any answer from the caller for this long, the call ends politely.
    pub silence_timeout_secs: u32,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self { max_concurrent_calls: 10, max_call_duration_secs: 1_800, silence_timeout_secs: 60 }
    }
}

/// One problem with a configuration: where, a stable code, and words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationIssue {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl AgentConfig {
    /// The organisation credentials its provider tiers name, sorted, each once.
    pub fn credential_names(&self) -> Vec<&str> {
        let p = &self.providers;
        let mut names: Vec<&str> = p
            .llm
            .iter()
            .filter_map(|r| r.credentials_secret.as_deref())
            .chain(p.tts.iter().filter_map(|r| r.credentials_secret.as_deref()))
            .chain(p.stt.iter().filter_map(|r| r.credentials_secret.as_deref()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Validates against the default quotas.
    pub fn validate(&self) -> Result<(), Vec<ValidationIssue>> {
        self.validate_with(&Quotas::DEFAULT)
    }

    /// Validates against `quotas` and no operator egress exceptions.
    pub fn validate_with(&self, quotas: &Quotas) -> Result<(), Vec<ValidationIssue>> {
        self.validate_for(quotas, &EgressAllowlist::none())
    }

    /// Every problem at once, so a client can fix them in one go. URLs are held to the egress
    /// policy as far as it can be known without connecting (golos_egress::check_url): scheme,
    /// no credentials in the URL, no IP literal of a forbidden class unless `egress` allows
    /// it. What a name resolves to is checked when the call connects.
    pub fn validate_for(&self, quotas: &Quotas, egress: &EgressAllowlist) -> Result<(), Vec<ValidationIssue>> {
        let mut issues = Issues { egress, found: Vec::new() };
        issues.text("name", &self.name, MAX_NAME_CHARS);
        issues.text("system_prompt", &self.system_prompt, MAX_PROMPT_CHARS);
        if let Some(greeting) = &self.greeting {
            issues.text("greeting", greeting, 1_000);
        }
        if !is_language_tag(&self.language) {
            issues.push("language", "invalid_language", "expected a BCP 47 tag such as ru-RU or en-US");
        }
        issues.text("voice.voice_id", &self.voice.voice_id, 200);
        issues.chain("providers.llm", &self.providers.llm);
        issues.chain("providers.tts", &self.providers.tts);
        issues.chain("providers.stt", &self.providers.stt);
        if self.providers.llm.iter().any(|p| p.kind == LlmKind::Canned) && self.faq.is_empty() {
            issues.push("faq", "faq_required", "the canned LLM tier answers from `faq`, which is empty");
        }
        self.validate_tools(quotas, &mut issues);
        if self.faq.len() > MAX_FAQ_ENTRIES {
            issues.push("faq", "too_many_entries", format!("at most {MAX_FAQ_ENTRIES} FAQ entries"));
        }
        for (i, entry) in self.faq.iter().enumerate() {
            if entry.questions.is_empty() {
                issues.push(format!("faq[{i}].questions"), "empty", "at least one question is needed");
            }
            if entry.questions.len() > MAX_FAQ_QUESTIONS {
                issues.push(
                    format!("faq[{i}].questions"),
                    "too_many_entries",
                    format!("at most {MAX_FAQ_QUESTIONS} questions per entry"),
                );
            }
            for (j, q) in entry.questions.iter().enumerate() {
                issues.text(&format!("faq[{i}].questions[{j}]"), q, 500);
            }
            issues.text(&format!("faq[{i}].answer"), &entry.answer, 2_000);
        }
        let limits = &self.limits;
        if limits.max_concurrent_calls == 0 || limits.max_concurrent_calls > quotas.max_concurrent_calls_per_agent {
            issues.push(
                "limits.max_concurrent_calls",
                "out_of_range",
                format!("must be 1..={}", quotas.max_concurrent_calls_per_agent),
            );
        }
        if !(10..=4 * 3_600).contains(&limits.max_call_duration_secs) {
            issues.push("limits.max_call_duration_secs", "out_of_range", "must be 10..=14400");
        }
        if !(5..=600).contains(&limits.silence_timeout_secs) {
            issues.push("limits.silence_timeout_secs", "out_of_range", "must be 5..=600");
        }
        if self.priority > MAX_PRIORITY {
            issues.push("priority", "out_of_range", format!("must be 0..={MAX_PRIORITY}"));
        }
        if serde_json::to_vec(self).map_or(true, |json| json.len() > MAX_AGENT_JSON_BYTES) {
            issues.push(
                "agent",
                "agent_too_large",
                format!("the agent is larger than {MAX_AGENT_JSON_BYTES} bytes as JSON"),
            );
        }
        issues.finish()
    }

    fn validate_tools(&self, quotas: &Quotas, issues: &mut Issues) {
        if self.tools.len() > quotas.max_tools_per_agent as usize {
            issues.push("tools", "too_many_tools", format!("at most {} tools per agent", quotas.max_tools_per_agent));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            if !seen.insert(tool.name().to_owned()) {
                issues.push(
                    format!("{at}.name"),
                    "duplicate_tool",
                    format!("tool `{}` is declared twice", tool.name()),
                );
            }
            if let ToolSpec::Function { name, description, parameters, url, timeout_ms } = tool {
                if !is_tool_name(name) {
                    issues.push(format!("{at}.name"), "invalid_tool_name", "1-64 of [A-Za-z0-9_-]");
                } else if BUILTIN_TOOL_NAMES.contains(&name.as_str()) {
                    issues.push(format!("{at}.name"), "reserved_tool_name", format!("`{name}` is a built-in tool"));
                }
                issues.text(&format!("{at}.description"), description, 1_000);
                if serde_json::to_vec(parameters).map_or(true, |json| json.len() > MAX_TOOL_SCHEMA_BYTES) {
                    issues.push(
                        format!("{at}.parameters"),
                        "too_long",
                        format!("at most {MAX_TOOL_SCHEMA_BYTES} bytes as JSON"),
                    );
                } else if let Err(reason) = check_parameters_schema(parameters) {
                    issues.push(format!("{at}.parameters"), "invalid_json_schema", reason);
                }
                issues.url(&format!("{at}.url"), url, Protocol::Http);
                if *timeout_ms == 0 || *timeout_ms > MAX_TOOL_TIMEOUT_MS {
                    issues.push(format!("{at}.timeout_ms"), "out_of_range", "must be 1..=30000");
                }
            }
        }
    }
}

struct Issues<'a> {
    egress: &'a EgressAllowlist,
    found: Vec<ValidationIssue>,
}

impl Issues<'_> {
    fn push(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.found.push(ValidationIssue { field: field.into(), code, message: message.into() });
    }

    fn url(&mut self, field: &str, url: &str, protocol: Protocol) {
        if url.chars().count() > MAX_URL_CHARS {
            return self.push(field, "too_long", format!("at most {MAX_URL_CHARS} characters"));
        }
        if let Err(error) = golos_egress::check_url(url, protocol, self.egress) {
            let code = match error {
                EgressError::Forbidden { .. } | EgressError::PortNotAllowed { .. } => "forbidden_destination",
                EgressError::Userinfo => "userinfo_not_allowed",
                _ => "invalid_url",
            };
            self.push(field, code, error.to_string());
        }
    }

    fn text(&mut self, field: &str, value: &str, max_chars: usize) {
        if value.trim().is_empty() {
            self.push(field, "empty", "must not be empty");
        } else if value.chars().count() > max_chars {
            self.push(field, "too_long", format!("at most {max_chars} characters"));
        }
    }

    fn chain<K: PartialEq>(&mut self, field: &str, chain: &[ProviderRef<K>]) {
        if chain.is_empty() {
            self.push(field, "empty_chain", "at least one provider is needed");
        }
        if chain.len() > MAX_CHAIN_LEN {
            self.push(field, "chain_too_long", format!("at most {MAX_CHAIN_LEN} tiers"));
        }
        for (i, tier) in chain.iter().enumerate() {
            if chain[..i].iter().any(|earlier| earlier == tier) {
                self.push(format!("{field}[{i}]"), "duplicate_tier", "the same provider twice in one chain");
            }
            if let Some(model) = &tier.model {
                self.text(&format!("{field}[{i}].model"), model, 200);
            }
            if let Some(endpoint) = &tier.endpoint {
                self.url(&format!("{field}[{i}].endpoint"), endpoint, Protocol::Any);
            }
            if let Some(name) = &tier.credentials_secret {
                if !crate::credentials::is_credential_name(name) {
                    self.push(
                        format!("{field}[{i}].credentials_secret"),
                        "invalid_credential_name",
                        "the name of one of the organisation's provider credentials: 1-64 of [A-Za-z0-9_.-]",
                    );
                }
            }
        }
    }

    fn finish(self) -> Result<(), Vec<ValidationIssue>> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(self.found)
        }
    }
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok =
        parts.next().is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    let rest: Vec<&str> = parts.collect();
    primary_ok
        && rest.len() <= 2
        && rest.iter().all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const JSON_SCHEMA_TYPES: [&str; 7] = ["object", "array", "string", "number", "integer", "boolean", "null"];

/// Checks the parts of a JSON schema that LLM function calling relies on: an object schema
/// whose properties have known types and whose `required` names existing properties.
fn check_parameters_schema(schema: &Value) -> Result<(), String> {
    let object = schema.as_object().ok_or("the schema must be a JSON object")?;
    if object.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the top-level schema must have \"type\": \"object\"".into());
    }
    let properties = match object.get("properties") {
        None => serde_json::Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err("`properties` must be an object".into()),
    };
    for (name, property) in &properties {
        check_property(name, property, 1)?;
    }
    match object.get("required") {
        None => {}
        Some(Value::Array(required)) => {
            for r in required {
                let r = r.as_str().ok_or("`required` must list property names")?;
                if !properties.contains_key(r) {
                    return Err(format!("required property `{r}` is not declared"));
                }
            }
        }
        Some(_) => return Err("`required` must be an array".into()),
    }
    Ok(())
}

fn check_property(name: &str, property: &Value, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err("the schema nests deeper than 8 levels".into());
    }
    let property = property.as_object().ok_or_else(|| format!("property `{name}` must be a schema object"))?;
    match property.get("type") {
        Some(Value::String(t)) if JSON_SCHEMA_TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(types))
            if !types.is_empty()
                && types.iter().all(|t| t.as_str().is_some_and(|t| JSON_SCHEMA_TYPES.contains(&t))) => {}
        None if property.contains_key("enum") || property.contains_key("anyOf") || property.contains_key("oneOf") => {}
        _ => return Err(format!("property `{name}` needs a valid `type`")),
    }
    if let Some(Value::Object(nested)) = property.get("properties") {
        for (child, schema) in nested {
            check_property(child, schema, depth + 1)?;
        }
    }
    if let Some(items) = property.get("items") {
        check_property(&format!("{name}[]"), items, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) fn cafe_agent() -> AgentConfig {
        AgentConfig {
            name: "Кафе «Ромашка»".into(),
            system_prompt: "Ты вежливый администратор кафе.".into(),
            greeting: Some("Здравствуйте! Кафе «Ромашка», чем могу помочь?".into()),
            language: "ru-RU".into(),
            voice: VoiceConfig { provider: TtsKind::Elevenlabs, voice_id: "anna".into() },
            providers: ProviderChains::default(),
            tools: vec![
                ToolSpec::Function {
                    name: "book_table".into(),
                    description: "Book a table".into(),
                    parameters: json!({"type": "object", "properties": {"guests": {"type": "integer"}, "time": {"type": "string"}}, "required": ["guests"]}),
                    url: "https://cafe.example/book".into(),
                    timeout_ms: 3_000,
                },
                ToolSpec::EndCall,
                ToolSpec::TransferCall { destination: PhoneNumber::parse("+74951234567").unwrap() },
            ],
            faq: vec![FaqEntry {
                questions: vec!["когда вы открыты".into()], answer: "С девяти до девяти.".into()
            }],
            limits: AgentLimits::default(),
            priority: DEFAULT_PRIORITY,
            enabled: true,
        }
    }

    #[test]
    fn a_complete_agent_is_valid() {
        assert_eq!(cafe_agent().validate(), Ok(()));
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let mut agent = cafe_agent();
        agent.name = " ".into();
        agent.language = "Russian".into();
        agent.providers.llm.clear();
        agent.tools.push(ToolSpec::Function {
            name: "end_call".into(),
            description: "x".into(),
            parameters: json!({"type": "string"}),
            url: "http://evil.example/".into(),
            timeout_ms: 60_000,
        });
        let issues = agent.validate().unwrap_err();
        let fields: Vec<(&str, &str)> = issues.iter().map(|i| (i.field.as_str(), i.code)).collect();
        for expected in [
            ("name", "empty"),
            ("language", "invalid_language"),
            ("providers.llm", "empty_chain"),
            ("tools[3].name", "duplicate_tool"),
            ("tools[3].name", "reserved_tool_name"),
            ("tools[3].parameters", "invalid_json_schema"),
            ("tools[3].url", "invalid_url"),
            ("tools[3].timeout_ms", "out_of_range"),
        ] {
            assert!(fields.contains(&expected), "{expected:?} missing from {fields:?}");
        }
    }

    #[test]
    fn urls_are_held_to_the_egress_policy() {
        let mut agent = cafe_agent();
        let tool = |url: &str| ToolSpec::Function {
            name: format!("t{}", url.len()),
            description: "d".into(),
            parameters: json!({"type": "object"}),
            url: url.into(),
            timeout_ms: 1_000,
        };
        agent.tools = vec![
            tool("http://[::ffff:127.0.0.1]:8080/"),
            tool("https://169.254.169.254/latest/meta-data/"),
            tool("https://user:pw@hooks.example/"),
            tool("ftp://hooks.example/"),
            tool("http://localhost:8080/hook"),
        ];
        agent.providers.llm[0].endpoint = Some("https://[fd00:ec2::254]/v1".into());
        agent.providers.stt[0].endpoint = Some("ws://127.0.0.1:9000".into());
        let issues = agent.validate().unwrap_err();
        let found: Vec<(&str, &str)> = issues.iter().map(|i| (i.field.as_str(), i.code)).collect();
        assert_eq!(
            found,
            vec![
                ("providers.llm[0].endpoint", "forbidden_destination"),
                ("providers.stt[0].endpoint", "forbidden_destination"),
                ("tools[0].url", "forbidden_destination"),
                ("tools[1].url", "forbidden_destination"),
                ("tools[2].url", "userinfo_not_allowed"),
                ("tools[3].url", "invalid_url"),
                ("tools[4].url", "invalid_url"),
            ],
            "{issues:?}"
        );
        // What the operator allows is accepted, over plain text too; the mapped form of an
        // allowed address is still not that address.
        let allow = EgressAllowlist::parse("127.0.0.1/32,localhost:8080").unwrap();
        let issues = agent.validate_for(&Quotas::DEFAULT, &allow).unwrap_err();
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            ["providers.llm[0].endpoint", "tools[0].url", "tools[1].url", "tools[2].url", "tools[3].url"]
        );
    }

    #[test]
    fn tool_quota_is_enforced() {
        let mut agent = cafe_agent();
        agent.tools = (0..21)
            .map(|i| ToolSpec::Function {
                name: format!("tool_{i}"),
                description: "d".into(),
                parameters: json!({"type": "object"}),
                url: "https://x.example/".into(),
                timeout_ms: 1000,
            })
            .collect();
        let issues = agent.validate().unwrap_err();
        assert_eq!(issues.iter().filter(|i| i.code == "too_many_tools").count(), 1);
        agent.tools.pop();
        assert_eq!(agent.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut value = serde_json::to_value(cafe_agent()).unwrap();
        value["temperature_typo"] = json!(1);
        assert!(serde_json::from_value::<AgentConfig>(value).is_err());
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-zA-Zа-яА-Я0-9 ,.!?]{{0,{max}}}"))
            .unwrap()
            .prop_map(|s| format!("x{s}"))
    }

    prop_compose! {
        fn function_tool()(name in "[a-z][a-z0-9_]{0,20}", description in text(40), props in proptest::collection::btree_map("[a-z]{1,8}", prop::sample::select(&JSON_SCHEMA_TYPES[1..]), 0..5), timeout_ms in 1u32..=30_000) -> ToolSpec {
            let properties: serde_json::Map<String, Value> = props.iter().map(|(k, t)| (k.clone(), json!({"type": t}))).collect();
            let required: Vec<&String> = props.keys().take(1).collect();
            ToolSpec::Function { name: format!("fn_{name}"), description, parameters: json!({"type": "object", "properties": properties, "required": required}), url: "https://hooks.example/t".into(), timeout_ms }
        }
    }

    prop_compose! {
        fn valid_agent()(name in text(60), prompt in text(300), greeting in proptest::option::of(text(80)),
                         language in prop::sample::select(vec!["ru-RU", "en-US", "ru", "kk-KZ"]),
                         tools in proptest::collection::btree_map("[a-z]{1,6}", function_tool(), 0..20),
                         builtins in proptest::sample::subsequence(vec![ToolSpec::EndCall, ToolSpec::SendDtmf, ToolSpec::EscalateToHuman { destination: None }], 0..=3),
                         concurrency in 1u32..=10, duration in 10u32..=14_400, silence in 5u32..=600, priority in 0u8..=9, enabled in any::<bool>()) -> AgentConfig {
            let mut all_tools: Vec<ToolSpec> = tools.into_iter().map(|(suffix, tool)| match tool {
                ToolSpec::Function { name, description, parameters, url, timeout_ms } => ToolSpec::Function { name: format!("{name}_{suffix}"), description, parameters, url, timeout_ms },
                other => other,
            }).collect();
            all_tools.truncate(20 - builtins.len().min(20));
            all_tools.extend(builtins);
            AgentConfig {
                name, system_prompt: prompt, greeting, language: language.into(),
                voice: VoiceConfig { provider: TtsKind::EspeakNg, voice_id: "ru".into() },
                providers: ProviderChains::default(),
                tools: all_tools,
                faq: vec![FaqEntry { questions: vec!["q".into()], answer: "a".into() }],
                limits: AgentLimits { max_concurrent_calls: concurrency, max_call_duration_secs: duration, silence_timeout_secs: silence },
                priority,
                enabled,
            }
        }
    }

    proptest! {
        #[test]
        fn valid_configs_round_trip_through_json(agent in valid_agent()) {
            prop_assert_eq!(agent.validate(), Ok(()));
            let json = serde_json::to_string(&agent).unwrap();
            let back: AgentConfig = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &agent);
            prop_assert_eq!(back.validate(), Ok(()));
        }

        #[test]
        fn breaking_one_field_is_reported_on_that_field(agent in valid_agent(), which in 0usize..6) {
            let mut broken = agent;
            let field = match which {
                0 => { broken.name = String::new(); "name" }
                1 => { broken.language = "RU_ru".into(); "language" }
                2 => { broken.providers.tts.clear(); "providers.tts" }
                3 => { broken.limits.max_concurrent_calls = 11; "limits.max_concurrent_calls" }
                4 => { broken.priority = 10; "priority" }
                _ => { broken.system_prompt = "я".repeat(MAX_PROMPT_CHARS + 1); "system_prompt" }
            };
            let issues = broken.validate().unwrap_err();
            prop_assert!(issues.iter().any(|i| i.field == field), "{:?}", issues);
        }
    }
}
