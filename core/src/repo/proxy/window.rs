//! The bytes of a cold fetch held in memory, so clients are served as the remote sends them.
//!
//! A fetch keeps every piece the remote sent that the cache has not written yet (the fetch
//! stops reading the remote when too much is unwritten), and the most recent written ones
//! while it holds less than [`KEEP`]: clients that keep up with the remote read them from here, never waiting for
//! the disk or the hash; a client that falls further behind reads what is already written from
//! the upload session. The pieces are the remote's own buffers, shared, not copied; only a
//! piece too small to be worth a write of its own is gathered with the next ones.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Bytes held at least: written ones are kept while the window holds less, for clients
/// slightly behind.
const KEEP: usize = 16 << 20;
/// A piece shorter than this is gathered with the following ones before it is handed out.
const MIN_PIECE: usize = 64 << 10;

/// The pieces, `(offset, bytes)` in offset order, with no gaps.
#[derive(Default)]
pub struct Window {
    inner: Mutex<Pieces>,
}

#[derive(Default)]
struct Pieces {
    pieces: VecDeque<(u64, Bytes)>,
    held: usize,
    written: u64,
}

impl Pieces {
    /// Drops the oldest pieces that are written, while more than [`KEEP`] is held.
    fn trim(&mut self) {
        while let Some((start, b)) = self.pieces.front() {
            let end = start + b.len() as u64;
            if self.held <= KEEP || end > self.written {
                break;
            }
            self.held -= b.len();
            self.pieces.pop_front();
        }
    }
}

impl Window {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pieces> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the next piece the remote sent, at `offset` (the end of the previous one).
    pub fn push(&self, offset: u64, piece: Bytes) {
        let mut p = self.lock();
        p.held += piece.len();
        p.pieces.push_back((offset, piece));
        p.trim();
    }

    /// Records that the cache has written everything before `written`.
    pub fn written(&self, written: u64) {
        let mut p = self.lock();
        p.written = written;
        p.trim();
    }

    /// Up to `max` bytes at `offset`, if that part is still held.
    pub fn read(&self, offset: u64, max: u64) -> Option<Bytes> {
        let p = self.lock();
        let i = p
            .pieces
            .partition_point(|(start, b)| start + b.len() as u64 <= offset);
        let (start, first) = p.pieces.get(i)?;
        if offset < *start {
            return None;
        }
        let from = (offset - start) as usize;
        let take = (first.len() - from).min(max as usize);
        if take >= MIN_PIECE || take as u64 == max {
            return Some(first.slice(from..from + take));
        }
        // Small pieces: one larger write to the client beats several small ones.
        let cap = max.min(4 * MIN_PIECE as u64) as usize;
        let mut out = BytesMut::with_capacity(cap);
        out.extend_from_slice(&first[from..from + take]);
        for (_, b) in p.pieces.range(i + 1..) {
            let room = cap - out.len();
            if room == 0 {
                break;
            }
            out.extend_from_slice(&b[..b.len().min(room)]);
        }
        Some(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, v: u8) -> Bytes {
        Bytes::from(vec![v; n])
    }

    #[test]
    fn reads_across_pieces_and_keeps_what_is_unwritten() {
        let w = Window::default();
        let big = 1 << 20;
        for i in 0..40u64 {
            w.push(i * big as u64, filled(big, i as u8));
        }
        // Nothing is written yet: every piece is still there.
        assert_eq!(w.read(0, 10).unwrap(), filled(10, 0));
        w.written(30 * big as u64);
        // 16 MiB are kept: the 10 unwritten pieces and the 6 written before them.
        assert!(w.read(0, 10).is_none());
        assert_eq!(w.read(24 * big as u64, 3).unwrap(), filled(3, 24));
        assert!(w.read(23 * big as u64, 3).is_none());
        // Unwritten pieces are never dropped.
        for i in 40..60u64 {
            w.push(i * big as u64, filled(big, i as u8));
        }
        assert_eq!(w.read(30 * big as u64, 1).unwrap(), filled(1, 30));
        assert_eq!(w.read(39 * big as u64 + 5, 1 << 30).unwrap().len(), big - 5);
        assert!(w.read(60 * big as u64, 1).is_none());
    }

    #[test]
    fn small_pieces_are_gathered() {
        let w = Window::default();
        for i in 0..100u64 {
            w.push(i * 1000, filled(1000, i as u8));
        }
        let got = w.read(500, 1 << 20).unwrap();
        assert_eq!(got.len(), 99 * 1000 + 500);
        assert_eq!(got[0], 0);
        assert_eq!(got[500], 1);
        assert_eq!(got[got.len() - 1], 99);
        assert_eq!(w.read(500, 700).unwrap(), {
            let mut v = vec![0u8; 500];
            v.extend(vec![1u8; 200]);
            Bytes::from(v)
        });
    }
}
