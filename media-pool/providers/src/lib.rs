//! Streaming STT/LLM/TTS ports, provider adapters over their real wire protocols, fallback chains and circuit breakers.
