//! Erasing a caller's personal data (admins, `EraseData`): one call (`DELETE /v1/calls/{id}`)
//! or every call of a phone number, from or to it (`POST /v1/erasures`).
//!
//! An erased call keeps its record as a billing tombstone (id, agent, times, duration,
//! reason, cost, `erased_at`): the ledger already bills it by id, and invoices must still
//! add up. Its transcript, metrics (they carry the client's metadata), transcript blob and
//! conversation snapshot are deleted, and its numbers kept only masked. A call still in
//! progress stays erased when its end arrives. Recordings, once they exist, are erased here too.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::{CallId, OrgId, PhoneNumber, Timestamp};
use golos_ports::{CallRecord, PageRequest, PortError};

/// Erases one call's personal data and its snapshot; `NotFound` if the org has no such call.
pub async fn erase_call_data(
    state: &ControlState,
    org: &OrgId,
    call: &CallId,
    at: Timestamp,
) -> Result<CallRecord, PortError> {
    let erased = state.calls.erase(org, call, at).await?;
    state.stores.contexts.delete(call).await?;
    Ok(erased)
}

/// Erases every call of `org` from or to `number`; returns the calls erased.
pub async fn erase_number(
    state: &ControlState,
    org: &OrgId,
    number: &PhoneNumber,
    at: Timestamp,
) -> Result<Vec<CallId>, PortError> {
    let mut found = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let result = state.calls.find_by_number(org, number, &page).await?;
        found.extend(result.items.into_iter().map(|call| call.id));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
            None => break,
        }
    }
    for call in &found {
        match erase_call_data(state, org, call, at).await {
            // Deleted by retention meanwhile: nothing left to erase.
            Ok(_) | Err(PortError::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(found)
}

/// Erases one call's personal data for an admin; the record stays as a tombstone.
pub async fn erase_call(state: &ControlState, actor: &Actor, org: &OrgId, call_id: &str) -> ControlResult<()> {
    let call = CallId::parse(call_id).map_err(|_| ControlError::not_found(format!("call {call_id}")))?;
    erase_call_data(state, org, &call, state.clock.now()).await?;
    audit::record(state, actor, org, "call.erase", call.as_str()).await;
    Ok(())
}

/// What an erasure by number did.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub calls: Vec<CallId>,
    pub at: Timestamp,
}

/// Erases every call of `org` from or to `number` for an admin.
pub async fn erase_by_number(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    number: &PhoneNumber,
) -> ControlResult<Erasure> {
    let at = state.clock.now();
    let calls = erase_number(state, org, number, at).await?;
    audit::record(state, actor, org, "data.erase", &number.masked()).await;
    tracing::info!(number = %number, calls = calls.len(), "personal data of a number erased");
    Ok(Erasure { calls, at })
}
