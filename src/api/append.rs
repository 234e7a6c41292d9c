//! The row-level insert triggers of memory.conversation_messages (see sql/triggers.sql for what
//! an insert goes through), and the statement-level pair that brackets them with a frame
//! (`core::statement_frames`): a multi-row INSERT checks the caller's access to a conversation,
//! locks it and finds its next seq once, at its first row, instead of once per row.
//!
//! `_message_before_insert` runs as the caller: the access check under the caller's RLS, the size
//! limits, validation and the token count, the search words, the author (the per-minute limit
//! follows in SQL, which raises memory_ext's own SQLSTATEs). `_message_before_insert_write` runs
//! as the extension's owner (SECURITY DEFINER): the conversation's lock, an idempotent retry, the
//! seq, the tool-call checks. Both are declared with search_path = pg_catalog, pg_temp
//! (sql/triggers.sql), so the statements below are always planned under it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::num::NonZeroUsize;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use pgrx::{FromDatum, JsonB, PgBuiltInOids, PgOid, PgSqlErrorCode, PgTupleDesc, Uuid};

use super::context::not_found;
use super::identity::current_user_id;
use super::limits::{check_message_size, check_tool_call_count};
use super::stored::kept_plan_or_raise as plan;
use super::tokens::count_message;
use crate::core::error::clip;
use crate::core::statement_frames::{
    AccessKey, Applied, Counted, Frame, Frames, Locked, RuleLists, StatementKey, Writable,
};
use crate::sql_error::{fail, fail_with_hint, spi_failed};

thread_local! {
    pub(super) static FRAMES: RefCell<Frames> = RefCell::new(Frames::default());
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

pub(super) const UUID: PgOid = PgOid::BuiltIn(PgBuiltInOids::UUIDOID);
const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
const JSONB: PgOid = PgOid::BuiltIn(PgBuiltInOids::JSONBOID);
pub(super) const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);

// As the caller. The rule as RLS applies it: a role that bypasses RLS may write anywhere, everyone
// else where the authorization rule says (owner and editors); a conversation the caller cannot see
// is no row at all.
const WRITABLE: &str = "SELECT c.encoding, c.archived_at IS NOT NULL, c.user_id, \
       NOT row_security_active('memory.conversations') \
       OR memory._can_write_conversation(c.id, c.user_id, $2) \
  FROM memory.conversations c WHERE c.id = $1";
// As the caller, after WRITABLE: the lists of the rule on the row, where the table carries it.
const RULE_LISTS: &str = "SELECT c.readers, c.editors FROM memory.conversations c WHERE c.id = $1";
// As the owner (an editor may not lock the conversation's row under RLS).
const LOCK: &str = "SELECT c.encoding, c.last_seq FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE";
// As the owner: the lock of a statement's first row, and its count. Returns the encoding, the row's
// seq, whether it is the conversation's first message, the running total, and the threshold and
// auto-reply of the conversation's agent, if one applies.
const LOCK_AND_COUNT: &str =
    "UPDATE memory.conversations c SET message_count = c.message_count + 1, total_tokens = c.total_tokens + $2, \
       last_seq = c.last_seq + 1, updated_at = now() WHERE c.id = $1 \
     RETURNING c.encoding, c.last_seq, c.message_count, c.total_tokens, \
       (SELECT ag.summarize_threshold FROM memory.agents ag WHERE memory._agent_applies(ag, c.agent_id, c.user_id)), \
       (SELECT ag.auto_reply FROM memory.agents ag WHERE memory._agent_applies(ag, c.agent_id, c.user_id))";
const NEWEST_SEQ: &str =
    "SELECT m.seq FROM memory.conversation_messages m WHERE m.conversation_id = $1 ORDER BY m.seq DESC LIMIT 1";
const RETRIED: &str = "SELECT m.seq, (m.role, m.content, m.name, m.tool_calls, m.tool_call_id) \
       IS NOT DISTINCT FROM ($3, $4, $5, $6, $7) \
  FROM memory.conversation_messages m WHERE m.conversation_id = $1 AND m.idempotency_key = $2";
const CALL_CLASH: &str = "SELECT memory._tool_key_taken(ARRAY(SELECT $1 || kind || (call->>'id') \
  FROM jsonb_array_elements($2) AS call, unnest(ARRAY['/c/', '/g/']) AS kind))";
const RESULT_CLASH: &str =
    "SELECT memory._tool_key_taken(ARRAY[$1 || '/c/' || $2]) IS NULL, memory._tool_key_taken(ARRAY[$1 || '/r/' || $2]) IS NOT NULL";

macro_rules! trigger_function {
    ($finfo:ident, $name:ident, $body:path) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        /// # Safety
        /// Called by PostgreSQL's function manager only, with a valid `fcinfo`.
        #[no_mangle]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            // SAFETY: PostgreSQL passes a valid fcinfo; `trigger_data` checks it is a trigger call.
            unsafe { $body($crate::api::append::trigger_data(fcinfo, stringify!($name))) }
        }
    };
}
pub(super) use trigger_function;

trigger_function!(pg_finfo_memory_messages_statement_begin, memory_messages_statement_begin, statement_begin);
trigger_function!(pg_finfo_memory_messages_statement_end, memory_messages_statement_end, statement_end);
trigger_function!(pg_finfo_memory_message_before_insert, memory_message_before_insert, before_insert);
trigger_function!(pg_finfo_memory_message_before_insert_write, memory_message_before_insert_write, before_insert_write);

/// The trigger's data; raises when the function is called any other way.
pub(super) unsafe fn trigger_data<'a>(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> &'a pg_sys::TriggerData {
    // SAFETY: fcinfo is valid; its context is a TriggerData exactly when called as a trigger.
    unsafe {
        if !pgrx::trigger_support::called_as_trigger(fcinfo) {
            fail(
                PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                format!("{name} must be called as a trigger"),
            );
        }
        &*((*fcinfo).context as *const pg_sys::TriggerData)
    }
}

/// No tuple: what a statement trigger returns, and what skips a row.
pub(super) fn skip() -> pg_sys::Datum {
    pg_sys::Datum::null()
}

unsafe fn statement_begin(_: &pg_sys::TriggerData) -> pg_sys::Datum {
    if let Some(statement) = statement_key() {
        hook_transaction_end();
        // SAFETY: the current subtransaction's id.
        let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
        FRAMES.with_borrow_mut(|f| f.push(statement, sub));
    }
    skip()
}

unsafe fn statement_end(_: &pg_sys::TriggerData) -> pg_sys::Datum {
    if let Some(statement) = statement_key() {
        FRAMES.with_borrow_mut(|f| f.pop(statement));
    }
    skip()
}

/// The running statement: its active snapshot, which stays the same for all its rows.
pub(super) fn statement_key() -> Option<StatementKey> {
    // SAFETY: reading the active snapshot, after checking there is one.
    unsafe {
        if !pg_sys::ActiveSnapshotSet() {
            return None;
        }
        let snap = pg_sys::GetActiveSnapshot();
        Some(StatementKey { snapshot: snap as usize, command_id: (*snap).curcid })
    }
}

/// Reads the running statement's frame, when it has one.
pub(super) fn in_frame<T>(statement: Option<StatementKey>, f: impl FnOnce(&mut Frame) -> T) -> Option<T> {
    let statement = statement?;
    FRAMES.with_borrow_mut(|frames| frames.current(statement).map(f))
}

fn hook_transaction_end() {
    if !HOOKED.get() {
        // SAFETY: registering this backend's callbacks once; they only touch backend memory.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
        }
        HOOKED.set(true);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT && event != pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE {
        FRAMES.with_borrow_mut(Frames::clear);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        FRAMES.with_borrow_mut(|f| f.abort_subtransaction(sub));
    }
}

/// The columns the triggers read and set, by name (their numbers are looked up once per row). The
/// last RULE_COLUMNS of them exist only where the messages carry the authorization rule on the
/// row (the distributed layout, docs/scaling.md): the insert trigger copies the conversation's
/// owner, readers and editors onto each new row there.
const RULE_COLUMNS: usize = 3;
const COLUMNS: [&str; 16] = [
    "conversation_id",
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "metadata",
    "token_count",
    "search_vector",
    "author_id",
    "seq",
    "created_at",
    "idempotency_key",
    "owner",
    "readers",
    "editors",
];

/// The numbers of these columns in a relation's descriptor (0 for a missing one of the last
/// `optional`); raises when any other is missing.
pub(super) fn column_numbers<const N: usize>(desc: pg_sys::TupleDesc, names: &[&str; N], optional: usize) -> [i32; N] {
    let mut attnos = [0; N];
    // SAFETY: the relation's own descriptor and its attributes. Names compared as bytes (no UTF-8
    // check per row and column: that cost a bulk insert 6%).
    let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked(desc) };
    for att in (0..tupdesc.len()).filter_map(|i| tupdesc.get(i)).filter(|a| !a.attisdropped) {
        // SAFETY: a NameData holds a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr(att.attname.data.as_ptr()) }.to_bytes();
        if let Some(c) = names.iter().position(|c| c.as_bytes() == name) {
            attnos[c] = i32::from(att.attnum);
        }
    }
    std::mem::forget(tupdesc);
    if let Some(i) = attnos[..N - optional].iter().position(|a| *a <= 0) {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("memory_ext's insert trigger needs column {}", names[i]),
        );
    }
    attnos
}

/// The inserted row, read and rewritten by column name.
struct NewRow {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
    attnos: [i32; COLUMNS.len()],
    set: Vec<(i32, Option<pg_sys::Datum>)>,
}

impl NewRow {
    fn of(data: &pg_sys::TriggerData) -> Self {
        // SAFETY: a row trigger's relation and tuple are valid for the call.
        let desc = unsafe { (*data.tg_relation).rd_att };
        let attnos = column_numbers(desc, &COLUMNS, RULE_COLUMNS);
        NewRow { tuple: data.tg_trigtuple, desc, attnos, set: Vec::new() }
    }

    fn attno(&self, column: &str) -> i32 {
        self.attnos[COLUMNS.iter().position(|c| *c == column).expect("one of COLUMNS")]
    }

    fn raw(&self, column: &str) -> Option<pg_sys::Datum> {
        let attno = NonZeroUsize::new(self.attno(column) as usize).expect("attno is positive");
        // SAFETY: the trigger's tuple with its relation's descriptor.
        unsafe { pgrx::heap_getattr_raw(self.tuple, attno, self.desc) }
    }

    fn get<T: FromDatum>(&self, column: &str, type_oid: pg_sys::Oid) -> Option<T> {
        // SAFETY: the column's datum, of the column's type.
        self.raw(column).and_then(|d| unsafe { T::from_polymorphic_datum(d, false, type_oid) })
    }

    fn text(&self, column: &str) -> Option<String> {
        self.get::<String>(column, pg_sys::TEXTOID)
    }

    /// Bytes of a column's value as pg_column_size counts them (0 for NULL).
    fn column_size(&self, column: &str) -> i64 {
        // SAFETY: a varlena datum of the tuple.
        self.raw(column).map_or(0, |d| unsafe { pg_sys::toast_datum_size(d) } as i64)
    }

    fn set(&mut self, column: &str, value: Option<pg_sys::Datum>) {
        let attno = self.attno(column);
        self.set.push((attno, value));
    }

    /// Whether the table carries the authorization rule on its rows (owner, readers, editors).
    fn carries_rule(&self) -> bool {
        self.attnos[COLUMNS.len() - RULE_COLUMNS..].iter().all(|a| *a > 0)
    }

    /// The row to insert: the trigger's tuple with the columns set.
    fn into_datum(self) -> pg_sys::Datum {
        if self.set.is_empty() {
            return pg_sys::Datum::from(self.tuple);
        }
        let cols: Vec<i32> = self.set.iter().map(|(a, _)| *a).collect();
        let values: Vec<pg_sys::Datum> = self.set.iter().map(|(_, v)| v.unwrap_or(pg_sys::Datum::from(0))).collect();
        let nulls: Vec<bool> = self.set.iter().map(|(_, v)| v.is_none()).collect();
        // SAFETY: the tuple and descriptor of the trigger; the arrays hold cols.len() entries.
        let tuple = unsafe {
            pg_sys::heap_modify_tuple_by_cols(
                self.tuple,
                self.desc,
                cols.len() as i32,
                cols.as_ptr() as *mut i32,
                values.as_ptr() as *mut pg_sys::Datum,
                nulls.as_ptr() as *mut bool,
            )
        };
        pg_sys::Datum::from(tuple)
    }

    fn conversation_id(&self) -> Uuid {
        self.get::<Uuid>("conversation_id", pg_sys::UUIDOID)
            .unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "conversation_id must not be NULL"))
    }
}

fn arg<'a>(value: Option<pg_sys::Datum>, oid: PgOid) -> DatumWithOid<'a> {
    match value {
        // SAFETY: a datum of the statement's parameter type, alive for the call.
        Some(d) => unsafe { DatumWithOid::new(d, oid.value()) },
        None => DatumWithOid::null_oid(oid.value()),
    }
}

pub(super) fn run<T>(f: impl FnOnce(&mut SpiClient) -> SpiResult<T>) -> T {
    Spi::connect_mut(|client| f(client)).unwrap_or_else(|e| spi_failed(e))
}

unsafe fn before_insert(data: &pg_sys::TriggerData) -> pg_sys::Datum {
    let mut row = NewRow::of(data);
    let conv = row.conversation_id();
    let me = current_user_id();
    let statement = statement_key();
    // SAFETY: the role the caller acts as.
    let role = unsafe { pg_sys::GetUserId() }.to_u32();
    let key = AccessKey { conversation: *conv.as_bytes(), user: me.map(|u| *u.as_bytes()), role };
    let writable = match in_frame(statement, |f| f.writable.get(&key).cloned()).flatten() {
        Some(w) => w,
        None => {
            let w = check_writable(conv, me, row.carries_rule());
            in_frame(statement, |f| f.writable.insert(key, w.clone()));
            w
        }
    };
    // cheap size checks before any parsing or counting
    let (role, content, name, call_id) =
        (row.text("role"), row.text("content"), row.text("name"), row.text("tool_call_id"));
    let octets = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() as i64);
    if content.is_some() {
        check_message_size(
            octets(&content)
                + row.column_size("tool_calls")
                + octets(&call_id)
                + row.column_size("metadata")
                + octets(&name),
        );
    }
    let calls = row.get::<JsonB>("tool_calls", pg_sys::JSONBOID).map(|j| j.0);
    check_tool_call_count(calls.as_ref().and_then(|c| c.as_array()).map_or(0, |a| a.len() as i32));
    // validates role, name, tool_calls and tool_call_id, and counts what build_context will emit
    let tokens = count_message(
        role.as_deref(),
        content.as_deref(),
        calls.as_ref(),
        name.as_deref(),
        &writable.encoding,
        call_id.as_deref(),
    );
    let owner = writable.owner.map(Uuid::from_bytes);
    let words = search_words(conv, owner, row.raw("content"), row.raw("tool_calls"));
    in_frame(statement, |f| f.counted_with.insert(key.conversation, writable.encoding.clone()));
    row.set("token_count", tokens.into_datum());
    row.set("search_vector", words);
    // the author is whoever appends, never a value the caller supplies
    row.set("author_id", me.into_datum());
    // and the rule on the row is its conversation's, whatever the caller supplies
    if let Some(rule) = &writable.rule {
        let uuids = |ids: &[[u8; 16]]| ids.iter().map(|u| Uuid::from_bytes(*u)).collect::<Vec<_>>().into_datum();
        row.set("owner", owner.into_datum());
        row.set("readers", uuids(&rule.readers));
        row.set("editors", uuids(&rule.editors));
    }
    row.into_datum()
}

/// The row's search words: memory._search_vector, called directly as an INSERT that computed them
/// would call it (through SPI each row would start an executor: 10 µs a row in a bulk insert).
/// None when search is off.
fn search_words(
    conv: Uuid,
    owner: Option<Uuid>,
    content: Option<pg_sys::Datum>,
    calls: Option<pg_sys::Datum>,
) -> Option<pg_sys::Datum> {
    let config = super::settings::_search_config()?;
    let (config_oid, function_oid) = search_function(&config);
    let args = [Some(pg_sys::Datum::from(config_oid)), conv.into_datum(), owner.into_datum(), content, calls];
    // SAFETY: the function's own argument types, in its order.
    unsafe { call_function(function_oid, &args) }
}

const SEARCH_VECTOR: &std::ffi::CStr = c"memory._search_vector(regconfig,uuid,uuid,text,jsonb)";

thread_local! {
    /// Call information of the functions called directly, per function: made once per backend in
    /// TopMemoryContext (plpgsql keeps the compiled function in it).
    static FUNCTIONS: RefCell<HashMap<u32, usize>> = RefCell::new(HashMap::new());
    /// The search configuration's name and oid, and memory._search_vector's oid.
    static SEARCH: RefCell<Option<(String, pg_sys::Oid, pg_sys::Oid)>> = const { RefCell::new(None) };
    static CATALOG_HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// The configuration's oid and the words function's, resolved once per backend and again after a
/// change to functions or text search configurations (catalog invalidation), or of the setting.
fn search_function(config: &str) -> (pg_sys::Oid, pg_sys::Oid) {
    hook_catalog_changes();
    if let Some((_, c, f)) = SEARCH.with_borrow(|s| s.clone()).filter(|(name, _, _)| name == config) {
        return (c, f);
    }
    let name = std::ffi::CString::new(config).unwrap_or_default();
    // SAFETY: the input functions of regconfig and regprocedure, on C strings (under the trigger's
    // search_path, pg_catalog: what the ::regconfig cast of a statement would find). Unknown names
    // raise, as the cast would.
    let (c, f) = unsafe {
        (
            pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::regconfigin, &[name.as_c_str().into_datum()]),
            pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::regprocedurein, &[SEARCH_VECTOR.into_datum()]),
        )
    };
    let found = (c.unwrap_or(pg_sys::InvalidOid), f.unwrap_or(pg_sys::InvalidOid));
    SEARCH.with_borrow_mut(|s| *s = Some((config.to_owned(), found.0, found.1)));
    found
}

fn hook_catalog_changes() {
    if !CATALOG_HOOKED.get() {
        // SAFETY: registering this backend's invalidation callbacks once.
        unsafe {
            for cache in [pg_sys::SysCacheIdentifier::PROCOID, pg_sys::SysCacheIdentifier::TSCONFIGOID] {
                pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(on_catalog_change), pg_sys::Datum::from(0));
            }
        }
        CATALOG_HOOKED.set(true);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_catalog_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    // the old call information stays allocated (a few hundred bytes per change of a function)
    FUNCTIONS.with_borrow_mut(HashMap::clear);
    SEARCH.with_borrow_mut(|s| *s = None);
}

/// Calls a function by oid with these arguments (None: NULL), as the expression of a statement
/// would; its result (None: NULL) in the current memory context.
unsafe fn call_function(oid: pg_sys::Oid, args: &[Option<pg_sys::Datum>]) -> Option<pg_sys::Datum> {
    hook_catalog_changes();
    let flinfo = match FUNCTIONS.with_borrow(|f| f.get(&oid.to_u32()).copied()) {
        Some(p) => p as *mut pg_sys::FmgrInfo,
        None => {
            // SAFETY: call information allocated for the backend's lifetime.
            let p = unsafe {
                let p =
                    pg_sys::MemoryContextAllocZero(pg_sys::TopMemoryContext, std::mem::size_of::<pg_sys::FmgrInfo>())
                        as *mut pg_sys::FmgrInfo;
                pg_sys::fmgr_info_cxt(oid, p, pg_sys::TopMemoryContext);
                p
            };
            FUNCTIONS.with_borrow_mut(|f| f.insert(oid.to_u32(), p as usize));
            p
        }
    };
    // SAFETY: a call frame sized for the arguments, with valid call information.
    unsafe {
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + std::mem::size_of::<pg_sys::NullableDatum>() * args.len();
        let fcinfo = pg_sys::palloc0(size) as *mut pg_sys::FunctionCallInfoBaseData;
        (*fcinfo).flinfo = flinfo;
        (*fcinfo).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        (*fcinfo).nargs = args.len() as i16;
        for (slot, value) in (*fcinfo).args.as_mut_slice(args.len()).iter_mut().zip(args) {
            (slot.value, slot.isnull) = value.map_or((pg_sys::Datum::from(0), true), |d| (d, false));
        }
        let call = (*flinfo).fn_addr.expect("fmgr_info sets fn_addr");
        let result = pg_sys::ffi::pg_guard_ffi_boundary(|| call(fcinfo));
        let isnull = (*fcinfo).isnull;
        pg_sys::pfree(fcinfo.cast());
        (!isnull).then_some(result)
    }
}

/// The caller's check, as the caller: may it append to the conversation? With `rule`, also the
/// readers and editors the new rows carry.
fn check_writable(conv: Uuid, me: Option<Uuid>, rule: bool) -> Writable {
    let found = run(|c| {
        let table = c.update(plan(c, WRITABLE, &[UUID, UUID]), None, &[conv.into(), me.into()])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        Ok(Some((row.get::<String>(1)?, row.get::<bool>(2)?, row.get::<Uuid>(3)?, row.get::<bool>(4)?)))
    });
    let Some((encoding, archived, owner, writable)) = found else {
        not_found(conv);
    };
    if writable != Some(true) {
        fail_with_hint(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("conversation {conv} is shared with you read-only"),
            "Its owner can make you an editor.",
        );
    }
    if archived == Some(true) {
        fail_with_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("conversation {conv} is archived"),
            "memory.unarchive_conversation(id) reopens it.",
        );
    }
    let rule = rule.then(|| {
        run(|c| {
            let table = c.select(plan(c, RULE_LISTS, &[UUID]), None, &[conv.into()])?;
            let row = table.first();
            let list =
                |n| row.get::<Vec<Uuid>>(n).map(|l| l.unwrap_or_default().iter().map(|u| *u.as_bytes()).collect());
            Ok(RuleLists { readers: list(1)?, editors: list(2)? })
        })
    });
    Writable { encoding: encoding.unwrap_or_default(), owner: owner.map(|o| *o.as_bytes()), rule }
}

unsafe fn before_insert_write(data: &pg_sys::TriggerData) -> pg_sys::Datum {
    let mut row = NewRow::of(data);
    let conv = row.conversation_id();
    let statement = statement_key();
    let key = row.text("idempotency_key");
    let mut tokens = row.get::<i32>("token_count", pg_sys::INT4OID).unwrap_or(0);
    let cached = in_frame(statement, |f| f.locked.get(conv.as_bytes()).cloned()).flatten();
    let locked = match cached {
        Some(l) => l,
        // A statement's first row of a conversation no running statement has written to, and no
        // retry to look for: its lock is the UPDATE that counts it.
        None if key.is_none()
            && in_frame(statement, |_| ()).is_some()
            && !FRAMES.with_borrow(|f| f.knows(conv.as_bytes())) =>
        {
            lock_and_count(conv, tokens, statement)
        }
        None => lock(conv),
    };
    in_frame(statement, |f| f.written.insert(*conv.as_bytes()));
    let (role, call_id, calls_raw) = (row.text("role"), row.text("tool_call_id"), row.raw("tool_calls"));
    // A retried append (same idempotency key, same message) is already stored: skip it. Under the
    // lock, so concurrent retries see each other.
    if let Some(key) = key {
        let (content, name) = (row.text("content"), row.text("name"));
        let stored = run(|c| {
            let args = [
                conv.into(),
                key.as_str().into(),
                role.as_deref().into(),
                content.as_deref().into(),
                name.as_deref().into(),
                arg(calls_raw, JSONB),
                call_id.as_deref().into(),
            ];
            let table = c.update(plan(c, RETRIED, &[UUID, TEXT, TEXT, TEXT, TEXT, JSONB, TEXT]), None, &args)?;
            if table.is_empty() {
                return Ok(None);
            }
            let row = table.first();
            Ok(Some((row.get::<i64>(1)?.unwrap_or_default(), row.get::<bool>(2)? == Some(true))))
        });
        match stored {
            Some((_, true)) => return skip(),
            Some((seq, false)) => fail_with_hint(
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!(
                    "idempotency_key \"{}\" was already used for a different message (seq {seq}) of this conversation",
                    clip(&key)
                ),
                "Use a new key for each new message; reuse a key only to retry the same append.",
            ),
            None => {}
        }
    }
    // The encoding may change only while a conversation has no messages: when it held none as this
    // statement locked it, and the caller's trigger counted with another encoding (it read the
    // conversation before the lock), count again.
    let counted_with = in_frame(statement, |f| f.counted_with.get(conv.as_bytes()).cloned()).flatten();
    if locked.was_empty && counted_with.as_deref() != Some(locked.encoding.as_str()) {
        let calls = row.get::<JsonB>("tool_calls", pg_sys::JSONBOID).map(|j| j.0);
        let (content, name) = (row.text("content"), row.text("name"));
        tokens = count_message(
            role.as_deref(),
            content.as_deref(),
            calls.as_ref(),
            name.as_deref(),
            &locked.encoding,
            call_id.as_deref(),
        );
        row.set("token_count", tokens.into_datum());
    }
    check_tool_calls(conv, calls_raw, role.as_deref(), call_id.as_deref());
    // Whether the statement's end must look further (memory._append_follow_up_due): known from
    // the running total when this statement counted the conversation's lock, else assumed.
    in_frame(statement, |f| {
        let due = f.applied.get_mut(conv.as_bytes()).is_none_or(|a| {
            a.counted.total_tokens += i64::from(tokens);
            a.counted.follow_up(role.as_deref() == Some("user"))
        });
        f.follow_up |= due;
    });

    let seq = locked.next_seq;
    in_frame(statement, |f| f.locked.insert(*conv.as_bytes(), Locked { next_seq: seq + 1, ..locked }));
    row.set("seq", seq.into_datum());
    if row.raw("created_at").is_none() {
        // SAFETY: the transaction's start, what now() returns.
        row.set("created_at", Some(pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() })));
    }
    row.into_datum()
}

/// Locks the conversation (appends to it serialise here, until the transaction ends) and finds
/// the seq of its next message: after its high-water mark (kept across rewinds) and after its
/// newest message, read after the lock is granted.
fn lock(conv: Uuid) -> Locked {
    let (encoding, last_seq, newest) = run(|c| {
        let table = c.update(plan(c, LOCK, &[UUID]), None, &[conv.into()])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        let (encoding, last_seq) = (row.get::<String>(1)?, row.get::<i64>(2)?);
        let newest = c.update(plan(c, NEWEST_SEQ, &[UUID]), None, &[conv.into()])?;
        let newest = if newest.is_empty() { None } else { newest.first().get_one::<i64>()? };
        Ok(Some((encoding, last_seq, newest)))
    })
    .unwrap_or_else(|| not_found(conv));
    Locked {
        encoding: encoding.unwrap_or_default(),
        was_empty: newest.is_none(),
        next_seq: last_seq.unwrap_or(0).max(newest.unwrap_or(0)) + 1,
    }
}

/// Locks the conversation with the UPDATE that counts this row (one message, its tokens, its seq:
/// the conversation's last_seq plus one, which no running statement has passed), and remembers
/// what it added for the statement's end, which settles the difference with the rows it inserted.
fn lock_and_count(conv: Uuid, tokens: i32, statement: Option<StatementKey>) -> Locked {
    let (locked, applied) = run(|c| {
        let table = c.update(plan(c, LOCK_AND_COUNT, &[UUID, INT8]), None, &[conv.into(), i64::from(tokens).into()])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        let seq = row.get::<i64>(2)?.unwrap_or_default();
        let locked = Locked {
            encoding: row.get::<String>(1)?.unwrap_or_default(),
            was_empty: row.get::<i64>(3)? == Some(1),
            next_seq: seq,
        };
        // the total before this row: each row of the statement adds its own (before_insert_write)
        let total = row.get::<i64>(4)?.unwrap_or_default() - i64::from(tokens);
        let counted = counted(total, row.get::<i32>(5)?, row.get::<bool>(6)?);
        Ok(Some((locked, Applied { rows: 1, tokens: i64::from(tokens), last_seq: seq, counted })))
    })
    .unwrap_or_else(|| not_found(conv));
    in_frame(statement, |f| f.applied.insert(*conv.as_bytes(), applied));
    locked
}

/// A conversation's running total with its agent's threshold and auto-reply, as the UPDATE returned
/// them.
fn counted(total_tokens: i64, agent_threshold: Option<i32>, auto_reply: Option<bool>) -> Counted {
    Counted {
        total_tokens,
        summarize_threshold: crate::gucs::agent_summarize_threshold(agent_threshold),
        auto_reply: auto_reply == Some(true),
    }
}

/// A tool call's id is used once per conversation; a tool result answers an earlier call that has
/// no result yet. Through the GIN index of the tool keys (memory._tool_key_taken).
fn check_tool_calls(conv: Uuid, calls: Option<pg_sys::Datum>, role: Option<&str>, call_id: Option<&str>) {
    let prefix = conv.to_string();
    if calls.is_some() {
        let clash = run(|c| {
            c.update(plan(c, CALL_CLASH, &[TEXT, JSONB]), None, &[prefix.as_str().into(), arg(calls, JSONB)])?
                .first()
                .get_one::<String>()
        });
        if let Some(key) = clash {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "duplicate tool call id \"{}\": an earlier message of this conversation already made that call",
                    clip(&key.chars().skip(39).collect::<String>())
                ),
            );
        }
    }
    if role == Some("tool") {
        let id = call_id.unwrap_or_default();
        let (unmatched, answered) = run(|c| {
            c.update(plan(c, RESULT_CLASH, &[TEXT, TEXT]), None, &[prefix.as_str().into(), id.into()])?
                .first()
                .get_two::<bool, bool>()
        });
        if unmatched == Some(true) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("tool_call_id \"{}\" matches no earlier assistant tool call in this conversation", clip(id)),
            );
        }
        if answered == Some(true) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("tool call \"{}\" already has a result", clip(id)),
            );
        }
    }
}
