//! Local servers speaking the OpenAI, Anthropic, Deepgram and ElevenLabs wire protocols with scripted replies, latency and faults.
