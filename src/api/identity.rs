//! `memory.current_user_id()`: who the caller is, for RLS (SPEC §3).

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

use crate::gucs;
use crate::sql_error::fail;

fn setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns NULL or a pointer to the setting's current string, valid
    // until the setting changes; it is copied at once.
    let p = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if p.is_null() {
        return None;
    }
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn parse_uuid(text: &str, source: &str) -> Uuid {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes: Option<Vec<u8>> = (hex.len() == 32)
        .then(|| (0..16).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect())
        .flatten();
    match bytes.and_then(|b| Uuid::from_slice(&b).ok()) {
        Some(u) => u,
        None => fail(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, format!("{source} is not a uuid: \"{text}\"")),
    }
}

/// The `sub` claim PostgREST/Supabase put in `request.jwt.claims` (or the older
/// `request.jwt.claim.sub`); else, when trusted, the `memory.user_id` setting; else NULL.
/// Claims, when present, win: a request with claims but no `sub` is anonymous.
#[pg_extern(stable, parallel_safe)]
fn current_user_id() -> Option<Uuid> {
    if let Some(claims) = setting(c"request.jwt.claims") {
        let sub = serde_json::from_str::<serde_json::Value>(&claims)
            .ok()
            .and_then(|v| v.get("sub").and_then(|s| s.as_str()).map(str::to_owned))
            .filter(|s| !s.is_empty());
        return sub.map(|s| parse_uuid(&s, "the sub claim of request.jwt.claims"));
    }
    if let Some(sub) = setting(c"request.jwt.claim.sub") {
        return Some(parse_uuid(&sub, "request.jwt.claim.sub"));
    }
    if gucs::TRUST_USER_ID_SETTING.get() {
        return gucs::string(&gucs::USER_ID).map(|s| parse_uuid(&s, "memory.user_id"));
    }
    None
}
