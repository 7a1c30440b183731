//! The per-repository cap on open upload sessions, and who gives way when it is reached.
//!
//! A cap that simply refuses new sessions turns abandoned ones into a denial of service: 1000
//! sessions opened and left idle once made every later push fail until the sweeper ran (audit).
//! So a cap bounds resources without refusing live work:
//! - each client (a user name, or an address for anonymous pushes) has a share of the cap; a
//!   client at its share gives way to itself: its own oldest *empty* session (opened, never
//!   sent a byte) is evicted, else its least recently active *idle* one (its client can start
//!   it again), so one client cannot crowd out the others, and a broken script that opens
//!   sessions and abandons them cannot lock out the honest pushers behind the same address;
//! - at the repository's cap, the oldest empty session of anyone is evicted, else the least
//!   recently active idle one;
//! - only when every candidate session is receiving bytes or received some within
//!   `idle_after` is the new one refused, with a `Retry-After` of when the first of them could
//!   become idle.
//!
//! The decision is made on a listing taken just before, so two pushes arriving together may
//! overshoot the cap by one each: the cap is a resource bound, not an exact count.

use std::time::Duration;

use crate::storage::UploadInfo;

/// The cap's settings (the `limits.*upload*` keys).
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Open sessions per repository.
    pub max_sessions: usize,
    /// Open sessions per client in one repository.
    pub per_client: usize,
    /// A session without bytes for this long is idle and may be evicted at the cap.
    pub idle_after: Duration,
}

impl UploadLimits {
    /// No cap at all (tests and tools that build repositories by hand).
    pub fn unlimited() -> UploadLimits {
        UploadLimits {
            max_sessions: usize::MAX,
            per_client: usize::MAX,
            idle_after: Duration::MAX,
        }
    }
}

/// What to do with a new session.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// Open it after cancelling this empty or idle session.
    Evict(String),
    Refuse {
        /// `per_client` or `repository`: which limit was reached.
        limit: &'static str,
        reason: String,
        retry_after: Duration,
    },
}

/// Decides for `client`, given the open sessions of one repository.
pub fn admit(sessions: &[UploadInfo], client: &str, limits: &UploadLimits) -> Admission {
    let mine: Vec<&UploadInfo> = sessions.iter().filter(|s| s.client == client).collect();
    if mine.len() >= limits.per_client {
        return evict_or_refuse(&mine, limits, "per_client", || {
            format!(
                "{client} already has {} upload sessions open here (its share is {}), all of them active; finish or cancel one",
                mine.len(),
                limits.per_client
            )
        });
    }
    if sessions.len() >= limits.max_sessions {
        let all: Vec<&UploadInfo> = sessions.iter().collect();
        return evict_or_refuse(&all, limits, "repository", || {
            format!(
                "the repository has {} upload sessions open (limit {}), all of them active",
                sessions.len(),
                limits.max_sessions
            )
        });
    }
    Admission::Open
}

fn evict_or_refuse(
    candidates: &[&UploadInfo],
    limits: &UploadLimits,
    limit: &'static str,
    reason: impl FnOnce() -> String,
) -> Admission {
    // A session that never received a byte costs nothing to drop: the oldest goes first.
    if let Some(empty) = candidates.iter().filter(|s| s.empty).max_by_key(|s| s.idle) {
        return Admission::Evict(empty.id.clone());
    }
    let Some(oldest) = candidates.iter().max_by_key(|s| s.idle) else {
        return Admission::Open;
    };
    if oldest.idle >= limits.idle_after {
        return Admission::Evict(oldest.id.clone());
    }
    Admission::Refuse {
        limit,
        reason: reason(),
        retry_after: limits.idle_after.saturating_sub(oldest.idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Namespace;

    fn session(id: &str, client: &str, idle_s: u64) -> UploadInfo {
        UploadInfo {
            id: id.into(),
            namespace: Namespace::parse("r/i").unwrap(),
            client: client.into(),
            idle: Duration::from_secs(idle_s),
            empty: false,
        }
    }

    fn empty(id: &str, client: &str, idle_s: u64) -> UploadInfo {
        UploadInfo {
            empty: true,
            ..session(id, client, idle_s)
        }
    }

    #[test]
    fn empty_sessions_give_way_first_however_fresh() {
        // At its share: the client's own oldest empty session, before an idle one with bytes.
        let s = [
            session("a1", "alice", 100),
            empty("a2", "alice", 1),
            empty("a3", "alice", 0),
        ];
        let limits = UploadLimits {
            per_client: 3,
            ..LIMITS
        };
        assert_eq!(admit(&s, "alice", &limits), Admission::Evict("a2".into()));
        // At the repository's cap: anyone's empty session, though every other one is active.
        let full = [
            session("a1", "alice", 1),
            empty("b1", "bob", 0),
            session("c1", "carol", 1),
            session("d1", "dave", 2),
        ];
        assert_eq!(admit(&full, "erin", &LIMITS), Admission::Evict("b1".into()));
    }

    const LIMITS: UploadLimits = UploadLimits {
        max_sessions: 4,
        per_client: 2,
        idle_after: Duration::from_secs(60),
    };

    #[test]
    fn under_the_caps_sessions_open() {
        let s = [session("a", "alice", 0)];
        assert_eq!(admit(&s, "alice", &LIMITS), Admission::Open);
    }

    #[test]
    fn a_client_at_its_share_evicts_its_own_idle_session_or_waits() {
        let s = [
            session("a1", "alice", 100),
            session("a2", "alice", 5),
            session("b1", "bob", 900),
        ];
        assert_eq!(admit(&s, "alice", &LIMITS), Admission::Evict("a1".into()));
        let busy = [session("a1", "alice", 10), session("a2", "alice", 5)];
        match admit(&busy, "alice", &LIMITS) {
            Admission::Refuse { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(50))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn at_the_repository_cap_the_least_recently_active_idle_session_goes() {
        let s = [
            session("a1", "alice", 70),
            session("b1", "bob", 300),
            session("c1", "carol", 1),
            session("d1", "dave", 2),
        ];
        assert_eq!(admit(&s, "erin", &LIMITS), Admission::Evict("b1".into()));
        let active = [
            session("a1", "alice", 1),
            session("b1", "bob", 2),
            session("c1", "carol", 3),
            session("d1", "dave", 4),
        ];
        assert!(matches!(
            admit(&active, "erin", &LIMITS),
            Admission::Refuse { .. }
        ));
    }
}
