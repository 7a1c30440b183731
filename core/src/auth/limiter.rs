//! Failed-login back-off: slows brute force down without locking real users out.
//!
//! The first design counted failures per `(address, user)` and refused even the right password
//! for the rest of a window — so a CI runner with a stale secret, two people behind one NAT, or
//! every client behind an untrusted edge locked a real user out (audit). Now:
//! - each client **address** has `attempts` free failures (a few typos, whatever user names it
//!   tries, so rotating names does not help); after that every further failure doubles the
//!   wait before the next attempt from it (1 s, 2 s, 4 s, … up to `max_delay`);
//! - each **user name** has a much higher `attempts_per_user` across all addresses, after which
//!   the same back-off applies to that name (a distributed guess at one account);
//! - a wait is short and says so in `Retry-After`; the right password after it is let in;
//! - failures are forgotten `window` after the last one.
//!
//! An attempt is **reserved** before its password is verified and refunded only when it
//! succeeds: a burst of concurrent guesses all counts at once, so it gets no more verifications
//! than the allowance and the back-off give (a check before argon2 and a count after it let 300
//! concurrent guesses through once a wait ended). The price: more than `attempts` logins from
//! one address verifying at the same moment (tens of milliseconds each) see a 1 s wait.
//!
//! A password verified in the last minute (the verified cache in `auth`) never reaches here, so
//! an active client keeps working while someone else's guesses are being slowed.
//!
//! The counts are per core: with N cores behind one edge an address gets at most N times the
//! allowance.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on tracked addresses and user names each; past it, forgotten entries are pruned and,
/// if that is not enough, those still under their free allowance (which cost nothing to lose).
const MAX_TRACKED: usize = 100_000;
/// The first wait after the free failures.
const BASE_DELAY: Duration = Duration::from_secs(1);

/// The limiter's settings (the `auth.login_*` keys).
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Free failures per client address before back-off.
    pub attempts: u32,
    /// Free failures per user name, across addresses, before back-off.
    pub attempts_per_user: u32,
    /// Failures are forgotten this long after the last one.
    pub window: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            attempts: 10,
            attempts_per_user: 100,
            window: Duration::from_secs(15 * 60),
            max_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// An attempt counted as failed until it is refunded.
#[must_use = "an attempt counts as failed unless it is refunded"]
#[derive(Debug)]
pub struct Attempt {
    client: IpAddr,
    user: String,
}

/// Failure counts per address and per user name.
pub struct Limiter {
    config: LimiterConfig,
    addresses: Mutex<HashMap<IpAddr, Entry>>,
    users: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    pub fn new(config: LimiterConfig) -> Limiter {
        Limiter {
            config,
            addresses: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `client` for `user` as failed until [`Limiter::refund`] says it
    /// succeeded; `Err(wait)` (and nothing counted) if it must wait that long first. Checking
    /// and counting happen under one lock, so concurrent attempts cannot all pass the check.
    pub fn reserve(&self, client: IpAddr, user: &str) -> Result<Attempt, Duration> {
        let now = Instant::now();
        // Both maps at once, always in this order: the check and the count are one step.
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let by_address = addresses
            .get(&client)
            .and_then(|e| self.wait(*e, self.config.attempts, now));
        let by_user = users
            .get(user)
            .and_then(|e| self.wait(*e, self.config.attempts_per_user, now));
        if let Some(w) = by_address.max(by_user) {
            return Err(w);
        }
        self.bump(&mut addresses, client, self.config.attempts, now);
        self.bump(
            &mut users,
            user.to_owned(),
            self.config.attempts_per_user,
            now,
        );
        Ok(Attempt {
            client,
            user: user.to_owned(),
        })
    }

    /// The attempt succeeded (or was never verified): it no longer counts.
    pub fn refund(&self, attempt: Attempt) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for e in [
            addresses.get_mut(&attempt.client),
            users.get_mut(&attempt.user),
        ]
        .into_iter()
        .flatten()
        {
            e.failures = e.failures.saturating_sub(1);
        }
    }

    /// How long an entry must still wait, if at all.
    fn wait(&self, e: Entry, free: u32, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(e.last);
        if since >= self.config.window || e.failures < free {
            return None;
        }
        let doublings = (e.failures - free).min(20);
        let delay = BASE_DELAY
            .saturating_mul(1u32 << doublings)
            .min(self.config.max_delay);
        delay.checked_sub(since).filter(|d| !d.is_zero())
    }

    fn bump<K: Hash + Eq>(&self, m: &mut HashMap<K, Entry>, key: K, free: u32, now: Instant) {
        if m.len() >= MAX_TRACKED {
            let window = self.config.window;
            m.retain(|_, e| now.saturating_duration_since(e.last) < window);
            if m.len() >= MAX_TRACKED {
                m.retain(|_, e| e.failures >= free);
            }
        }
        let e = m.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(e.last) >= self.config.window {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(attempts: u32, per_user: u32) -> Limiter {
        Limiter::new(LimiterConfig {
            attempts,
            attempts_per_user: per_user,
            window: Duration::from_secs(600),
            max_delay: Duration::from_secs(60),
        })
    }

    /// A failed attempt, as a login that does not refund it.
    fn fail(l: &Limiter, ip: IpAddr, user: &str) {
        let _counted = l.reserve(ip, user).expect("not waiting");
    }

    #[test]
    fn typos_cost_nothing_then_waits_grow() {
        let l = limiter(3, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            fail(&l, ip, "alice");
        }
        assert!(
            l.reserve(ip, "alice").map(|a| l.refund(a)).is_ok(),
            "two typos: still free"
        );
        fail(&l, ip, "alice");
        let w1 = l.reserve(ip, "alice").unwrap_err();
        assert!(w1 <= BASE_DELAY && w1 > Duration::ZERO, "{w1:?}");
        std::thread::sleep(w1);
        fail(&l, ip, "mallory");
        let w2 = l.reserve(ip, "bob").unwrap_err();
        assert!(w2 > w1, "rotating names does not help: {w2:?}");
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            l.reserve(other, "alice").is_ok(),
            "other addresses unaffected"
        );
    }

    #[test]
    fn one_user_across_many_addresses_is_slowed_too() {
        let l = limiter(1000, 5);
        for i in 0..5u8 {
            fail(&l, IpAddr::from([10, 0, 1, i]), "alice");
        }
        assert!(l.reserve("10.9.9.9".parse().unwrap(), "alice").is_err());
        assert!(l.reserve("10.9.9.9".parse().unwrap(), "bob").is_ok());
    }

    #[test]
    fn a_burst_gets_the_allowance_and_no_more() {
        let l = limiter(3, 1000);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        // Reserved before verification: the fourth concurrent attempt already waits.
        let held: Vec<Attempt> = (0..3).map(|_| l.reserve(ip, "x").unwrap()).collect();
        assert!(l.reserve(ip, "x").is_err());
        // Successes are refunded: the allowance is free again.
        for a in held {
            l.refund(a);
        }
        assert!(l.reserve(ip, "x").map(|a| l.refund(a)).is_ok());
    }

    #[test]
    fn waits_are_capped_and_the_window_forgets() {
        let l = Limiter::new(LimiterConfig {
            attempts: 1,
            attempts_per_user: 1000,
            window: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        });
        let ip: IpAddr = "::1".parse().unwrap();
        {
            let mut m = l.addresses.lock().unwrap();
            for _ in 0..40 {
                l.bump(&mut m, ip, 1, Instant::now());
            }
        }
        assert!(l.reserve(ip, "x").unwrap_err() <= Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.reserve(ip, "x").is_ok());
    }
}
