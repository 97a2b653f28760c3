//! Sign-in limits for `POST /sessions`. Every attempt runs argon2id (~19 MiB, tens of ms), so
//! unbounded sign-ins are both a guessing oracle and a memory bomb. Three limits:
//!
//! - a semaphore bounds the password verifications running at once on this server; an attempt
//!   that waits longer than [`HASH_WAIT`] for a slot is answered 503 with `Retry-After`;
//! - failures per operator name are counted **in the store** (`sign_in_failures`, migration 0010),
//!   so every server sharing a database sees the same count and lockout; unknown names are counted
//!   like known ones, so a lockout does not tell which names exist;
//! - failures per source address are counted **in memory** (per server), in a map bounded to
//!   [`MAX_ADDRESSES`] entries: an address is a property of a connection to this server, and a
//!   flood of addresses must not grow memory.
//!
//! After `lockout_after` failures a key is locked out for `lockout`, doubling with each further
//! failure up to `lockout_max`; during a lockout every attempt is answered 429 with `Retry-After`
//! without checking the password (so a correct password is refused too). A success clears the
//! account's count, not the address's (one known account must not launder an address's guesses).

use ferry_core::config::AuthConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a sign-in waits for a verification slot before it is answered 503.
pub const HASH_WAIT: Duration = Duration::from_secs(2);
/// The most source addresses remembered; beyond it the stalest are forgotten.
pub const MAX_ADDRESSES: usize = 10_000;

pub struct SignInLimits {
    pub cfg: AuthConfig,
    hashing: tokio::sync::Semaphore,
    /// Verifications running now, and the most ever seen at once (tests read it).
    active: AtomicUsize,
    peak: AtomicUsize,
    /// Address → (failures, last failure in ms).
    addresses: Mutex<HashMap<IpAddr, (i64, i64)>>,
}

/// A held verification slot; counts itself out when dropped.
pub struct Slot<'a> {
    limits: &'a SignInLimits,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limits.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SignInLimits {
    pub fn new(cfg: AuthConfig) -> SignInLimits {
        let n = cfg.sign_in_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 4)
        });
        SignInLimits {
            cfg,
            hashing: tokio::sync::Semaphore::new(n.max(1)),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// The most password verifications that ran at once since start.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Waits up to [`HASH_WAIT`] for a verification slot; none: answer 503.
    pub async fn slot(&self) -> Option<Slot<'_>> {
        let permit = tokio::time::timeout(HASH_WAIT, self.hashing.acquire())
            .await
            .ok()?
            .ok()?;
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Some(Slot {
            limits: self,
            _permit: permit,
        })
    }

    /// When a key with `failures` failures, the last at `last_at`, may try again (ms), if it is
    /// locked out at all.
    pub fn locked_until(&self, failures: i64, last_at: i64, threshold: u32) -> Option<i64> {
        let over = failures - i64::from(threshold.max(1));
        if over < 0 {
            return None;
        }
        let base = ms(self.cfg.lockout.0);
        let max = ms(self.cfg.lockout_max.0).max(base);
        let d = base.saturating_mul(1i64 << over.min(30)).min(max);
        Some(last_at.saturating_add(d))
    }

    /// Until when this address is locked out (ms), if it is.
    pub fn address_locked_until(&self, ip: IpAddr, now: i64) -> Option<i64> {
        let map = self.addresses.lock().ok()?;
        let (f, last) = *map.get(&ip)?;
        self.locked_until(f, last, self.cfg.address_lockout_after)
            .filter(|u| *u > now)
    }

    /// Counts a failure from `ip`.
    pub fn address_failed(&self, ip: IpAddr, now: i64) {
        let Ok(mut map) = self.addresses.lock() else {
            return;
        };
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            // Forget addresses whose last failure is older than the longest lockout; if that
            // frees nothing, the stalest tenth.
            let horizon = now - ms(self.cfg.lockout_max.0);
            map.retain(|_, (_, last)| *last >= horizon);
            if map.len() >= MAX_ADDRESSES {
                let mut lasts: Vec<i64> = map.values().map(|(_, l)| *l).collect();
                lasts.sort_unstable();
                let cut = lasts[MAX_ADDRESSES / 10];
                map.retain(|_, (_, last)| *last > cut);
            }
        }
        let e = map.entry(ip).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
    }

    /// How many addresses are remembered (tests check the bound).
    pub fn addresses_len(&self) -> usize {
        self.addresses.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// The store key of an operator name's failures; a name too long to be an operator's is hashed,
/// so that the table's rows stay small.
pub fn account_key(name: &str) -> String {
    if name.len() <= 64 {
        format!("account:{name}")
    } else {
        format!("account#{}", crate::auth::hash_token(name))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds from `now` to `until`, rounded up (for `Retry-After`).
pub fn retry_after(until: i64, now: i64) -> u64 {
    u64::try_from((until - now + 999) / 1000)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches a backoff that does not double, is not capped, or starts before the threshold.
    #[test]
    fn backoff_doubles_and_is_capped() {
        let l = SignInLimits::new(AuthConfig::default());
        assert_eq!(l.locked_until(4, 0, 5), None);
        assert_eq!(l.locked_until(5, 0, 5), Some(15_000));
        assert_eq!(l.locked_until(6, 0, 5), Some(30_000));
        assert_eq!(l.locked_until(7, 0, 5), Some(60_000));
        assert_eq!(l.locked_until(100, 0, 5), Some(15 * 60_000));
    }

    /// Catches an address map that grows without limit under a flood of source addresses.
    #[test]
    fn address_map_is_bounded() {
        let l = SignInLimits::new(AuthConfig::default());
        for i in 0..(MAX_ADDRESSES as u32 + 5_000) {
            l.address_failed(IpAddr::from(i.to_be_bytes()), i64::from(i));
        }
        assert!(l.addresses_len() <= MAX_ADDRESSES, "{}", l.addresses_len());
    }
}
