//! Calls: list and detail with the decrypted transcript and per-turn metrics. The media
//! pool writes the records; this is the read side.

use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::{CallId, OrgId};
use golos_ports::{CallRecord, EncryptionContext, Page, PageRequest};

/// The encryption context of a call transcript: bound to the org and the purpose.
pub fn transcript_context(org: &OrgId) -> EncryptionContext {
    EncryptionContext::new([("org", org.as_str()), ("purpose", "transcript")])
}

/// The encryption context of a call's conversation snapshot (what a reconnect resumes):
/// bound to the org and the call, so a snapshot read back under another org or for another
/// call does not decrypt.
pub fn snapshot_context(org: &OrgId, call: &CallId) -> EncryptionContext {
    EncryptionContext::new([("org", org.as_str()), ("call", call.as_str()), ("purpose", "snapshot")])
}

pub async fn list(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<CallRecord>> {
    Ok(state.calls.list(org, page).await?)
}

/// One call of `org` and its transcript, decrypted (`[]` when it has none).
pub async fn get(state: &ControlState, org: &OrgId, call_id: &str) -> ControlResult<(CallRecord, serde_json::Value)> {
    let id = CallId::parse(call_id).map_err(|_| ControlError::not_found(format!("call {call_id}")))?;
    let mut call = state.calls.get(org, &id).await?.ok_or_else(|| ControlError::not_found(format!("call {id}")))?;
    let transcript = match call.transcript.take() {
        Some(bytes) => {
            let json = crate::transcripts::open_json(state, org, &bytes).await?;
            serde_json::from_slice(&json).map_err(ControlError::internal)?
        }
        None => serde_json::json!([]),
    };
    Ok((call, transcript))
}
