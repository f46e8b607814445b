//! Crash recovery of the fjall Raft log: a torn last append is dropped whole on reopen, and a
//! complete batch whose bytes were corrupted is refused rather than silently skipped.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use openraft::EntryPayload;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use replication::raft::{Entry, LogId, LogStore, ReplicateRequest};

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new_term_index(1, index),
        payload: EntryPayload::Normal(ReplicateRequest::default()),
    }
}

async fn append_one(log: &mut LogStore, index: u64) {
    log.append([entry(index)], IOFlushed::noop())
        .await
        .expect("append");
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index())
        .collect()
}

/// Lengths of the journal files of the fjall database in `dir`.
fn journals(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .map(|p| {
            let len = fs::metadata(&p).expect("metadata").len();
            (p, len)
        })
        .collect();
    out.sort();
    out
}

/// Writes entries 0..=9, then entry 10 as one more batch, and returns the journal that holds
/// that last batch with its length before and after it.
async fn log_with_last_batch(dir: &Path) -> (PathBuf, u64, u64) {
    {
        let mut log = LogStore::open(dir).expect("open");
        for i in 0..10 {
            append_one(&mut log, i).await;
        }
    }
    // Reopening trims the journal to its data (fjall preallocates it), so the next batch is
    // appended right after the data.
    drop(LogStore::open(dir).expect("reopen"));
    let before = journals(dir);
    {
        let mut log = LogStore::open(dir).expect("reopen");
        append_one(&mut log, 10).await;
        assert_eq!(indexes(&mut log).await, (0..=10).collect::<Vec<_>>());
    }
    let after = journals(dir);
    let (path, end) = after
        .iter()
        .find(|(p, len)| before.iter().any(|(q, old)| q == p && old < len))
        .cloned()
        .expect("a journal grew by the last batch");
    let start = before
        .iter()
        .find(|(q, _)| *q == path)
        .map(|(_, len)| *len)
        .expect("journal existed");
    (path, start, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_append_is_dropped_whole() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("raft-log");
    let (journal, start, end) = log_with_last_batch(&dir).await;
    // A crash in the middle of writing the last batch: only its first half reached the disk.
    OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal")
        .set_len(start + (end - start) / 2)
        .expect("truncate");

    let mut log = LogStore::open(&dir).expect("a torn tail must not prevent opening");
    assert_eq!(indexes(&mut log).await, (0..10).collect::<Vec<_>>());
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id, Some(LogId::new_term_index(1, 9)));
    // The log continues where the durable part ends.
    append_one(&mut log, 10).await;
    assert_eq!(indexes(&mut log).await, (0..=10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_complete_batch_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("raft-log");
    let (journal, _start, end) = log_with_last_batch(&dir).await;
    // Flip the last value byte of the last batch, just before its 13-byte end marker (tag,
    // xxh3 checksum, magic): the batch is whole but its checksum no longer matches.
    let mut bytes = fs::read(&journal).expect("read journal");
    let at = usize::try_from(end).expect("journal fits in memory") - 13 - 1;
    bytes[at] ^= 0xff;
    fs::write(&journal, &bytes).expect("write journal");

    match LogStore::open(&dir) {
        Err(e) => println!("refused as expected: {e}"),
        Ok(mut log) => panic!(
            "a corrupted batch was accepted; log holds {:?}",
            indexes(&mut log).await
        ),
    }
}
