//! Who the caller acts as, for the rule and the triggers: read from the role catalog in Rust, so
//! that no search_path can change the answer.

use pgrx::prelude::*;

/// Whether the current role (inside a SECURITY DEFINER function: its owner) is a superuser.
/// The counter guard uses it: only memory_ext's own definer triggers run as the owner.
#[pg_extern(stable, parallel_safe)]
pub fn _current_role_is_superuser() -> bool {
    // SAFETY: a catalog look-up of the current role.
    unsafe { pg_sys::superuser() }
}

/// Whether the role the caller acts as (its SET ROLE role, also inside SECURITY DEFINER
/// functions) bypasses row-level security: a superuser, or a BYPASSRLS role such as Supabase's
/// `service_role`. The authorization rule lets such roles at every conversation, as RLS does.
#[pg_extern(stable, parallel_safe)]
fn _caller_bypasses_rls() -> bool {
    // SAFETY: catalog look-ups of the outer role of this backend.
    unsafe {
        let role = pg_sys::GetOuterUserId();
        pg_sys::superuser_arg(role) || pg_sys::has_bypassrls_privilege(role)
    }
}
