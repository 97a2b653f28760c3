//! Waves that halt themselves: whether a batch's due device may start its migration now.
//!
//! A batch may name a canary (the first computers by name) that must finish before the rest
//! start, a `max_failure_rate` (default 0: the first failure halts the batch) and
//! `max_concurrent` migrations. A halted batch starts no new device and resumes only by an
//! operator's act. Devices due at one moment start spread over the seed's 15-minute window.
//! Everything here is pure; the server counts, stores the halt and asks [`gate`].

use crate::wire::{Batch, Canary, WaveState};

/// The seed's window: an enforced migration starts within 15 minutes.
pub const JITTER_WINDOW_MS: i64 = 15 * 60_000;

/// How a batch's devices stand, as the gate counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaveCounts {
    /// Devices whose migration is running now.
    pub running: u64,
    /// Devices whose migration finished well.
    pub succeeded: u64,
    /// Devices whose migration failed (rolled back or not).
    pub failed: u64,
    /// Canary computers whose migration finished well, and that failed.
    pub canary_succeeded: u64,
    pub canary_failed: u64,
    /// Of the failed devices (and of the canary's), those an operator accepted by resuming
    /// ([`WaveState::accepted`]): by device, so that one that stops failing does not let a new
    /// failure pass for it.
    pub accepted_failed: u64,
    pub accepted_canary_failed: u64,
}

/// What the gate says of a due device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Hand it its migration.
    Go,
    /// Not now, and why (the device asks again at its next check-in).
    Wait(String),
    /// The batch must halt now, and why: store the halt, then start nothing.
    Halt(String),
}

/// How many of `computers` are the canary: `5`, or `"10%"` of them rounded up (at least one when
/// the share is above zero); never more than the batch.
pub fn canary_size(c: Option<&Canary>, computers: usize) -> usize {
    match c {
        None => 0,
        Some(Canary::Devices(n)) => (*n as usize).min(computers),
        Some(Canary::Share(s)) => match parse_share(s) {
            Ok(p) => ((computers as u64 * u64::from(p)).div_ceil(100) as usize).min(computers),
            Err(_) => 0,
        },
    }
}

/// `"10%"` → 10; a whole percentage from 1 to 100.
pub fn parse_share(s: &str) -> Result<u8, String> {
    let n = s
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<u8>().ok())
        .filter(|n| (1..=100).contains(n));
    n.ok_or_else(|| {
        format!("canary: `{s}` is neither a number of devices (5) nor a percentage (\"10%\")")
    })
}

/// The batch's canary: the first `canary_size` of its computers by name (lower case).
pub fn canary<'a>(b: &Batch, computers: &'a [String]) -> &'a [String] {
    debug_assert!(computers.windows(2).all(|w| w[0] <= w[1]));
    &computers[..canary_size(b.canary.as_ref(), computers.len())]
}

/// Checks a batch's wave settings as the operator saves them.
pub fn check(b: &Batch) -> Result<(), String> {
    if let Some(Canary::Share(s)) = &b.canary {
        parse_share(s)?;
    }
    if !(0.0..=1.0).contains(&b.max_failure_rate) {
        return Err(format!(
            "max_failure_rate: {} is not a share of devices from 0 to 1 (0.05 for 5%)",
            b.max_failure_rate
        ));
    }
    if b.max_concurrent == Some(0) {
        return Err("max_concurrent: 0 would start no device; leave it out for no limit".into());
    }
    Ok(())
}

/// Whether a due device of the batch may start now. `is_canary`: the device is one of
/// [`canary`]'s; `canary_size`: how many the canary has.
pub fn gate(
    b: &Batch,
    wave: &WaveState,
    counts: &WaveCounts,
    canary_size: usize,
    is_canary: bool,
) -> Gate {
    if let Some(h) = &wave.halted {
        return Gate::Wait(format!(
            "batch `{}` is halted: {} (an operator resumes it)",
            b.name, h.reason
        ));
    }
    let new_failures = counts.failed.saturating_sub(counts.accepted_failed);
    if counts.canary_failed > counts.accepted_canary_failed {
        return Gate::Halt(format!(
            "{} of the canary's {canary_size} device(s) failed",
            counts.canary_failed
        ));
    }
    let finished = counts.succeeded + counts.failed;
    if new_failures > 0 && new_failures as f64 > b.max_failure_rate * finished as f64 {
        return Gate::Halt(format!(
            "{new_failures} device(s) failed of {finished} finished{}, more than max_failure_rate {}",
            if wave.accepted_failures > 0 {
                format!(
                    " (after the {} accepted at the last resume)",
                    wave.accepted_failures
                )
            } else {
                String::new()
            },
            b.max_failure_rate
        ));
    }
    // A canary failure an operator accepted (by resuming) no longer holds the rest back.
    let canary_done = counts.canary_succeeded + counts.accepted_canary_failed;
    if !is_canary && (canary_done as usize) < canary_size {
        return Gate::Wait(format!(
            "waiting for the canary: {} of {canary_size} device(s) finished well",
            counts.canary_succeeded
        ));
    }
    if let Some(max) = b.max_concurrent
        && counts.running >= u64::from(max)
    {
        return Gate::Wait(format!(
            "{} migration(s) running, max_concurrent is {max}",
            counts.running
        ));
    }
    Gate::Go
}

/// When a device due at `enforced` (ms) starts: a fixed point of the 15-minute window drawn
/// from the batch and the computer's name, so that a batch's devices do not start at once.
pub fn start_at(batch: &str, computer: &str, enforced: i64) -> i64 {
    let mut h = crate::model::Fnv::new();
    h.write_str(batch);
    h.write_str("/");
    h.write_str(&crate::host::host_key(computer));
    enforced + (h.finish() % JITTER_WINDOW_MS as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Halt;
    use proptest::prelude::*;

    fn batch(canary: Option<Canary>, rate: f64, max: Option<u32>) -> Batch {
        Batch {
            name: "Wave 1".into(),
            source_directory: "contoso".into(),
            target_directory: "fabrikam".into(),
            runbooks: vec!["Main".into()],
            available_from: None,
            enforced_after: "2026-12-01T18:00".into(),
            time_zone: "UTC".into(),
            canary,
            max_failure_rate: rate,
            max_concurrent: max,
        }
    }

    #[test]
    fn canary_sizes() {
        assert_eq!(canary_size(None, 100), 0);
        assert_eq!(canary_size(Some(&Canary::Devices(5)), 100), 5);
        assert_eq!(canary_size(Some(&Canary::Devices(5)), 3), 3);
        assert_eq!(canary_size(Some(&Canary::Share("10%".into())), 95), 10);
        assert_eq!(canary_size(Some(&Canary::Share("1%".into())), 3), 1);
        assert_eq!(canary_size(Some(&Canary::Share("100%".into())), 7), 7);
        for bad in ["0%", "101%", "10", "ten%", "-5%", ""] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_failure_halts_by_default_and_a_resume_accepts_it() {
        let b = batch(None, 0.0, None);
        let mut w = WaveState::default();
        let c = WaveCounts {
            succeeded: 40,
            failed: 1,
            ..Default::default()
        };
        assert!(
            matches!(gate(&b, &w, &c, 0, false), Gate::Halt(r) if r.contains("1 device(s) failed of 41"))
        );
        w.halted = Some(Halt {
            at: 1,
            reason: "x".into(),
        });
        assert!(matches!(gate(&b, &w, &c, 0, false), Gate::Wait(r) if r.contains("halted: x")));
        w.halted = None;
        w.accepted_failures = 1;
        let c = WaveCounts {
            accepted_failed: 1,
            ..c
        };
        assert_eq!(gate(&b, &w, &c, 0, false), Gate::Go);
        let c2 = WaveCounts { failed: 2, ..c };
        assert!(matches!(gate(&b, &w, &c2, 0, false), Gate::Halt(_)));
        // The accepted device stops failing, another fails: a new failure, whatever the count.
        let c3 = WaveCounts {
            accepted_failed: 0,
            ..c
        };
        assert!(matches!(gate(&b, &w, &c3, 0, false), Gate::Halt(_)));
    }

    #[test]
    fn the_canary_goes_first_and_its_failure_halts_whatever_the_rate() {
        let b = batch(Some(Canary::Devices(2)), 0.5, None);
        let w = WaveState::default();
        let mut c = WaveCounts::default();
        assert_eq!(gate(&b, &w, &c, 2, true), Gate::Go);
        assert!(matches!(gate(&b, &w, &c, 2, false), Gate::Wait(r) if r.contains("0 of 2")));
        c.succeeded = 1;
        c.canary_succeeded = 1;
        assert!(matches!(gate(&b, &w, &c, 2, false), Gate::Wait(_)));
        c.failed = 1;
        c.canary_failed = 1;
        assert!(matches!(gate(&b, &w, &c, 2, true), Gate::Halt(r) if r.contains("canary")));
    }

    #[test]
    fn max_concurrent_holds_the_rest() {
        let b = batch(None, 0.0, Some(3));
        let w = WaveState::default();
        let c = WaveCounts {
            running: 3,
            ..Default::default()
        };
        assert!(
            matches!(gate(&b, &w, &c, 0, false), Gate::Wait(r) if r.contains("max_concurrent is 3"))
        );
        assert_eq!(
            gate(&b, &w, &WaveCounts { running: 2, ..c }, 0, false),
            Gate::Go
        );
    }

    #[test]
    fn devices_spread_over_the_window() {
        let starts: Vec<i64> = (0..1000)
            .map(|i| start_at("Wave 1", &format!("PC-{i:04}"), 0))
            .collect();
        assert!(starts.iter().all(|s| (0..JITTER_WINDOW_MS).contains(s)));
        // Every minute of the window gets some of a thousand devices.
        for m in 0..15 {
            let n = starts.iter().filter(|s| **s / 60_000 == m).count();
            assert!((30..=110).contains(&n), "minute {m}: {n}");
        }
        assert_eq!(start_at("W", "PC-1", 5), start_at("W", "pc-1", 5));
    }

    proptest! {
        /// No device starts while the batch is halted, and none beyond `max_concurrent`.
        #[test]
        fn a_halted_or_full_batch_starts_nothing(
            running in 0u64..50, succeeded in 0u64..50, failed in 0u64..50,
            max in proptest::option::of(1u32..40), rate in 0.0f64..=1.0,
            halted: bool, is_canary: bool, canary in 0usize..5,
        ) {
            let b = batch(Some(Canary::Devices(canary as u32)), rate, max);
            let mut w = WaveState::default();
            if halted {
                w.halted = Some(Halt { at: 0, reason: "r".into() });
            }
            let c = WaveCounts { running, succeeded, failed, ..Default::default() };
            let g = gate(&b, &w, &c, canary, is_canary);
            if halted || max.is_some_and(|m| running >= u64::from(m)) {
                prop_assert_ne!(&g, &Gate::Go);
            }
            if failed > 0 && !halted {
                prop_assert!(matches!(g, Gate::Halt(_)) || failed as f64 <= rate * (succeeded + failed) as f64);
            }
        }
    }
}
