//! Worker threads that keep polling for work while a decode loop runs its sequential parts.
//!
//! A decode step forks work onto rayon's pool dozens of times, and between two passes the caller
//! runs sequential code: sampling, acceptance, the draft policy. A rayon worker that finds no
//! work yields for about 32 rounds and then parks; waking a parked worker costs a futex wake
//! and, on a virtual machine, an inter-processor interrupt. On the 2-core testbed host a 30 µs
//! sequential gap before a forward made that forward 25 µs slower (3 % of the step), and with
//! the pool kept polling, vanilla generation took 5–6 % less time (`docs/performance.md`).
//! llama.cpp polls between graph computations for the same reason.
//!
//! [`WarmPool`] broadcasts one polling task to every other worker of the current pool. The task
//! runs pending jobs itself ([`rayon::yield_now`]), so kernels forked while it polls still run in
//! parallel. Between jobs it yields its core to any other runnable thread: what it saves is the
//! parking, not the yield, and a yield to nobody returns at once.
//!
//! A task ends when the guard is dropped, or when the guard's owner sent no
//! [`WarmThreads::beat`] for [`IDLE_LIMIT`]. So a loop stuck in long sequential work (a slow
//! consumer of streamed tokens) does not keep cores spinning, and a task that a worker picked up
//! while it waited inside another job (several loops sharing one pool) holds that job back for
//! at most that long. The next beat starts the tasks again. `CONFU_POLL=0` in the environment
//! turns polling off for the process ([`POLL_VAR`]), where other processes need the cores.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use confu_core::WarmThreads;

/// How long the polling tasks wait for a beat before they let their workers park.
pub const IDLE_LIMIT: Duration = Duration::from_millis(2);

/// The environment variable that turns polling off (`0`, `off`, `false` or `no`; `1`, `on`,
/// `true`, `yes` or unset leave it on).
pub const POLL_VAR: &str = "CONFU_POLL";

/// What a value of [`POLL_VAR`] asks for: whether the workers poll; an error naming the
/// variable for anything else.
pub fn parse_poll(value: &str) -> confu_core::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "0" | "off" | "false" | "no" => Ok(false),
        "1" | "on" | "true" | "yes" => Ok(true),
        _ => Err(confu_core::Error::invalid(
            POLL_VAR,
            value,
            "expected 0/off/false/no (workers park between passes) or 1/on/true/yes (they poll)",
        )),
    }
}

/// Whether [`POLL_VAR`] leaves polling on (unset: on), read once per process; an error for a
/// value [`parse_poll`] does not know. Programs check it at startup (the `confu` CLI does); the
/// backend itself keeps polling on when the value is unknown.
pub fn polling_setting() -> confu_core::Result<bool> {
    static VALUE: OnceLock<Option<String>> = OnceLock::new();
    VALUE
        .get_or_init(|| std::env::var(POLL_VAR).ok())
        .as_deref()
        .map_or(Ok(true), parse_poll)
}

thread_local! {
    /// Whether this worker runs a polling task (one task per worker: a second one picked up
    /// inside the first would hold it until the second's owner stops beating).
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Nanoseconds after `epoch` of the last beat.
    beat: AtomicU64,
    /// Polling tasks running or queued.
    polling: AtomicUsize,
    epoch: Instant,
    /// The pool worker that owns the guard (it runs the loop; `None` outside the pool).
    owner: Option<usize>,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn idle(&self) -> bool {
        let quiet = self.now().saturating_sub(self.beat.load(Ordering::Relaxed));
        quiet > IDLE_LIMIT.as_nanos() as u64
    }
}

/// While alive (and beating), the current pool's other workers poll for work instead of parking.
#[derive(Debug)]
pub struct WarmPool {
    shared: Arc<Shared>,
}

impl WarmPool {
    /// Start polling on every worker of the current rayon pool except the caller's own.
    pub fn new() -> Self {
        let pool = Self {
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                beat: AtomicU64::new(0),
                polling: AtomicUsize::new(0),
                epoch: Instant::now(),
                owner: rayon::current_thread_index(),
            }),
        };
        pool.start();
        pool
    }

    /// Polling tasks running or about to run.
    pub fn polling(&self) -> usize {
        self.shared.polling.load(Ordering::Acquire)
    }

    fn start(&self) {
        let others = rayon::current_num_threads() - usize::from(self.shared.owner.is_some());
        if others == 0 {
            return;
        }
        self.shared.polling.fetch_add(others, Ordering::AcqRel);
        let shared = self.shared.clone();
        rayon::spawn_broadcast(move |ctx| {
            if Some(ctx.index()) != shared.owner {
                poll(&shared);
            }
        });
    }
}

impl Default for WarmPool {
    fn default() -> Self {
        Self::new()
    }
}

fn poll(shared: &Shared) {
    if !POLLING.replace(true) {
        while !shared.stop.load(Ordering::Acquire) && !shared.idle() {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::thread::yield_now();
            }
        }
        POLLING.set(false);
    }
    shared.polling.fetch_sub(1, Ordering::AcqRel);
}

impl WarmThreads for WarmPool {
    fn beat(&self) {
        self.shared.beat.store(self.shared.now(), Ordering::Relaxed);
        if self.polling() == 0 {
            self.start();
        }
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    /// Waits (up to a second) until `done` holds.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        done()
    }

    #[test]
    fn the_other_workers_poll_until_the_guard_drops() {
        let pool = pool(3);
        pool.install(|| {
            let warm = WarmPool::new();
            warm.beat();
            // The owner is a worker of the pool: the two others poll.
            assert_eq!(warm.polling(), 2);
            let shared = warm.shared.clone();
            // Work forked while they poll still runs, on more than one thread.
            let half = || {
                std::thread::sleep(Duration::from_micros(300));
                rayon::current_thread_index()
            };
            let threads: std::collections::HashSet<_> = (0..64)
                .flat_map(|_| {
                    let (a, b) = rayon::join(half, half);
                    warm.beat();
                    [a, b]
                })
                .collect();
            assert!(threads.len() > 1, "forked halves ran on {threads:?}");
            drop(warm);
            assert!(eventually(|| shared.polling.load(Ordering::Acquire) == 0));
        });
    }

    #[test]
    fn polling_stops_without_beats_and_a_beat_starts_it_again() {
        let pool = pool(2);
        pool.install(|| {
            let warm = WarmPool::new();
            assert!(
                eventually(|| warm.polling() == 0),
                "stopped after the idle limit"
            );
            warm.beat();
            assert_eq!(warm.polling(), 1);
            assert!(eventually(|| warm.polling() == 0));
        });
    }

    #[test]
    fn poll_values_are_read_or_refused_by_name() {
        for (v, on) in [
            ("0", false),
            (" Off ", false),
            ("no", false),
            ("1", true),
            ("YES", true),
        ] {
            assert_eq!(parse_poll(v).unwrap(), on, "{v:?}");
        }
        let e = parse_poll("sometimes").unwrap_err().to_string();
        assert!(e.contains(POLL_VAR) && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn loops_sharing_a_pool_all_finish() {
        // Callers outside the pool: every worker polls for each of them, one task per worker.
        let pool = Arc::new(pool(2));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let warm = pool.install(WarmPool::new);
                    let mut sum = 0u64;
                    for i in 0..200u64 {
                        warm.beat();
                        sum += pool.install(|| {
                            let (a, b) = rayon::join(|| i, || i + 1);
                            a + b
                        });
                    }
                    sum
                })
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.join().expect("no panic"),
                (0..200u64).map(|i| 2 * i + 1).sum::<u64>()
            );
        }
    }
}
