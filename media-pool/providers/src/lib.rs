//! Streaming STT/LLM/TTS ports, provider adapters over their real wire protocols, fallback
//! chains and circuit breakers.
//!
//! - Ports: [`LlmProvider`], [`TtsProvider`], [`SttProvider`]; one error type,
//!   [`ProviderError`].
//! - Chains: [`Chain`] (`LlmChain`, `TtsChain`, `SttChain`) switch tiers before the first
//!   output only, with a first-output deadline and a [`CircuitBreaker`] per provider.
//! - Adapters: [`openai`] (also llama.cpp, vLLM, Ollama), [`anthropic`], [`deepgram`],
//!   [`elevenlabs`], [`google_tts`], [`polly`]; local tiers [`espeak`], [`pocketsphinx`],
//!   [`canned`] (FAQ answers), [`clips`] (pre-recorded WAV).
//!
//! The media worker builds an agent's chains once per call and shares the breakers:
//!
//! ```no_run
//! # async fn turn(agent: &golos_domain::agent::AgentConfig, secrets: std::collections::HashMap<String, golos_ports::SecretString>) {
//! use futures::StreamExt;
//! use golos_providers::{build_chains, BuildContext, LlmEvent, LlmRequest, Message};
//! let ctx = BuildContext::new(secrets); // keep ctx.breakers for the life of the process
//! let chains = build_chains(agent, &ctx).await;
//! let request = LlmRequest::new(vec![Message::User("when are you open".into())]);
//! match chains.llm.stream(&request).await {
//!     Ok(mut stream) => {
//!         while let Some(event) = stream.next().await {
//!             match event {
//!                 Ok(LlmEvent::TextDelta(text)) => { /* to the sentence chunker */ }
//!                 Ok(LlmEvent::ToolCall(call)) => { /* call.parse_arguments() */ }
//!                 Ok(LlmEvent::End(_)) => {}
//!                 Err(error) => { /* the turn broke after its first token: no switch */ }
//!             }
//!         }
//!     }
//!     Err(exhausted) => { /* every tier failed: play the apology */ }
//! }
//! # }
//! ```

pub mod anthropic;
pub mod apology;
pub mod breaker;
pub mod build;
pub mod canned;
pub mod chain;
pub mod clips;
pub mod deepgram;
pub mod elevenlabs;
pub mod error;
pub mod espeak;
pub mod google_tts;
pub mod llm;
pub mod openai;
pub mod pocketsphinx;
pub mod polly;
pub mod sse;
pub mod stt;
pub mod tts;
pub mod wav;

pub use apology::{apology_audio, apology_text, ApologySource};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use build::{build_chains, platform_key_secret, platform_keys_needed, AgentChains, BuildContext, SkippedTier};
pub use chain::{
    Attempt, AttemptOutcome, Breakers, Chain, ChainConfig, Chained, ChainedAudio, ChainedLlm, Exhausted, LlmChain,
    SttChain, TtsChain,
};
pub use error::ProviderError;
pub use llm::{FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, Message, ToolCall, ToolDefinition};
pub use stt::{SttBackend, SttConfig, SttEvent, SttProvider, SttSession, Transcript};
pub use tts::{AudioChunk, AudioStream, TtsProvider, TtsRequest};
