//! Model test: many concurrent transactions over a few keys, interleaved by a seed; the
//! committed history must be serializable in commit-timestamp order, and every rejected
//! transaction must have been rejected for a real cause.
//!
//! Two kinds of transaction run concurrently:
//! - read-modify-write: read 1–3 counters by id, write 1–2 of them with a function of what
//!   was read (lost updates would show up in the replay);
//! - write skew / phantoms: scan two buckets of an index, and only if together they hold fewer
//!   than `LIMIT` items insert one (or delete one) — a serializable history never exceeds
//!   `LIMIT`, and every observed count must match the replay.
//!
//! Replay: sort committed transactions by commit timestamp, re-run each against a plain model,
//! and require every value it observed and the final state to match.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{Rng, YieldingReplicator};
use store::{IndexNumber, KeyRange, MvccStore, Order, Timestamp};
use txn::{
    Catalog, CommitError, Committer, Database, FinalTransaction, IndexRef, IndexScan, LocalTso,
    Object, TableDef, TimestampOracle, WrittenKeys,
};
use value::{DocumentId, TableNumber, Value};

const COUNTERS: usize = 4;
const WORKERS: u64 = 8;
const TXNS_PER_WORKER: u64 = 20;
const LIMIT: usize = 5;
const BY_BUCKET: IndexNumber = IndexNumber(2);

fn table() -> TableNumber {
    TableNumber::new(10001).expect("valid")
}

#[derive(Clone, Debug)]
enum Observed {
    /// Counter values read, and the values written.
    Rmw {
        read: Vec<(DocumentId, i64)>,
        wrote: Vec<(DocumentId, i64)>,
    },
    /// Item counts of buckets 1 and 2 seen, and the change made.
    Skew {
        counts: [usize; 2],
        inserted: Option<(DocumentId, i64)>,
        deleted: Option<DocumentId>,
    },
}

struct Committed {
    ts: Timestamp,
    observed: Observed,
    written: WrittenKeys,
}

struct Rejected {
    read_ts: Timestamp,
    reads: txn::ReadSet,
    error: CommitError,
}

#[derive(Default)]
struct History {
    committed: Vec<Committed>,
    rejected: Vec<Rejected>,
}

fn counter_doc(n: i64) -> Object {
    [
        ("n".to_string(), Value::Int64(n)),
        ("bucket".to_string(), Value::Int64(0)),
    ]
    .into_iter()
    .collect()
}

fn int(doc: &Object, field: &str) -> i64 {
    match doc.get(field) {
        Some(Value::Int64(n)) => *n,
        other => panic!("field {field} is {other:?}"),
    }
}

fn id_of(doc: &Object) -> DocumentId {
    match doc.get("_id") {
        Some(Value::String(s)) => s.parse().expect("id"),
        other => panic!("_id is {other:?}"),
    }
}

fn bucket_range(bucket: i64) -> KeyRange {
    let mut prefix = Vec::new();
    value::key::encode(&Value::Int64(bucket), &mut prefix);
    KeyRange::prefix(&prefix)
}

async fn yield_some(rng: &mut Rng) {
    for _ in 0..rng.below(4) {
        tokio::task::yield_now().await;
    }
}

/// One attempt of one transaction; returns what it observed and its final form.
async fn attempt(
    db: &Database,
    counters: &[DocumentId],
    rng: &mut Rng,
    kind: u64,
) -> (Observed, FinalTransaction) {
    let mut t = db.begin().expect("begin");
    yield_some(rng).await;
    let observed = if kind == 0 {
        let mut read = Vec::new();
        for _ in 0..=rng.below(3) {
            let id = counters[rng.below(COUNTERS as u64) as usize];
            if read.iter().any(|(r, _)| *r == id) {
                continue;
            }
            let doc = t.get(&id).expect("get").expect("counter exists");
            read.push((id, int(&doc, "n")));
            yield_some(rng).await;
        }
        let sum: i64 = read.iter().map(|(_, n)| n).sum();
        let mut wrote = Vec::new();
        for (i, (id, _)) in read.iter().enumerate() {
            if i == 0 || rng.below(2) == 0 {
                let n = sum + 1 + i as i64;
                t.replace(id, counter_doc(n)).expect("replace");
                wrote.push((*id, n));
            }
        }
        Observed::Rmw { read, wrote }
    } else {
        let mut counts = [0usize; 2];
        let mut first_item = None;
        for (slot, bucket) in [1i64, 2].into_iter().enumerate() {
            let page = t
                .scan(&IndexScan {
                    table: table(),
                    index: BY_BUCKET,
                    range: bucket_range(bucket),
                    order: Order::Asc,
                    limit: 100,
                    cursor: None,
                })
                .expect("scan");
            counts[slot] = page.rows.len();
            if first_item.is_none()
                && let Some((_, doc)) = page.rows.first()
            {
                let id = id_of(doc);
                first_item = Some(id);
            }
            yield_some(rng).await;
        }
        let mut inserted = None;
        let mut deleted = None;
        if counts[0] + counts[1] < LIMIT && rng.below(4) != 0 {
            let bucket = 1 + rng.below(2) as i64;
            let item: Object = [("bucket".to_string(), Value::Int64(bucket))]
                .into_iter()
                .collect();
            let id = t.insert(table(), item).expect("insert");
            inserted = Some((id, bucket));
        } else if let Some(id) = first_item {
            t.delete(&id).expect("delete");
            deleted = Some(id);
        }
        Observed::Skew {
            counts,
            inserted,
            deleted,
        }
    };
    yield_some(rng).await;
    (observed, t.finish().expect("finish"))
}

async fn worker(db: Database, counters: Vec<DocumentId>, seed: u64, history: Arc<Mutex<History>>) {
    let mut rng = Rng(seed);
    for _ in 0..TXNS_PER_WORKER {
        let kind = rng.below(2);
        for _attempt in 0..100 {
            let (observed, finished) = attempt(&db, &counters, &mut rng, kind).await;
            let read_ts = finished.read_ts;
            let reads = finished.reads.clone();
            let written = finished.written.clone();
            match db.committer.commit(finished).await {
                Ok(ts) => {
                    // Read-only attempts commit at their snapshot and have nothing to replay.
                    if written.iter().next().is_some() {
                        history.lock().expect("history").committed.push(Committed {
                            ts,
                            observed,
                            written,
                        });
                    }
                    break;
                }
                Err(error) if error.is_retryable() => {
                    history.lock().expect("history").rejected.push(Rejected {
                        read_ts,
                        reads,
                        error,
                    });
                }
                Err(error) => panic!("unexpected commit error: {error}"),
            }
        }
    }
}

fn run_seed(seed: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(MvccStore::in_memory());
        let replicator = Arc::new(YieldingReplicator::new(store.clone(), seed));
        let tso: Arc<dyn TimestampOracle> = Arc::new(LocalTso::open(dir.path()).expect("tso"));
        let committer = Committer::start(replicator, tso, Timestamp::MIN).expect("committer");
        let catalog = Arc::new(Catalog::new([
            TableDef::new(table(), "items").with_index("by_bucket", &["bucket"])
        ]));
        let db = Database::with_fixed_catalog(store, (*catalog).clone(), committer);

        let mut setup = db.begin().expect("begin");
        let counters: Vec<DocumentId> = (0..COUNTERS)
            .map(|_| setup.insert(table(), counter_doc(0)).expect("insert"))
            .collect();
        db.committer
            .commit(setup.finish().expect("finish"))
            .await
            .expect("setup");

        let history = Arc::new(Mutex::new(History::default()));
        let tasks: Vec<_> = (0..WORKERS)
            .map(|w| {
                tokio::spawn(worker(
                    db.clone(),
                    counters.clone(),
                    seed.wrapping_mul(1000).wrapping_add(w),
                    history.clone(),
                ))
            })
            .collect();
        for task in tasks {
            task.await.expect("worker");
        }
        let history = std::mem::take(&mut *history.lock().expect("history"));
        check(seed, &db, &counters, history);
    });
}

fn check(seed: u64, db: &Database, counters: &[DocumentId], mut history: History) {
    history.committed.sort_by_key(|c| c.ts);
    eprintln!(
        "seed {seed}: {} committed writers, {} rejected attempts",
        history.committed.len(),
        history.rejected.len()
    );
    assert!(
        !history.rejected.is_empty(),
        "seed {seed}: no conflicts: the test exercised nothing"
    );
    let mut model_counters: BTreeMap<DocumentId, i64> =
        counters.iter().map(|id| (*id, 0)).collect();
    let mut model_items: BTreeMap<DocumentId, i64> = BTreeMap::new();
    let mut skew_commits = 0;
    for (i, c) in history.committed.iter().enumerate() {
        match &c.observed {
            Observed::Rmw { read, wrote } => {
                for (id, n) in read {
                    assert_eq!(
                        model_counters[id], *n,
                        "seed {seed}: txn #{i} at {} read a value the serial order does not give",
                        c.ts
                    );
                }
                for (id, n) in wrote {
                    model_counters.insert(*id, *n);
                }
            }
            Observed::Skew {
                counts,
                inserted,
                deleted,
            } => {
                skew_commits += 1;
                for (slot, bucket) in [1i64, 2].into_iter().enumerate() {
                    let model = model_items.values().filter(|b| **b == bucket).count();
                    assert_eq!(
                        counts[slot], model,
                        "seed {seed}: txn #{i} at {} saw {} items in bucket {bucket}, serial order has {model}",
                        c.ts, counts[slot]
                    );
                }
                if let Some((id, bucket)) = inserted {
                    model_items.insert(*id, *bucket);
                }
                if let Some(id) = deleted {
                    assert!(
                        model_items.remove(id).is_some(),
                        "seed {seed}: deleted a missing item"
                    );
                }
                assert!(
                    model_items.len() <= LIMIT,
                    "seed {seed}: write skew exceeded the limit"
                );
            }
        }
    }
    assert!(
        skew_commits > 0,
        "seed {seed}: no scan transaction committed"
    );

    // The final state equals the replay's.
    let mut t = db.begin().expect("begin");
    for (id, n) in &model_counters {
        let doc = t.get(id).expect("get").expect("counter");
        assert_eq!(int(&doc, "n"), *n, "seed {seed}: final counter");
    }
    let mut stored_items = BTreeMap::new();
    for bucket in [1i64, 2] {
        let page = t
            .scan(&IndexScan {
                table: table(),
                index: BY_BUCKET,
                range: bucket_range(bucket),
                order: Order::Asc,
                limit: 100,
                cursor: None,
            })
            .expect("scan");
        for (_, doc) in page.rows {
            let id = id_of(&doc);
            stored_items.insert(id, bucket);
        }
    }
    assert_eq!(stored_items, model_items, "seed {seed}: final items");

    // Every rejection had a cause: a commit after the reader's snapshot wrote a key it read.
    let by_ts: BTreeMap<Timestamp, &Committed> =
        history.committed.iter().map(|c| (c.ts, c)).collect();
    for r in &history.rejected {
        let CommitError::Conflict {
            table,
            index,
            key,
            ts,
        } = &r.error
        else {
            panic!("seed {seed}: unexpected retryable error {}", r.error);
        };
        assert!(
            *ts > r.read_ts,
            "seed {seed}: conflict with a commit at or before the snapshot"
        );
        let culprit = by_ts
            .get(ts)
            .unwrap_or_else(|| panic!("seed {seed}: conflict names {ts}, which did not commit"));
        let index_ref = IndexRef {
            table: TableNumber::new(*table).expect("table"),
            index: IndexNumber(*index),
        };
        assert!(
            culprit
                .written
                .iter()
                .any(|(i, k)| *i == index_ref && k == key),
            "seed {seed}: commit {ts} did not write the named key"
        );
        let mut named = WrittenKeys::default();
        named.insert(index_ref, key.clone());
        assert!(
            named.first_intersection(&r.reads).is_some(),
            "seed {seed}: the rejected transaction never read the named key"
        );
    }
    assert!(
        history.committed.len() as u64 >= WORKERS * TXNS_PER_WORKER / 2,
        "seed {seed}: only {} transactions committed writes",
        history.committed.len()
    );
}

#[test]
fn concurrent_transactions_are_serializable() {
    for seed in 1..=12 {
        run_seed(seed);
    }
}
