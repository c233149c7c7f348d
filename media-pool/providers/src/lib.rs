//! Streaming STT/LLM/TTS ports, provider adapters over their real wire protocols, fallback
//! chains and circuit breakers.
//!
//! - Ports: [`LlmProvider`], [`TtsProvider`], [`SttProvider`]; one error type,
//!   [`ProviderError`].
//! - Chains: [`Chain`] (`LlmChain`, `TtsChain`, `SttChain`) switch tiers before the first
//!   output only, with a first-output deadline and a [`CircuitBreaker`] per provider.

pub mod anthropic;
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

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use build::{build_chains, secret_names, AgentChains, BuildContext, SkippedTier};
pub use chain::{
    Attempt, AttemptOutcome, Breakers, Chain, ChainConfig, Chained, ChainedAudio, ChainedLlm, Exhausted, LlmChain,
    SttChain, TtsChain,
};
pub use error::ProviderError;
pub use llm::{FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, Message, ToolCall, ToolDefinition};
pub use stt::{SttBackend, SttConfig, SttEvent, SttProvider, SttSession, Transcript};
pub use tts::{AudioChunk, AudioStream, TtsProvider, TtsRequest};
