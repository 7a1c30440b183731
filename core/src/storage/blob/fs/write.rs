//! The writer half of an fs upload append: the network task hands body chunks over a bounded
//! channel to a blocking thread that writes them to the session's data file and keeps the
//! running SHA-256, so receiving, hashing and writing overlap instead of queueing on one core.

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::storage::ByteStream;

/// Body chunks buffered between the network task and the writer thread (backpressure bound).
pub(super) const WRITE_QUEUE: usize = 16;
/// Bytes of one append after which the hash runs on a thread of its own.
const HASH_APART: u64 = 4 << 20;

/// What a writer thread did: bytes written, the running hash (`None` once unknown), and the
/// write error that stopped it.
pub(super) type Written = (u64, Option<Sha256>, Option<io::Error>);

/// Writes and hashes the chunks `rx` brings until it closes or a write fails.
///
/// Past [`HASH_APART`] bytes the hash moves to a thread of its own, fed the same (shared)
/// chunks: a large layer is then hashed and written at once on two cores, instead of one after
/// the other on one (a thread is not worth starting for a small blob).
pub(super) fn write_chunks(
    mut file: std::fs::File,
    mut hasher: Option<Sha256>,
    mut rx: mpsc::Receiver<Bytes>,
) -> Written {
    let mut written = 0u64;
    let mut hasher = loop {
        if written >= HASH_APART {
            if let Some(h) = hasher.take() {
                break h;
            }
        }
        let Some(chunk) = rx.blocking_recv() else {
            return (written, hasher, None);
        };
        if let Err(e) = file.write_all(&chunk) {
            // A partial write leaves the running hash unknown; recompute at commit.
            return (written, None, Some(e));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        written += chunk.len() as u64;
    };
    std::thread::scope(|s| {
        let (to_hash, chunks) = std::sync::mpsc::sync_channel::<Bytes>(WRITE_QUEUE);
        let hashing = s.spawn(move || {
            for chunk in chunks {
                hasher.update(&chunk);
            }
            hasher
        });
        let (mut error, mut hashed) = (None, true);
        while let Some(chunk) = rx.blocking_recv() {
            // A hashing thread that died leaves the hash unknown: recomputed at commit.
            hashed = hashed && to_hash.send(chunk.clone()).is_ok();
            if let Err(e) = file.write_all(&chunk) {
                error = Some(e);
                break;
            }
            written += chunk.len() as u64;
        }
        drop(to_hash);
        let hasher = hashing.join().ok().filter(|_| hashed && error.is_none());
        (written, hasher, error)
    })
}

/// Hands the body's chunks to the writer until the body ends, fails (the error) or the writer
/// stops taking them.
pub(super) async fn pump(body: &mut ByteStream, tx: mpsc::Sender<Bytes>) -> Option<io::Error> {
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                if tx.send(bytes).await.is_err() {
                    return None;
                }
            }
            Err(e) => return Some(e),
        }
    }
    None
}
