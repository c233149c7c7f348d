//! Transcripts are personal data, so they are sealed (envelope-encrypted under the org's
//! transcript context, [`crate::calls::transcript_context`]) before they leave the worker:
//! the `call-events` queue, the outbox, the store and the `webhooks` queue only ever hold the
//! envelope.
//!
//! A queue message is at most 256 KiB (SQS). A `call.ended` whose body would pass
//! [`INLINE_BUDGET`] carries its transcript by reference instead: the envelope is kept in the
//! store as the call's transcript blob ([`golos_ports::CallStore::put_transcript_blob`]) for
//! [`BLOB_TTL_MS`], longer than a message can live in the queue and then in its dead-letter
//! queue (14 days each at most), and the consumer reads it from there. The `call.ended`
//! webhook does the same with the call record, which holds the envelope once the end is
//! recorded.

use crate::calls::transcript_context;
use crate::state::ControlState;
use base64::Engine as _;
use golos_domain::events::{CallEnded, SealedTranscript, Transcript, TranscriptTurn};
use golos_domain::{CallId, OrgId};
use golos_ports::{Envelope, PortError};

/// The largest message SQS accepts.
pub const QUEUE_MESSAGE_LIMIT: usize = 256 * 1024;
/// The largest body that carries its transcript inline: the limit less a margin for the
/// message's attributes and for what a forwarder (the outbox, a redrive) may add.
pub const INLINE_BUDGET: usize = 192 * 1024;
/// How long a transcript blob is kept for the event that references it: 30 days, more than
/// a message can spend in the queue (at most 14 days) and then in its dead-letter queue
/// (14 more). Erasing the call deletes it at once.
pub const BLOB_TTL_MS: i64 = 30 * 86_400_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The gzip magic: a sealed transcript's plaintext is gzipped JSON (text shrinks four- to
/// sixfold, which keeps a four-hour call's transcript inside a DynamoDB item's 400 KB);
/// transcripts sealed before were plain JSON, which never starts with these bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// A transcript larger than this once unpacked is refused as corrupt (a decompression bomb).
const MAX_TRANSCRIPT_BYTES: u64 = 64 * 1024 * 1024;

/// The envelope bytes of `turns` under the org's transcript context; `None` for no turns.
pub async fn seal(state: &ControlState, org: &OrgId, turns: &[TranscriptTurn]) -> Result<Option<Vec<u8>>, PortError> {
    use std::io::Write as _;
    if turns.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_vec(turns).map_err(PortError::invalid)?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::default());
    gzip.write_all(&json).map_err(PortError::invalid)?;
    let packed = gzip.finish().map_err(PortError::invalid)?;
    Ok(Some(state.crypto.encrypt(&packed, &transcript_context(org)).await?.to_bytes()))
}

/// The JSON of a sealed transcript (`Corrupt` if it is not the org's).
pub async fn open_json(state: &ControlState, org: &OrgId, envelope: &[u8]) -> Result<Vec<u8>, PortError> {
    use std::io::Read as _;
    let envelope = Envelope::from_bytes(envelope)?;
    let plain = state.crypto.decrypt(&envelope, &transcript_context(org)).await?;
    if !plain.starts_with(&GZIP_MAGIC) {
        return Ok(plain);
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(plain.as_slice())
        .take(MAX_TRANSCRIPT_BYTES)
        .read_to_end(&mut json)
        .map_err(|e| PortError::corrupt(format!("transcript: {e}")))?;
    Ok(json)
}

/// The turns of a sealed transcript (`Corrupt` if it is not the org's).
pub async fn open(state: &ControlState, org: &OrgId, envelope: &[u8]) -> Result<Vec<TranscriptTurn>, PortError> {
    let json = open_json(state, org, envelope).await?;
    serde_json::from_slice(&json).map_err(|e| PortError::corrupt(format!("transcript: {e}")))
}

/// Seals the call's `turns` into its `call.ended`: inline when the event still fits
/// [`INLINE_BUDGET`], otherwise as the call's transcript blob, referenced. The worker calls
/// this before the event is written anywhere.
pub async fn seal_into(state: &ControlState, ended: &mut CallEnded, turns: &[TranscriptTurn]) -> Result<(), PortError> {
    let Some(envelope) = seal(state, &ended.org_id, turns).await? else {
        ended.transcript = None;
        return Ok(());
    };
    ended.transcript = Some(Transcript::Sealed(SealedTranscript::Message { envelope: b64().encode(&envelope) }));
    let size =
        serde_json::to_vec(&golos_domain::events::CallEvent::Ended(ended.clone())).map_err(PortError::invalid)?.len();
    if size > INLINE_BUDGET {
        let expires_at = state.clock.now().plus_millis(BLOB_TTL_MS);
        state.calls.put_transcript_blob(&ended.org_id, &ended.call_id, &envelope, expires_at).await?;
        ended.transcript = Some(Transcript::Sealed(SealedTranscript::Blob));
        tracing::info!(call = %ended.call_id, size, "call.ended carries its transcript by reference");
    }
    Ok(())
}

/// What the consumer stores on the record: the envelope a `call.ended` carries, inline or by
/// reference. A reference whose blob is gone (erased, or expired) is `None`: the call is
/// still recorded and billed. Plaintext turns (an event queued before sealing existed) are
/// sealed here.
pub async fn envelope_of(state: &ControlState, ended: &CallEnded) -> Result<Option<Vec<u8>>, PortError> {
    match &ended.transcript {
        None => Ok(None),
        Some(Transcript::Plain(turns)) => seal(state, &ended.org_id, turns).await,
        Some(Transcript::Sealed(SealedTranscript::Message { envelope })) => {
            b64().decode(envelope).map(Some).map_err(|_| PortError::invalid("call.ended transcript is not base64"))
        }
        Some(Transcript::Sealed(SealedTranscript::Blob)) => {
            let blob = state.calls.transcript_blob(&ended.org_id, &ended.call_id, state.clock.now()).await?;
            if blob.is_none() {
                tracing::warn!(call = %ended.call_id, "the transcript blob of a call.ended is gone (erased or expired)");
            }
            Ok(blob)
        }
        Some(Transcript::Sealed(SealedTranscript::CallRecord)) => {
            Err(PortError::invalid("a call.ended event cannot reference its own call record"))
        }
    }
}

/// `POST /v1/call-events` receives plaintext turns over TLS: sealed here, before queueing.
pub async fn seal_plain(state: &ControlState, ended: &mut CallEnded) -> Result<(), PortError> {
    if let Some(Transcript::Plain(turns)) = ended.transcript.take() {
        seal_into(state, ended, &turns).await?;
    }
    Ok(())
}

/// The `transcript` of a `call.ended` webhook: the record's envelope inline when it leaves
/// room in a message, else a reference to the call record.
pub fn for_webhook(envelope: Option<&[u8]>) -> serde_json::Value {
    let sealed = match envelope {
        None => return serde_json::Value::Null,
        Some(bytes) if bytes.len() / 3 * 4 + 4 <= INLINE_BUDGET / 2 => {
            SealedTranscript::Message { envelope: b64().encode(bytes) }
        }
        Some(_) => SealedTranscript::CallRecord,
    };
    serde_json::to_value(sealed).unwrap_or_default()
}

/// For the webhook deliverer: the plaintext turns of a `call.ended` webhook's
/// `data.transcript`, decrypted at the last moment before delivery. `None` when the call had
/// no transcript, or it was erased since the webhook was queued (a reference finds nothing).
pub async fn open_webhook_transcript(
    state: &ControlState,
    org: &OrgId,
    call: &CallId,
    transcript: &serde_json::Value,
) -> Result<Option<Vec<TranscriptTurn>>, PortError> {
    if transcript.is_null() {
        return Ok(None);
    }
    let sealed: SealedTranscript = serde_json::from_value(transcript.clone())
        .map_err(|_| PortError::invalid("webhook transcript is not a sealed transcript"))?;
    let envelope = match sealed {
        SealedTranscript::Message { envelope } => {
            Some(b64().decode(envelope).map_err(|_| PortError::invalid("webhook transcript is not base64"))?)
        }
        SealedTranscript::CallRecord => state.calls.get(org, call).await?.and_then(|record| record.transcript),
        SealedTranscript::Blob => state.calls.transcript_blob(org, call, state.clock.now()).await?,
    };
    match envelope {
        Some(envelope) => open(state, org, &envelope).await.map(Some),
        None => Ok(None),
    }
}
