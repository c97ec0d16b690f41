//! Retries: which failures of a request are transient, how long to wait before the next try,
//! and [`RetryPolicy`], how many tries in all.
//!
//! Every request of the client goes through [`RegistryClient::retry`] (or `send`, which also
//! words the failure), but the HTTPS probe and the mount attempt, whose failure only means "do
//! it the other way". A failure is retried when the connection fails, resets or times out, or
//! the registry answers 5xx, 408 or 429 (as long as its `Retry-After` asks, at most
//! [`MAX_RETRY_AFTER`]; a 429 without one waits at least a second); a refused TLS certificate, an authentication failure, any other 4xx
//! and a digest mismatch are not. It relies on oci-client's error type, on
//! [`crate::registry::tls`] to recognise certificate failures, and on [`super::errors`] to
//! recognise digest mismatches.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::errors::{digest_in_io, Request};
use super::{HostClients, RegistryClient};
use crate::registry::{Error, Reference};

/// The longest wait a registry's `Retry-After` gets: a registry asking for more is tried
/// again after this (a build must not hang for an hour on one header).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Retries of transient failures: `attempts` tries in all, waiting `base_delay * 2^n` (at most
/// `max_delay`) with +-50% jitter between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RegistryClient {
    /// Runs `op` until it succeeds, fails for good, or the retries are used up.
    pub(super) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let policy = self.options.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let Some(min_wait) = transient(&e) else {
                        return Err(e);
                    };
                    if attempt >= policy.attempts.max(1) {
                        return Err(e);
                    }
                    let wait = backoff(&policy, attempt).max(min_wait);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// [`Self::retry`]; a failure for good becomes `request`'s error on `reference` (see
    /// [`Self::remote_error`]).
    pub(super) async fn send<T, F, Fut>(
        &self,
        host: &HostClients,
        reference: &Reference,
        request: Request<'_>,
        op: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        self.retry(op)
            .await
            .map_err(|e| self.remote_error(host, reference, e, request))
    }
}

/// `Some(minimum wait)` when `e` is worth retrying.
fn transient(e: &OciDistributionError) -> Option<Duration> {
    // A certificate the client refuses is refused again.
    if crate::registry::tls::describe(e, "", None).is_some() {
        return None;
    }
    match e {
        OciDistributionError::RequestError(r) => {
            if r.is_builder() {
                return None;
            }
            match r.status() {
                Some(s) => status_wait(s.as_u16()),
                None => Some(Duration::ZERO),
            }
        }
        OciDistributionError::ServerError {
            code, retry_after, ..
        } => status_wait(*code).map(|wait| asked(*retry_after).unwrap_or(wait)),
        OciDistributionError::RegistryError {
            envelope,
            retry_after,
            ..
        } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests)
            .then(|| asked(*retry_after).unwrap_or(Duration::from_secs(1))),
        OciDistributionError::IoError(io) => {
            if digest_in_io(io).is_some() {
                None
            } else {
                Some(Duration::ZERO)
            }
        }
        // An `auth` round trip that failed on the network shows up as a missing token.
        OciDistributionError::AuthenticationFailure(_) => None,
        _ => None,
    }
}

/// The wait a `Retry-After` of `seconds` asks for, bounded by [`MAX_RETRY_AFTER`].
fn asked(seconds: Option<u64>) -> Option<Duration> {
    seconds.map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

fn status_wait(code: u16) -> Option<Duration> {
    match code {
        429 => Some(Duration::from_secs(1)),
        408 | 500..=599 => Some(Duration::ZERO),
        _ => None,
    }
}

/// The backoff before try `attempt + 1`: `base * 2^(attempt-1)`, capped, with +-50% jitter.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    let jitter = 0.5 + (random() % 1000) as f64 / 1000.0; // 0.5 ..= 1.5
    exp.mul_f64(jitter)
}

/// A cheap random number (jitter only).
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let hash = blake3::hash(format!("{now}-{n}-{}", std::process::id()).as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::errors::{auth_failure, digest_mismatch};
    use oci_client::errors::DigestError;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let wait = backoff(&policy, attempt);
            let nominal = (100u64 << (attempt - 1)).min(1000);
            assert!(
                wait >= Duration::from_millis(nominal / 2),
                "{attempt}: {wait:?}"
            );
            assert!(
                wait <= Duration::from_millis(nominal * 3 / 2),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn classification() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(transient(&server(500)), Some(Duration::ZERO));
        assert_eq!(transient(&server(503)), Some(Duration::ZERO));
        assert_eq!(transient(&server(429)), Some(Duration::from_secs(1)));
        assert_eq!(transient(&server(404)), None);
        // `Retry-After` is honoured, bounded; it never makes a permanent failure transient.
        let asking = |code, seconds| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
            retry_after: Some(seconds),
        };
        assert_eq!(transient(&asking(429, 7)), Some(Duration::from_secs(7)));
        assert_eq!(transient(&asking(503, 0)), Some(Duration::ZERO));
        assert_eq!(transient(&asking(503, 3600)), Some(MAX_RETRY_AFTER));
        assert_eq!(transient(&asking(404, 5)), None);
        assert_eq!(auth_failure(&server(401)), Some("401 Unauthorized"));
        let reset = OciDistributionError::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ));
        assert!(transient(&reset).is_some());
        let mismatch =
            OciDistributionError::IoError(std::io::Error::other(DigestError::VerificationError {
                expected: "a".into(),
                actual: "b".into(),
            }));
        assert!(transient(&mismatch).is_none());
        assert!(digest_mismatch(&mismatch).is_some());
    }
}
