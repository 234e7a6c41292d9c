//! The end of an INSERT into memory.conversation_messages: the conversations' counters
//! (message_count, total_tokens, last_seq) settled against the rows the statement inserted, read
//! from its transition table. A statement's first row of a conversation has usually counted
//! itself already, in the UPDATE that locked the conversation (`append::lock_and_count`): a
//! one-row append then ends here without another statement. What is left over (a multi-row
//! statement's other rows, a row dropped after it was counted, a recount under the lock) is one
//! UPDATE per conversation. Then the NOTIFY per message. The follow-up work (summaries,
//! auto-replies, embeddings, facts) stays in SQL (memory._messages_after_insert_checks, which
//! raises memory_ext's own SQLSTATEs), fired only when the row triggers saw that it may be due.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

use super::append::{column_numbers, in_frame, run, skip, statement_key, trigger_function, INT8, UUID};
use super::stored::kept_plan_or_raise as plan;
use crate::core::statement_frames::{owed, Added, ConversationId};
use crate::gucs;
use crate::sql_error::fail;

// As the owner (the trigger is SECURITY DEFINER): what a statement still owes a conversation. An
// unused seq ($5) is given back only while it is still the conversation's last: nothing after it.
const SETTLE: &str = "UPDATE memory.conversations c SET message_count = c.message_count + $2, \
       total_tokens = c.total_tokens + $3, \
       last_seq = CASE WHEN $4 IS NOT NULL THEN greatest(c.last_seq, $4) \
                       WHEN c.last_seq = $5 THEN $5 - 1 ELSE c.last_seq END, \
       updated_at = now() \
     WHERE c.id = $1";

trigger_function!(pg_finfo_memory_messages_after_insert, memory_messages_after_insert, after_insert);

unsafe fn after_insert(data: &pg_sys::TriggerData) -> pg_sys::Datum {
    let notify = gucs::NOTIFY_MESSAGES.get();
    let (added, mut rows) = read_added(data, notify);
    let applied = in_frame(statement_key(), |f| std::mem::take(&mut f.applied)).unwrap_or_default();
    let mut convs: Vec<&ConversationId> =
        added.keys().chain(applied.keys().filter(|c| !added.contains_key(*c))).collect();
    convs.sort();
    for conv in convs {
        let (a, n) = (applied.get(conv), added.get(conv));
        if let Some(o) = owed(a, n) {
            run(|c| {
                let args = [
                    Uuid::from_bytes(*conv).into(),
                    o.rows.into(),
                    o.tokens.into(),
                    o.last_seq.into(),
                    o.unused_seq.into(),
                ];
                c.update(plan(c, SETTLE, &[UUID, INT8, INT8, INT8, INT8]), None, &args).map(|_| ())
            });
        }
    }
    // NOTIFY memory_messages per message, in conversation and seq order (ids only: anyone may
    // LISTEN, and only RLS decides who reads the row)
    rows.sort_unstable();
    for (conv, seq, id) in rows {
        let payload = format!(
            "{{\"conversation_id\" : \"{}\", \"id\" : \"{}\", \"seq\" : {seq}}}",
            Uuid::from_bytes(conv),
            Uuid::from_bytes(id)
        );
        // SAFETY: pg_notify(text, text), called as SQL would.
        unsafe {
            pgrx::direct_function_call::<()>(
                pg_sys::pg_notify,
                &["memory_messages".into_datum(), payload.into_datum()],
            );
        }
    }
    skip()
}

/// The rows the statement inserted, per conversation, read from its transition table; with
/// `each`, also every row's conversation, seq and id.
type Each = Vec<(ConversationId, i64, [u8; 16])>;

unsafe fn read_added(data: &pg_sys::TriggerData, each: bool) -> (HashMap<ConversationId, Added>, Each) {
    let store = data.tg_newtable;
    if store.is_null() {
        fail(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "memory._messages_after_insert needs REFERENCING NEW TABLE",
        );
    }
    // SAFETY: the trigger's relation; its transition table holds rows of its descriptor.
    let desc = unsafe { (*data.tg_relation).rd_att };
    let [conversation_id, token_count, seq, id] =
        column_numbers(desc, &["conversation_id", "token_count", "seq", "id"], 0);
    let last = conversation_id.max(token_count).max(seq).max(id);
    let mut out: HashMap<ConversationId, Added> = HashMap::new();
    let mut rows = Each::new();
    // SAFETY: a slot of the relation's descriptor, filled from the tuplestore one row at a time
    // (the values point into the stored row until the next one); read pointer 0 is rewound before
    // and after (the SQL trigger that follows reads the same table through a pointer of its own).
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            pg_sys::slot_getsomeattrs_int(slot, last);
            let value = |attno: i32| {
                let i = (attno - 1) as usize;
                (!*(*slot).tts_isnull.add(i)).then(|| *(*slot).tts_values.add(i))
            };
            let Some(conv) = value(conversation_id) else { continue };
            let conv = *(conv.cast_mut_ptr::<[u8; 16]>());
            let entry = out.entry(conv).or_default();
            entry.rows += 1;
            entry.tokens += value(token_count).map_or(0, |d| i64::from(d.value() as i32));
            let seq = value(seq).map_or(0, |d| d.value() as i64);
            entry.max_seq = entry.max_seq.max(seq);
            if each {
                rows.push((conv, seq, value(id).map_or([0; 16], |d| *(d.cast_mut_ptr::<[u8; 16]>()))));
            }
        }
        pg_sys::tuplestore_rescan(store);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
    (out, rows)
}

/// memory._append_follow_up_due(): whether the running INSERT needs the follow-up pass
/// (memory._messages_after_insert_checks, whose WHEN asks this once the rows are in): when its
/// rows may have left a conversation over its summarize threshold or asked an auto-reply agent
/// for an answer (a statement without a frame always may), or when embeddings or fact extraction
/// are on. It only reads the caller's own statement and settings.
#[no_mangle]
pub extern "C" fn pg_finfo_memory_append_follow_up_due() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL's function manager only.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn memory_append_follow_up_due(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let due = in_frame(statement_key(), |f| f.follow_up).unwrap_or(true)
        || gucs::string(&gucs::EMBEDDING_MODEL).is_some()
        || gucs::EXTRACT_FACTS.get();
    pg_sys::Datum::from(due)
}
