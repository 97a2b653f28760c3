//! A progress line on stderr for long work (counts, rates, the phase), redrawn ten times a second
//! in place. Only for a person: nothing when stderr is not a terminal (a pipe, a log file, CI),
//! with `--json`, or with `TERM=dumb`; so scripts read exactly what they read before.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether a progress line may be drawn.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal() && std::env::var("TERM").as_deref() != Ok("dumb")
}

/// Draws `render(elapsed)` every 100 ms on a thread of its own until dropped, then clears it.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// A ticker, or none when a progress line is not wanted.
    pub fn start(
        json: bool,
        render: impl Fn(Duration) -> String + Send + 'static,
    ) -> Option<Ticker> {
        if !wanted(json) {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut err = std::io::stderr();
            // Drawn at once, then every 100 ms until stopped.
            loop {
                let line = render(started.elapsed());
                // `\r` and "erase line": the line is redrawn where it is.
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                std::thread::sleep(Duration::from_millis(100));
                if flag.load(Ordering::Relaxed) {
                    break;
                }
            }
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Some(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `1234567` as `1,234,567`.
pub use ferry_core::grouped as count;

/// `n` per second over `elapsed`, as a count.
pub fn rate(n: u64, elapsed: Duration) -> String {
    count((n as f64 / elapsed.as_secs_f64().max(1e-3)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rate(500, Duration::from_millis(500)), "1,000");
    }
}
