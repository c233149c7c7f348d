//! Per-agent engine configuration. Shared by every call of an agent (`Arc<CallConfig>`), so
//! the per-call state stays small.

use golos_domain::agent::{AgentConfig, ToolSpec};
use std::time::Duration;

/// Everything the engine's rules need; the defaults are the numbers of DESIGN.md §4 and the
/// design reviews.
#[derive(Debug, Clone, PartialEq)]
pub struct CallConfig {
    pub system_prompt: String,
    /// Spoken when the call starts; `None` waits for the caller.
    pub greeting: Option<String>,
    /// Chunker: cut at a word boundary once this many characters are pending (40).
    pub chunk_max_chars: usize,
    /// Chunks waiting for TTS before the LLM stream is paused (10).
    pub tts_queue_limit: usize,
    /// TTS requests synthesising at once: the one playing and the next (2).
    pub tts_pipeline_depth: usize,
    /// Caller speech must last this long to interrupt the agent (100 ms).
    pub barge_in_min_speech: Duration,
    /// No interruption before the agent has spoken this long (500 ms).
    pub barge_in_grace: Duration,
    /// Final transcripts that never interrupt (lower case, punctuation ignored).
    pub backchannels: Vec<String>,
    /// `true` (default): barge-in pauses the agent at once and cancels LLM and TTS when the
    /// caller's words show it was not a backchannel. `false`: barge-in cancels at once, so
    /// backchannels are only ignored when they did not last `barge_in_min_speech`.
    pub barge_in_waits_for_words: bool,
    /// After a paused barge-in without words, resume the agent this long after the caller
    /// stopped speaking (1 s).
    pub false_interruption_timeout: Duration,
    /// Spoken if the LLM has not produced a first token this long after the request (700 ms).
    pub filler_after: Duration,
    /// `None` disables fillers.
    pub filler: Option<String>,
    /// Finals below this confidence are not answered (0.6).
    pub min_confidence: f32,
    /// Consecutive low-confidence finals before DTMF input is offered (3).
    pub low_confidence_attempts_before_dtmf: u32,
    pub repeat_prompt: String,
    pub dtmf_prompt: String,
    /// DTMF digits form the caller's turn on `#` or after this pause (3 s).
    pub dtmf_inter_digit_timeout: Duration,
    /// No caller answer for this long while the agent waits: goodbye, then hang up (60 s).
    pub silence_timeout: Duration,
    pub silence_goodbye: String,
    /// The call is ended (politely) after this long (1800 s, the agent's limit).
    pub max_call_duration: Duration,
    pub max_duration_goodbye: String,
    /// Said by `end_call`.
    pub goodbye: String,
    /// Said when the platform ends the call (`Input::EndPolitely`: no money or minutes left).
    /// Neutral on purpose: the caller is the business's customer, not the account holder.
    pub limit_goodbye: String,
    /// Said when the LLM fails for good (after the provider chain's fallbacks).
    pub apology: String,
    /// How long the pre-recorded apology clip plays (the engine treats it as agent speech,
    /// and paces the clip's audio that arrives within this window).
    pub apology_clip_duration: Duration,
    /// Upper bound on a goodbye's playout before the engine hangs up regardless (10 s).
    pub goodbye_max: Duration,
    /// Tools the LLM may call, including built-ins.
    pub tools: Vec<ToolConfig>,
    /// Customer tools running at once (10); more wait for a slot.
    pub max_parallel_tools: usize,
    /// Invalid tool-call JSON: retries before the turn continues without tools (2).
    pub invalid_tool_json_retries: u32,
    /// Where `escalate_to_human` (and `transfer_call` without a destination) transfers to.
    pub escalation_target: Option<String>,
    pub escalation_message: String,
    pub transfer_message: String,
    /// Said when a transfer fails; the conversation then goes on.
    pub transfer_failed_message: String,
    /// How long a transfer may take to be answered before it counts as failed (60 s: the
    /// target's phone rings meanwhile).
    pub transfer_timeout: Duration,
    /// Rough speaking rate, used to estimate how far into a chunk an interruption fell while
    /// its TTS is still streaming (65 ms per character, about 15 characters a second).
    pub ms_per_char_estimate: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolConfig {
    pub name: String,
    pub kind: ToolKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolKind {
    /// A customer endpoint, called by the driver; the result must come back within `timeout`.
    Function {
        timeout: Duration,
    },
    EndCall,
    TransferCall {
        destination: Option<String>,
    },
    SendDtmf,
    EscalateToHuman,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            system_prompt: String::new(),
            greeting: None,
            chunk_max_chars: 40,
            tts_queue_limit: 10,
            tts_pipeline_depth: 2,
            barge_in_min_speech: Duration::from_millis(100),
            barge_in_grace: Duration::from_millis(500),
            backchannels: [
                "ага",
                "угу",
                "да",
                "ок",
                "ok",
                "okay",
                "mhm",
                "mm",
                "uh-huh",
                "yeah",
                "yes",
                "хорошо",
                "понятно",
            ]
            .map(str::to_owned)
            .to_vec(),
            barge_in_waits_for_words: true,
            false_interruption_timeout: Duration::from_secs(1),
            filler_after: Duration::from_millis(700),
            filler: Some("Сейчас…".to_owned()),
            min_confidence: 0.6,
            low_confidence_attempts_before_dtmf: 3,
            repeat_prompt: "Простите, я не расслышал. Повторите, пожалуйста.".to_owned(),
            dtmf_prompt: "Пожалуйста, наберите ответ на клавиатуре телефона и нажмите решётку.".to_owned(),
            dtmf_inter_digit_timeout: Duration::from_secs(3),
            silence_timeout: Duration::from_secs(60),
            silence_goodbye: "Кажется, связь пропала. До свидания!".to_owned(),
            max_call_duration: Duration::from_secs(1_800),
            max_duration_goodbye: "Время разговора истекло. Спасибо за звонок, до свидания!".to_owned(),
            goodbye: "Спасибо за звонок, до свидания!".to_owned(),
            limit_goodbye: "К сожалению, мы вынуждены завершить разговор. Пожалуйста, перезвоните позже. До свидания!"
                .to_owned(),
            apology: "Извините, у нас технические неполадки. Попробуйте, пожалуйста, позже.".to_owned(),
            apology_clip_duration: Duration::from_secs(4),
            goodbye_max: Duration::from_secs(10),
            tools: Vec::new(),
            max_parallel_tools: 10,
            invalid_tool_json_retries: 2,
            escalation_target: None,
            escalation_message: "Соединяю вас с оператором.".to_owned(),
            transfer_message: "Перевожу ваш звонок.".to_owned(),
            transfer_failed_message: "Не получилось перевести звонок. Чем ещё я могу помочь?".to_owned(),
            transfer_timeout: Duration::from_secs(60),
            ms_per_char_estimate: 65,
        }
    }
}

impl CallConfig {
    /// The engine configuration of an agent: its prompt, greeting, tools and limits, with the
    /// phrases in the agent's language where the language is English (Russian otherwise).
    pub fn from_agent(agent: &AgentConfig) -> Self {
        let mut config =
            if agent.language.to_ascii_lowercase().starts_with("en") { Self::english() } else { Self::default() };
        config.system_prompt.clone_from(&agent.system_prompt);
        config.greeting.clone_from(&agent.greeting);
        config.max_call_duration = Duration::from_secs(u64::from(agent.limits.max_call_duration_secs));
        config.silence_timeout = Duration::from_secs(u64::from(agent.limits.silence_timeout_secs));
        config.tools = agent
            .tools
            .iter()
            .map(|tool| ToolConfig {
                name: tool.name().to_owned(),
                kind: match tool {
                    ToolSpec::Function { timeout_ms, .. } => {
                        ToolKind::Function { timeout: Duration::from_millis(u64::from(*timeout_ms)) }
                    }
                    ToolSpec::EndCall => ToolKind::EndCall,
                    ToolSpec::TransferCall { destination } => {
                        ToolKind::TransferCall { destination: Some(destination.expose_e164()) }
                    }
                    ToolSpec::SendDtmf => ToolKind::SendDtmf,
                    ToolSpec::EscalateToHuman { .. } => ToolKind::EscalateToHuman,
                },
            })
            .collect();
        config.escalation_target = agent.tools.iter().find_map(|tool| match tool {
            ToolSpec::EscalateToHuman { destination: Some(number) } => Some(number.expose_e164()),
            _ => None,
        });
        config
    }

    /// Fills the call's variables into the system prompt and the greeting: `{{name}}` (spaces
    /// inside the braces allowed) becomes the variable's value; a name the call does not have
    /// stays as written, so a missing value is visible rather than silently empty.
    pub fn fill_variables(&mut self, variables: &std::collections::BTreeMap<String, String>) {
        if variables.is_empty() {
            return;
        }
        self.system_prompt = fill(&self.system_prompt, variables);
        self.greeting = self.greeting.as_deref().map(|greeting| fill(greeting, variables));
    }

    /// English phrases for the same rules.
    pub fn english() -> Self {
        Self {
            filler: Some("One moment…".to_owned()),
            repeat_prompt: "Sorry, I didn't catch that. Could you say it again?".to_owned(),
            dtmf_prompt: "Please type your answer on the phone keypad and press the pound key.".to_owned(),
            silence_goodbye: "It seems we got disconnected. Goodbye!".to_owned(),
            max_duration_goodbye: "We have reached the time limit of this call. Thank you, goodbye!".to_owned(),
            goodbye: "Thank you for calling, goodbye!".to_owned(),
            limit_goodbye: "Sorry, we have to end this call now. Please call back later. Goodbye!".to_owned(),
            apology: "Sorry, we are having technical difficulties. Please try again later.".to_owned(),
            escalation_message: "Let me connect you with a colleague.".to_owned(),
            transfer_message: "Transferring your call.".to_owned(),
            transfer_failed_message: "I couldn't transfer your call. What else can I help you with?".to_owned(),
            ..Self::default()
        }
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&ToolConfig> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub(crate) fn is_backchannel(&self, text: &str) -> bool {
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '-') || "…,.!?".contains(c))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        // "ага, ага" and "да да" are still backchannels; anything with another word is not.
        !words.is_empty() && words.len() <= 3 && words.iter().all(|w| self.backchannels.iter().any(|b| b == w))
    }
}

/// `text` with each `{{name}}` of `variables` replaced by its value.
fn fill(text: &str, variables: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        let name = rest[open + 2..open + 2 + close].trim();
        out.push_str(&rest[..open]);
        match variables.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use golos_domain::agent::{AgentLimits, ProviderChains, TtsKind, VoiceConfig};
    use golos_domain::PhoneNumber;

    fn agent(language: &str) -> AgentConfig {
        AgentConfig {
            name: "Hours".to_owned(),
            system_prompt: "You answer questions about opening hours.".to_owned(),
            greeting: Some("Здравствуйте!".to_owned()),
            language: language.to_owned(),
            voice: VoiceConfig { provider: TtsKind::Elevenlabs, voice_id: "v1".to_owned() },
            providers: ProviderChains::default(),
            tools: vec![
                ToolSpec::Function {
                    name: "get_hours".to_owned(),
                    description: "Opening hours of a day".to_owned(),
                    parameters: serde_json::json!({"type": "object"}),
                    url: "https://example.com/hours".to_owned(),
                    timeout_ms: 2_000,
                },
                ToolSpec::EndCall,
                ToolSpec::TransferCall { destination: PhoneNumber::parse("+7 999 000-11-22").unwrap() },
            ],
            faq: Vec::new(),
            limits: AgentLimits { max_concurrent_calls: 10, max_call_duration_secs: 600, silence_timeout_secs: 45 },
            priority: golos_domain::agent::DEFAULT_PRIORITY,
            enabled: true,
        }
    }

    #[test]
    fn from_agent_takes_prompt_greeting_limits_and_tools() {
        let config = CallConfig::from_agent(&agent("ru-RU"));
        assert_eq!(config.system_prompt, "You answer questions about opening hours.");
        assert_eq!(config.greeting.as_deref(), Some("Здравствуйте!"));
        assert_eq!(config.max_call_duration, Duration::from_secs(600));
        assert_eq!(config.silence_timeout, Duration::from_secs(45));
        assert_eq!(config.filler.as_deref(), Some("Сейчас…"));
        assert_eq!(
            config.tools,
            vec![
                ToolConfig {
                    name: "get_hours".to_owned(),
                    kind: ToolKind::Function { timeout: Duration::from_secs(2) }
                },
                ToolConfig { name: "end_call".to_owned(), kind: ToolKind::EndCall },
                ToolConfig {
                    name: "transfer_call".to_owned(),
                    kind: ToolKind::TransferCall { destination: Some("+79990001122".to_owned()) }
                },
            ]
        );
        assert_eq!(CallConfig::from_agent(&agent("en-US")).filler.as_deref(), Some("One moment…"));
        assert_eq!(config.escalation_target, None);
    }

    #[test]
    fn an_escalation_destination_becomes_the_escalation_target() {
        let mut agent = agent("ru-RU");
        let wire = r#"{"type": "escalate_to_human", "destination": "+7 999 000-33-44"}"#;
        agent.tools.push(serde_json::from_str(wire).unwrap());
        agent.tools.push(serde_json::from_str(r#"{"type": "escalate_to_human"}"#).unwrap());
        let config = CallConfig::from_agent(&agent);
        assert_eq!(config.escalation_target.as_deref(), Some("+79990003344"));
    }

    #[test]
    fn variables_fill_the_prompt_and_the_greeting() {
        let mut config = CallConfig {
            system_prompt: "Caller {{caller_number}}, account {{ sip_x_account_id }}, {{unknown}}.".to_owned(),
            greeting: Some("Hello, account {{sip_x_account_id}}!".to_owned()),
            ..CallConfig::default()
        };
        let variables = [("caller_number", "+79161234567"), ("sip_x_account_id", "4242")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        config.fill_variables(&variables);
        assert_eq!(config.system_prompt, "Caller +79161234567, account 4242, {{unknown}}.");
        assert_eq!(config.greeting.as_deref(), Some("Hello, account 4242!"));
        // A value holding braces is not expanded again; an unclosed brace is left as is.
        let variables = [("a", "{{b}}"), ("b", "x")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        assert_eq!(fill("{{a}} {{b}} {{c", &variables), "{{b}} x {{c");
    }

    #[test]
    fn backchannels() {
        let config = CallConfig::default();
        for text in ["ага", "Угу.", "да, да", "OK!", "mhm", "ага ага ага"] {
            assert!(config.is_backchannel(text), "{text}");
        }
        for text in ["", "да нет", "стоп", "ага ага ага ага", "okay wait"] {
            assert!(!config.is_backchannel(text), "{text}");
        }
    }
}
