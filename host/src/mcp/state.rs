//! The sealed `requestState` of a 2026-07-28 approval round trip.
//!
//! A 2026-07-28 server keeps no session: it answers a call that needs
//! approval with `input_required`, and the client echoes the state back on
//! its retry. That echo is attacker-controlled, so the state is sealed with
//! an HMAC-SHA256 under the server's key and bound to the plugin's sha256,
//! the tool, the sha256 of the canonical arguments, an expiry and a nonce.
//! Opening it checks the seal, the expiry, and that the nonce was not used
//! before (in this process): an altered, expired or replayed state is
//! refused. Servers that share the key (`--state-key FILE`) open each
//! other's states; the single use is then per process.

use crate::hash::{constant_time_eq, hex};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fewest key bytes accepted (HMAC-SHA256's output size).
pub const MIN_STATE_KEY_BYTES: usize = 32;

/// How long a sealed state stays good: the host's default approval
/// deadline.
const STATE_TTL: Duration = Duration::from_secs(5 * 60);

/// Keeps the MAC from meaning anything outside this one use of the key.
const DOMAIN: &[u8] = b"portcullis/mcp/request-state/v1\0";

/// The token's version prefix.
const PREFIX: &str = "ps1.";

/// The key that seals request states: at least [`MIN_STATE_KEY_BYTES`]
/// bytes, shared by every server that should accept the others' states.
pub struct StateKey(Vec<u8>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

/// A request-state key that is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request-state key has {bytes} bytes; at least {MIN_STATE_KEY_BYTES} are needed")]
pub struct StateKeyTooShort {
    /// How many bytes it had.
    pub bytes: usize,
}

impl TryFrom<Vec<u8>> for StateKey {
    type Error = StateKeyTooShort;

    fn try_from(key: Vec<u8>) -> Result<StateKey, StateKeyTooShort> {
        if key.len() < MIN_STATE_KEY_BYTES {
            return Err(StateKeyTooShort { bytes: key.len() });
        }
        Ok(StateKey(key))
    }
}

/// What a sealed state binds an approval to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Pending {
    pub(super) plugin_sha256: String,
    pub(super) tool: String,
    pub(super) arguments_sha256: String,
    /// Unix seconds after which the state is refused.
    pub(super) expires: u64,
    pub(super) nonce: String,
}

/// Seals and opens request states with one key; remembers used nonces.
pub(super) struct Sealer {
    key: Vec<u8>,
    /// Nonce -> expiry of every state opened, until it expires anyway.
    used: Mutex<HashMap<String, u64>>,
}

impl Sealer {
    /// A sealer with `key`.
    pub(super) fn new(key: StateKey) -> Sealer {
        Sealer {
            key: key.0,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// A sealer with a fresh random key (this process only).
    pub(super) fn random() -> Sealer {
        Sealer {
            key: random_bytes(),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Seals an approval request for `tool` with these digests.
    pub(super) fn seal(&self, plugin_sha256: &str, tool: &str, arguments_sha256: &str) -> String {
        let nonce = format!(
            "{:016x}{:016x}",
            crate::hash::random_u64(),
            crate::hash::random_u64()
        );
        let pending = Pending {
            plugin_sha256: plugin_sha256.to_string(),
            tool: tool.to_string(),
            arguments_sha256: arguments_sha256.to_string(),
            expires: now().saturating_add(STATE_TTL.as_secs()),
            nonce,
        };
        let payload = serde_json::to_vec(&pending).unwrap_or_default();
        let mac = hmac_sha256(&self.key, &[DOMAIN, &payload]);
        format!("{PREFIX}{}.{}", hex(&payload), hex(&mac))
    }

    /// Opens `token`: its seal must hold, it must not have expired, and its
    /// nonce is used up by this call. `Err` says why not, without echoing
    /// the token.
    pub(super) fn open(&self, token: &str) -> Result<Pending, String> {
        let altered = || "the requestState was altered or not sealed by this server".to_string();
        let rest = token.strip_prefix(PREFIX).ok_or_else(altered)?;
        let (payload, mac) = rest.split_once('.').ok_or_else(altered)?;
        let payload = unhex(payload).ok_or_else(altered)?;
        let mac = unhex(mac).ok_or_else(altered)?;
        let expected = hmac_sha256(&self.key, &[DOMAIN, &payload]);
        if !constant_time_eq(&expected, &mac) {
            return Err(altered());
        }
        let pending: Pending = serde_json::from_slice(&payload).map_err(|_| altered())?;
        let now = now();
        if pending.expires < now {
            return Err("the requestState has expired; call the tool again".into());
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, expires| *expires >= now);
        if used
            .insert(pending.nonce.clone(), pending.expires)
            .is_some()
        {
            return Err("the requestState was already used; approvals are used once".into());
        }
        Ok(pending)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 16 * 1024 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 32 bytes from the OS (`/dev/urandom`), or from the standard library's
/// OS-keyed hasher where there is none.
fn random_bytes() -> Vec<u8> {
    use std::io::Read;
    let mut key = vec![0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if read.is_err() {
        key = (0..4)
            .flat_map(|_| crate::hash::random_u64().to_le_bytes())
            .collect();
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya ", b"want for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_state_opens_once_and_only_unaltered() {
        let sealer = Sealer::random();
        let token = sealer.seal("aa", "p.t", "bb");
        let pending = sealer.open(&token).expect("opens");
        assert_eq!(pending.tool, "p.t");
        assert_eq!(pending.arguments_sha256, "bb");
        let replay = sealer.open(&token).expect_err("used once");
        assert!(replay.contains("already used"), "{replay}");
        // One flipped payload character breaks the seal.
        let fresh = sealer.seal("aa", "p.t", "bb");
        let mut bytes = fresh.into_bytes();
        bytes[10] = if bytes[10] == b'0' { b'1' } else { b'0' };
        let altered = sealer
            .open(&String::from_utf8(bytes).expect("ascii"))
            .expect_err("altered");
        assert!(altered.contains("altered"), "{altered}");
        // Another key's state is refused; a shared key opens it.
        let key = vec![7u8; 32];
        let a = Sealer::new(StateKey::try_from(key.clone()).expect("key"));
        let b = Sealer::new(StateKey::try_from(key).expect("key"));
        let token = a.seal("aa", "p.t", "bb");
        assert!(sealer.open(&token).is_err());
        assert!(b.open(&token).is_ok());
        assert_eq!(
            StateKey::try_from(vec![1; 31]).map(drop),
            Err(StateKeyTooShort { bytes: 31 })
        );
    }
}
