//! WS-UsernameToken with `PasswordDigest` (ONVIF Core §5.12, WS-Security UsernameToken
//! Profile 1.0): `Password = Base64(SHA-1(nonce ‖ created ‖ password))`, `Created` within
//! [`MAX_SKEW`] of our clock, each nonce accepted once while it is fresh.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nvrkit_media::WallTime;
use subtle::ConstantTimeEq as _;

use super::soap::UsernameToken;

/// How far `Created` may be from our clock, either way.
pub const MAX_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;
/// [`MAX_SKEW_MICROS`] as a duration.
pub const MAX_SKEW: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Nonces remembered at most; past that the oldest is forgotten (bounded memory: a nonce then
/// replays only if it is still within [`MAX_SKEW`] and 4,096 newer ones came since).
pub const MAX_NONCES: usize = 4096;
/// The longest nonce accepted, decoded.
pub const MAX_NONCE_LEN: usize = 128;

/// Why a request was not authorized (all answered `ter:NotAuthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `UsernameToken` in the header.
    #[error("no WS-Security UsernameToken")]
    Missing,
    /// Not a `#PasswordDigest` password (`#PasswordText` is refused).
    #[error("the password is not a PasswordDigest")]
    NotDigest,
    /// `Nonce` missing, not Base64 or too long.
    #[error("bad nonce")]
    BadNonce,
    /// `Created` missing or not RFC 3339.
    #[error("bad Created time")]
    BadCreated,
    /// `Created` more than [`MAX_SKEW`] from our clock.
    #[error("Created is more than 5 minutes from the device clock")]
    Stale,
    /// This nonce was already used.
    #[error("nonce replayed")]
    Replay,
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    Wrong,
}

/// Checks tokens against one user name and password.
#[derive(Debug)]
pub struct Verifier {
    user: String,
    pass: String,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<(Vec<u8>, i64)>,
    set: HashSet<Vec<u8>>,
}

/// `Base64(SHA-1(nonce ‖ created ‖ password))`.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    B64.encode(ctx.finish().as_ref())
}

impl Verifier {
    /// A verifier for this user name and password.
    pub fn new(user: impl Into<String>, pass: impl Into<String>) -> Verifier {
        Verifier {
            user: user.into(),
            pass: pass.into(),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Checks `token` at time `now`.
    pub fn verify(&self, token: Option<&UsernameToken>, now: WallTime) -> Result<(), AuthError> {
        let t = token.ok_or(AuthError::Missing)?;
        if !t.password_type.ends_with("#PasswordDigest") {
            return Err(AuthError::NotDigest);
        }
        let nonce = B64
            .decode(t.nonce.as_bytes())
            .map_err(|_| AuthError::BadNonce)?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return Err(AuthError::BadNonce);
        }
        let created = WallTime::parse_rfc3339(&t.created).map_err(|_| AuthError::BadCreated)?;
        let skew = now.as_micros().saturating_sub(created.as_micros());
        if skew.unsigned_abs() > MAX_SKEW_MICROS.unsigned_abs() {
            return Err(AuthError::Stale);
        }
        let expected = password_digest(&nonce, &t.created, &self.pass);
        let user_ok = t.username.as_bytes().ct_eq(self.user.as_bytes());
        let pass_ok = t.password.as_bytes().ct_eq(expected.as_bytes());
        if !bool::from(user_ok & pass_ok) {
            return Err(AuthError::Wrong);
        }
        // Only a correct digest takes a slot, so nobody without the password fills the cache.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let horizon = now.as_micros().saturating_sub(MAX_SKEW_MICROS);
        while let Some((_, at)) = seen.order.front() {
            if *at >= horizon && seen.order.len() < MAX_NONCES {
                break;
            }
            if let Some((n, _)) = seen.order.pop_front() {
                seen.set.remove(&n);
            }
        }
        if !seen.set.insert(nonce.clone()) {
            return Err(AuthError::Replay);
        }
        seen.order.push_back((nonce, now.as_micros()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(nonce: &[u8], created: &str, pass: &str) -> UsernameToken {
        UsernameToken {
            username: "admin".into(),
            password: password_digest(nonce, created, pass),
            password_type: "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest".into(),
            nonce: B64.encode(nonce),
            created: created.into(),
        }
    }

    #[test]
    fn digest_known_value() {
        // WS-Security UsernameToken Profile 1.0 §3.1 style: SHA-1 over nonce ‖ created ‖ pass.
        let d = password_digest(b"abc", "2026-12-03T11:00:00Z", "secret");
        assert_eq!(B64.decode(&d).unwrap().len(), 20);
        assert_eq!(d, password_digest(b"abc", "2026-12-03T11:00:00Z", "secret"));
        assert_ne!(d, password_digest(b"abd", "2026-12-03T11:00:00Z", "secret"));
    }

    #[test]
    fn accepts_once_refuses_the_rest() {
        let v = Verifier::new("admin", "secret");
        let now = WallTime::parse_rfc3339("2026-12-03T11:01:00Z").unwrap();
        let good = token(b"n1", "2026-12-03T11:00:00Z", "secret");
        assert_eq!(v.verify(Some(&good), now), Ok(()));
        assert_eq!(v.verify(Some(&good), now), Err(AuthError::Replay));
        assert_eq!(v.verify(None, now), Err(AuthError::Missing));
        let wrong = token(b"n2", "2026-12-03T11:00:00Z", "guess");
        assert_eq!(v.verify(Some(&wrong), now), Err(AuthError::Wrong));
        let stale = token(b"n3", "2026-12-03T10:50:00Z", "secret");
        assert_eq!(v.verify(Some(&stale), now), Err(AuthError::Stale));
        let future = token(b"n4", "2026-12-03T11:07:00Z", "secret");
        assert_eq!(v.verify(Some(&future), now), Err(AuthError::Stale));
        let mut text = token(b"n5", "2026-12-03T11:00:00Z", "secret");
        text.password_type = "…#PasswordText".into();
        assert_eq!(v.verify(Some(&text), now), Err(AuthError::NotDigest));
        let mut bad = token(b"n6", "2026-12-03T11:00:00Z", "secret");
        bad.nonce = "!!".into();
        assert_eq!(v.verify(Some(&bad), now), Err(AuthError::BadNonce));
        bad = token(b"n7", "yesterday", "secret");
        assert_eq!(v.verify(Some(&bad), now), Err(AuthError::BadCreated));
    }

    #[test]
    fn nonce_cache_is_bounded() {
        let v = Verifier::new("admin", "secret");
        let now = WallTime::parse_rfc3339("2026-12-03T11:00:00Z").unwrap();
        for i in 0..(MAX_NONCES + 100) {
            let t = token(&(i as u64).to_be_bytes(), "2026-12-03T11:00:00Z", "secret");
            assert_eq!(v.verify(Some(&t), now), Ok(()));
        }
        let seen = v.seen.lock().unwrap();
        assert!(seen.order.len() <= MAX_NONCES);
        assert_eq!(seen.order.len(), seen.set.len());
    }
}
