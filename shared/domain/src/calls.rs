//! What a call is, in the words every hop uses: how it reached golos, why it ended, who
//! spoke a turn. One type each from the engine to the webhook (the wire form is the
//! snake_case name), so no hop translates a reason into a string and another parses it back.

use serde::{Deserialize, Serialize};

/// How a call reached golos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// A phone call to one of the org's numbers.
    Inbound,
    /// A call golos placed.
    Outbound,
    /// A browser or app over WebSocket.
    Web,
}

impl CallDirection {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Web => "web",
        }
    }
}

impl std::fmt::Display for CallDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call ended: the `end_reason` of `call.ended`, of the call record and of the
/// webhook, and the `reason` label of the worker's `calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    CallerHangup,
    /// The agent ended the call (the LLM's `end_call`).
    AgentHangup,
    /// No answer from the caller for the agent's silence timeout.
    SilenceTimeout,
    /// The agent's maximum call duration was reached.
    MaxDuration,
    Transfer,
    /// Something broke (transport, every provider tier): the record's status is `failed`.
    Failed,
    /// The worker's drain time ran out.
    ForcedShutdown,
    /// The org's balance, less what its live calls ran up, went below its credit limit.
    BalanceExhausted,
    /// The org's monthly minutes ran out.
    MinutesExhausted,
    /// The worker learned its lease was swept (heartbeats failed for a whole lease TTL):
    /// the control plane already billed the call as `worker_lost`, so the worker ends it.
    LeaseLost,
    /// Billed by the sweeper after its worker stopped heartbeating, to the last heartbeat.
    WorkerLost,
}

impl EndReason {
    pub const ALL: [Self; 11] = [
        Self::CallerHangup,
        Self::AgentHangup,
        Self::SilenceTimeout,
        Self::MaxDuration,
        Self::Transfer,
        Self::Failed,
        Self::ForcedShutdown,
        Self::BalanceExhausted,
        Self::MinutesExhausted,
        Self::LeaseLost,
        Self::WorkerLost,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CallerHangup => "caller_hangup",
            Self::AgentHangup => "agent_hangup",
            Self::SilenceTimeout => "silence_timeout",
            Self::MaxDuration => "max_duration",
            Self::Transfer => "transfer",
            Self::Failed => "failed",
            Self::ForcedShutdown => "forced_shutdown",
            Self::BalanceExhausted => "balance_exhausted",
            Self::MinutesExhausted => "minutes_exhausted",
            Self::LeaseLost => "lease_lost",
            Self::WorkerLost => "worker_lost",
        }
    }

    /// The reason's place in [`Self::ALL`] (per-reason counters are arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the call counts as an error: its record's status is `failed`, and the
    /// worker's error rate counts it.
    pub const fn is_error(self) -> bool {
        matches!(self, Self::Failed)
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who spoke a turn of a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptRole {
    /// The caller.
    User,
    /// The agent.
    Assistant,
    /// A function tool's result.
    Tool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_snake_case_names() {
        for reason in EndReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
            assert_eq!(EndReason::ALL[reason.index()], reason);
        }
        for direction in [CallDirection::Inbound, CallDirection::Outbound, CallDirection::Web] {
            assert_eq!(serde_json::to_value(direction).unwrap(), direction.as_str());
        }
        assert_eq!(serde_json::to_value(TranscriptRole::Assistant).unwrap(), "assistant");
        assert!(serde_json::from_str::<EndReason>("\"hung_up_somehow\"").is_err());
    }
}
