//! Tokens sealed at rest: ChaCha20-Poly1305 (ring) under the key of
//! `[secrets]`, a random nonce per seal, and the mailbox name as associated
//! data, so a sealed token copied to another mailbox's row does not open.
//!
//! Layout of a sealed value: 12-byte nonce, then ciphertext and 16-byte tag.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::settings::Secret;

/// The 32-byte key that seals tokens. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SealKey(Arc<LessSafeKey>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// Why a sealed value could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The value was sealed under another key (or for another mailbox), or
    /// was altered: `secrets.key` is not the key the tokens were stored with.
    #[error(
        "cannot decrypt the stored token: secrets.key is not the key it was stored with \
         (or the row was altered); restore the old key or sign in again"
    )]
    WrongKey,
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
}

impl SealKey {
    /// 32 bytes, base64 (standard or URL-safe, padding optional), as
    /// `head -c 32 /dev/urandom | base64` writes them.
    pub fn parse(text: &str) -> Result<SealKey, String> {
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or("expected 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`)")?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "expected 32 bytes in base64, got {} bytes (`head -c 32 /dev/urandom | base64`)",
                b.len()
            )
        })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map_err(|_| "not a ChaCha20-Poly1305 key".to_owned())?;
        Ok(SealKey(Arc::new(LessSafeKey::new(key))))
    }

    /// Seals `secret` for `mailbox`.
    pub fn seal(&self, secret: &Secret, mailbox: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = secret.expose().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(mailbox.as_bytes()),
                &mut out,
            )
            .map_err(|_| SealError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.append(&mut out);
        Ok(sealed)
    }

    /// Opens what [`SealKey::seal`] made for `mailbox`.
    pub fn open(&self, sealed: &[u8], mailbox: &str) -> Result<Secret, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::WrongKey);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::WrongKey)?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(mailbox.as_bytes()), &mut body)
            .map_err(|_| SealError::WrongKey)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SealError::WrongKey)?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_mailbox() {
        let key = SealKey::parse(KEY).unwrap();
        let token = Secret::new("1//refresh-token-value");
        let sealed = key.seal(&token, "support").unwrap();
        assert!(
            !sealed.windows(8).any(|w| w == b"refresh-"),
            "plaintext in the seal"
        );
        assert_eq!(key.open(&sealed, "support").unwrap(), token);
        assert_eq!(key.open(&sealed, "sales"), Err(SealError::WrongKey));
        let other = SealKey::parse(&KEY.replace('M', "N")).unwrap();
        assert_eq!(other.open(&sealed, "support"), Err(SealError::WrongKey));
        assert_ne!(key.seal(&token, "support").unwrap(), sealed, "fresh nonce");
        assert_eq!(key.open(&sealed[..5], "support"), Err(SealError::WrongKey));
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(SealKey::parse(KEY).is_ok());
        let short = SealKey::parse("c2hvcnQ=").unwrap_err();
        assert!(short.contains("got 5 bytes"), "{short}");
        assert!(SealKey::parse("not base64!").is_err());
        assert!(!format!("{:?}", SealKey::parse(KEY).unwrap()).contains("MDEy"));
    }
}
