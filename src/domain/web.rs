//! The dashboard's sign-in secrets as the store keeps them: never the
//! secret itself, only its SHA-256, so a copy of the database (a backup, a
//! read replica) cannot be used to sign in. The secrets are 256 random bits
//! (drawn by the web part), so a plain hash needs no salt or stretching:
//! there is nothing to guess.

use std::fmt;

use sha2::{Digest, Sha256};

use super::ids::Agent;

/// The SHA-256 of a sign-in link's token or a session id, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash of the secret as the browser sends it (the token in the
    /// link, the cookie's value).
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lowercase hex, the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Only a prefix, so a log line can tell two apart without giving either away.
impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.to_hex()[..8])
    }
}

/// What opening a sign-in link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The link was good: a session now exists for this teammate.
    SignedIn(Agent),
    /// The link was opened before (links are single use).
    AlreadyUsed,
    /// The link is past its expiry.
    Expired,
    /// No such link (mistyped, or from another installation).
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_in_hex_and_debug_shows_a_prefix_only() {
        let h = SecretHash::of("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{h:?}"), "SecretHash(ba7816bf…)");
        assert_ne!(SecretHash::of("abd"), h);
    }
}
