//! Every setting of the extension, defined in `_PG_init`.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static DEFAULT_ENCODING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"cl100k_base"));
pub static USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TRUST_USER_ID_SETTING: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static PRELOAD_TOKENIZERS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static SUMMARIZE_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(6000);

pub fn define() {
    GucRegistry::define_string_guc(
        c"memory.default_encoding",
        c"Tokenizer of new conversations (cl100k_base, o200k_base, chars4 or a model name).",
        c"",
        &DEFAULT_ENCODING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.user_id",
        c"User id (uuid) for RLS when no JWT claims are present: for trusted application servers and psql.",
        c"Ignored when memory.trust_user_id_setting is off.",
        &USER_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.trust_user_id_setting",
        c"Whether memory.current_user_id() falls back to the memory.user_id setting.",
        c"Turn off where end users hold SQL logins: any role can SET memory.user_id.",
        &TRUST_USER_ID_SETTING,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.preload_tokenizers",
        c"Build the tokenizers in the postmaster when memory_ext is in shared_preload_libraries.",
        c"Saves ~50-120 ms on the first token count of every connection; costs memory in the postmaster.",
        &PRELOAD_TOKENIZERS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.summarize_threshold",
        c"Tokens not covered by the newest summary above which a conversation is summarized.",
        c"",
        &SUMMARIZE_THRESHOLD,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
}

pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}
