//! `memory.current_user_id()`: who the caller is, for RLS.
//!
//! Who may assert an identity depends on the login (the session user), never on settings a
//! session can change for itself:
//! 1. A login bound to one identity by the operator (`ALTER ROLE alice SET memory.login_user_id
//!    = '…'`, a superuser-only setting) is that identity, whatever else the session sets.
//! 2. JWT claims (`request.jwt.claims`, `request.jwt.claim.sub`) count only in sessions whose
//!    login is a member of a role in `memory.jwt_gateway_roles` (PostgREST's `authenticator`),
//!    or a superuser. When present there, they win.
//! 3. `memory.user_id` counts only in sessions whose login is a member of a role in
//!    `memory.user_id_roles` (an application server's pooled role), or a superuser, and only
//!    while `memory.trust_user_id_setting` is on.
//! 4. Otherwise: no identity (NULL), which sees nothing and writes nothing.
//!
//! Before all of these, a signed caller (`memory.caller`, written by `memory.pass_caller()`, see
//! `caller.rs`) wins, and is an error when it does not verify. On a connection Citus opened from
//! another node, once `memory.node_secret` is set, only the signed caller and a login's bound
//! identity count (2. and 3. would trust settings the other node copied over unchecked).

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

use crate::core::error::clip;
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

pub(super) fn parse_uuid(text: &str, source: &str) -> Uuid {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes: Option<Vec<u8>> = (hex.len() == 32)
        .then(|| (0..16).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect())
        .flatten();
    match bytes.and_then(|b| Uuid::from_slice(&b).ok()) {
        Some(u) => u,
        None => fail(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("{source} is not a uuid: \"{}\"", clip(text)),
        ),
    }
}

/// Whether the session's login is a superuser or a member of one of the comma-separated roles.
/// Roles that do not exist are skipped.
fn login_is_member_of_any(roles: Option<String>) -> bool {
    // SAFETY: plain catalog look-ups of the current backend's session user.
    let login = unsafe { pg_sys::GetSessionUserId() };
    if unsafe { pg_sys::superuser_arg(login) } {
        return true;
    }
    let Some(roles) = roles else { return false };
    roles.split(',').map(str::trim).filter(|r| !r.is_empty()).any(|r| {
        let Ok(name) = CString::new(r) else { return false };
        let role = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
        role != pg_sys::InvalidOid && unsafe { pg_sys::is_member_of_role(login, role) }
    })
}

fn claims_sub() -> Option<Option<Uuid>> {
    if let Some(claims) = setting(c"request.jwt.claims") {
        let sub = serde_json::from_str::<serde_json::Value>(&claims)
            .ok()
            .and_then(|v| v.get("sub").and_then(|s| s.as_str()).map(str::to_owned))
            .filter(|s| !s.is_empty());
        return Some(sub.map(|s| parse_uuid(&s, "the sub claim of request.jwt.claims")));
    }
    setting(c"request.jwt.claim.sub").map(|sub| Some(parse_uuid(&sub, "request.jwt.claim.sub")))
}

/// The identity of the caller for row-level security (see the module comment for who may
/// assert what). Claims, when trusted and present, win: a request with claims but no `sub` is
/// anonymous.
#[pg_extern(stable, parallel_safe)]
pub(crate) fn current_user_id() -> Option<Uuid> {
    if let Some(token) = gucs::string(&gucs::CALLER) {
        return Some(super::caller::verified_caller(&token));
    }
    if let Some(bound) = gucs::string(&gucs::LOGIN_USER_ID) {
        return Some(parse_uuid(&bound, "memory.login_user_id"));
    }
    if super::caller::is_citus_internal_connection() {
        return None;
    }
    let has_claims = setting(c"request.jwt.claims").is_some() || setting(c"request.jwt.claim.sub").is_some();
    if has_claims && login_is_member_of_any(gucs::string(&gucs::JWT_GATEWAY_ROLES)) {
        return claims_sub().flatten();
    }
    if gucs::TRUST_USER_ID_SETTING.get() {
        if let Some(id) = gucs::string(&gucs::USER_ID) {
            if login_is_member_of_any(gucs::string(&gucs::USER_ID_ROLES)) {
                return Some(parse_uuid(&id, "memory.user_id"));
            }
        }
    }
    None
}
