//! The signed caller: how one node tells another whose request a query serves.
//!
//! On a Citus cluster the coordinator resolves the caller (JWT claims, `memory.user_id`, the
//! login) and the workers evaluate the row-level security of the shards, in connections of
//! their own where none of the caller's settings are. `memory.pass_caller()` hands the caller
//! over as a transaction-local setting, `memory.caller`, which Citus copies to the workers:
//!
//! ```text
//! v1.<user uuid>.<session>.<expires, unix seconds>.<HMAC-SHA256, hex>
//! ```
//!
//! The MAC is keyed with `memory.node_secret` (the same on every node, readable by superusers
//! only), so no login can write a caller it was not given. `session` is Citus's global process
//! id of the coordinator's backend (which the workers' backends serving it report too; the
//! backend's pid without Citus): a value copied into another session does not verify there.
//! `expires` bounds the life of one that leaks, e.g. into a log.

use ring::hmac;

/// How long a signed caller verifies after `memory.pass_caller()` wrote it.
pub const LIFETIME_SECS: i64 = 3600;

/// The shortest `memory.node_secret` accepted: 32 characters, 256 bits of hex or more of text.
pub const MIN_SECRET_LEN: usize = 32;

const VERSION: &str = "v1";

/// A signed caller, as read from `memory.caller`.
#[derive(Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub user_id: &'a str,
    pub session: i64,
    pub expires: i64,
    mac: &'a str,
    signed: &'a str,
}

/// Why a signed caller was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// not of the form above
    Malformed,
    /// the MAC does not match: written without the node secret, or with another one
    BadSignature,
    /// signed for another session
    OtherSession,
    /// past its expiry
    Expired,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed => "it is not of the form memory.pass_caller() writes",
            Refusal::BadSignature => "its signature does not match this node's memory.node_secret",
            Refusal::OtherSession => "it was signed for another session",
            Refusal::Expired => "it has expired",
        }
    }
}

/// The bytes the MAC covers: everything of the token before it.
fn signed_part(user_id: &str, session: i64, expires: i64) -> String {
    format!("{VERSION}.{user_id}.{session}.{expires}")
}

fn mac_hex(secret: &str, signed: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, signed.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The token for `user_id` (a uuid's text) in `session`, verifying until `now + LIFETIME_SECS`.
pub fn sign(secret: &str, user_id: &str, session: i64, now: i64) -> String {
    let signed = signed_part(user_id, session, now + LIFETIME_SECS);
    let mac = mac_hex(secret, &signed);
    format!("{signed}.{mac}")
}

/// Splits a token into its fields (no check of the MAC yet).
pub fn parse(token: &str) -> Result<Token<'_>, Refusal> {
    let (signed, mac) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
    let mut fields = signed.split('.');
    let (Some(VERSION), Some(user_id), Some(session), Some(expires), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Refusal::Malformed);
    };
    let is_uuid = user_id.len() == 36
        && user_id
            .char_indices()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    let session = session.parse::<i64>().map_err(|_| Refusal::Malformed)?;
    let expires = expires.parse::<i64>().map_err(|_| Refusal::Malformed)?;
    let mac_ok = mac.len() == 64 && mac.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_uuid || !mac_ok {
        return Err(Refusal::Malformed);
    }
    Ok(Token { user_id, session, expires, mac, signed })
}

/// The user a token names, if its MAC is right under `secret`, it belongs to `session` and it
/// has not expired at `now`. The MAC is checked first and in constant time.
pub fn verify<'a>(secret: &str, token: &'a str, session: i64, now: i64) -> Result<&'a str, Refusal> {
    let t = parse(token)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mac: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&t.mac[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
    hmac::verify(&key, t.signed.as_bytes(), &mac).map_err(|_| Refusal::BadSignature)?;
    if t.session != session {
        return Err(Refusal::OtherSession);
    }
    if now >= t.expires {
        return Err(Refusal::Expired);
    }
    Ok(t.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const ALICE: &str = "6f1c1c52-0b7e-4c61-9a36-4f3c1b2f9a10";

    #[test]
    fn a_token_verifies_in_its_session_until_it_expires() {
        let t = sign(SECRET, ALICE, 10_000_012_345, 1_000);
        assert_eq!(verify(SECRET, &t, 10_000_012_345, 1_000), Ok(ALICE));
        assert_eq!(verify(SECRET, &t, 10_000_012_345, 1_000 + LIFETIME_SECS - 1), Ok(ALICE));
        assert_eq!(verify(SECRET, &t, 10_000_012_345, 1_000 + LIFETIME_SECS), Err(Refusal::Expired));
        assert_eq!(verify(SECRET, &t, 10_000_012_346, 1_000), Err(Refusal::OtherSession));
    }

    #[test]
    fn the_mac_is_hmac_sha256_of_the_fields_before_it() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            mac_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let t = sign(SECRET, ALICE, 7, 100);
        assert_eq!(
            t,
            format!("v1.{ALICE}.7.{}.{}", 100 + LIFETIME_SECS, mac_hex(SECRET, &signed_part(ALICE, 7, 3700)))
        );
    }

    #[test]
    fn any_changed_field_or_another_secret_breaks_the_signature() {
        let t = sign(SECRET, ALICE, 7, 100);
        let bob = t.replace(ALICE, "6f1c1c52-0b7e-4c61-9a36-4f3c1b2f9a11");
        assert_eq!(verify(SECRET, &bob, 7, 100), Err(Refusal::BadSignature));
        let later = t.replace(&format!(".{}.", 100 + LIFETIME_SECS), ".999999999.");
        assert_eq!(verify(SECRET, &later, 7, 100), Err(Refusal::BadSignature));
        let moved = t.replacen(".7.", ".8.", 1);
        assert_eq!(verify(SECRET, &moved, 8, 100), Err(Refusal::BadSignature));
        assert_eq!(verify("another secret of 32 characters!", &t, 7, 100), Err(Refusal::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_mac() {
        let mac = "0".repeat(64);
        for bad in [
            String::new(),
            ALICE.to_owned(),
            format!("v2.{ALICE}.7.100.{mac}"),
            format!("v1.not-a-uuid-at-all-but-36-chars-long.7.100.{mac}"),
            format!("v1.{ALICE}.seven.100.{mac}"),
            format!("v1.{ALICE}.7.100.{}", "0".repeat(63)),
            format!("v1.{ALICE}.7.100.{}", "g".repeat(64)),
            format!("v1.{ALICE}.7.100.extra.{mac}"),
        ] {
            assert_eq!(parse(&bad), Err(Refusal::Malformed), "{bad}");
        }
    }
}
