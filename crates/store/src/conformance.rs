//! The conformance suite every [`KvEngine`] must pass, run through [`MvccStore`].
//!
//! Each check takes a [`Harness`] that makes engines and reopens them as a restarted process
//! would. `tests/conformance.rs` runs every check against [`crate::MemEngine`] and
//! [`crate::FjallEngine`]. The centrepiece is [`random_history`]: a seeded random history of
//! commits is applied and every read at every timestamp is compared with a plain model.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use value::{DocumentId, IndexKey, InternalId, TableNumber, Value};

use crate::engine::{Direction, Durability, KvBatch, KvEngine, Space};
use crate::error::StoreError;
use crate::layout::{IndexNumber, KeyRange, KeySpan, LogPosition, Timestamp};
use crate::mvcc::{
    ApplyBatch, ApplyOutcome, Commit, DocumentWrite, IndexWrite, MvccStore, Order, ScanRequest,
    ScanRow,
};

/// Makes engines for the suite.
pub trait Harness {
    /// A new, empty engine.
    fn fresh(&mut self) -> Arc<dyn KvEngine>;
    /// `engine` as a restarted process sees it: everything written durably is there. The
    /// caller drops every other handle to `engine` first.
    fn reopen(&mut self, engine: Arc<dyn KvEngine>) -> Arc<dyn KvEngine>;
}

/// Every check, in order.
pub fn run_all(h: &mut dyn Harness) {
    engine_ranges_and_snapshots(h);
    versions_visible_by_timestamp(h);
    index_entries_follow_documents(h);
    pagination_covers_range_exactly(h);
    apply_is_idempotent_and_durable(h);
    invalid_batch_writes_nothing(h);
    gc_keeps_reads_at_or_after_watermark(h);
    checkpoint_restore_round_trip(h);
    corrupt_checkpoint_is_refused(h);
    for seed in 0..6 {
        random_history(h, seed);
    }
}

fn table() -> TableNumber {
    TableNumber::new(10001).expect("valid table number")
}

fn doc(n: u8) -> DocumentId {
    let mut bytes = [0u8; 16];
    bytes[0] = n;
    bytes[15] = n.wrapping_mul(31);
    DocumentId::new(table(), InternalId(bytes))
}

fn key_of(k: i64) -> IndexKey {
    IndexKey::from_parts(&[Some(&Value::Int64(k))]).expect("small key")
}

const INDEX: IndexNumber = IndexNumber(1);

fn open(engine: &Arc<dyn KvEngine>) -> MvccStore {
    MvccStore::open(Arc::clone(engine)).expect("store opens")
}

fn batch(index: u64, commits: Vec<Commit>) -> ApplyBatch {
    ApplyBatch {
        position: LogPosition { term: 1, index },
        commits,
        state: format!("state@{index}").into_bytes(),
        durability: Durability::Sync,
    }
}

fn put(id: DocumentId, body: &str) -> DocumentWrite {
    DocumentWrite {
        id,
        body: Some(body.as_bytes().to_vec()),
    }
}

fn scan_all(store: &MvccStore, index: IndexNumber, ts: Timestamp, order: Order) -> Vec<ScanRow> {
    store
        .scan(&ScanRequest {
            table: table(),
            index,
            range: KeyRange::all(),
            ts,
            order,
            limit: knobs::SCAN_MAX_ROWS,
            cursor: None,
        })
        .expect("scan")
        .rows
}

fn bodies(rows: &[ScanRow]) -> Vec<String> {
    rows.iter()
        .map(|r| String::from_utf8_lossy(&r.doc.body).into_owned())
        .collect()
}

/// Ranges in both directions with every bound kind; snapshots ignore later writes.
pub fn engine_ranges_and_snapshots(h: &mut dyn Harness) {
    let engine = h.fresh();
    let mut b = KvBatch::new();
    for k in [1u8, 3, 5, 7] {
        b.put(Space::Data, vec![k], vec![k * 10]);
    }
    b.put(Space::Meta, vec![3], vec![99]);
    engine.write(b, Durability::Sync).expect("write");
    let snap = engine.snapshot();
    let keys = |start: Bound<&[u8]>, end: Bound<&[u8]>, d: Direction| -> Vec<u8> {
        snap.range(Space::Data, start, end, d)
            .map(|kv| kv.expect("read").0[0])
            .collect()
    };
    use Bound::*;
    use Direction::*;
    assert_eq!(keys(Unbounded, Unbounded, Forward), vec![1, 3, 5, 7]);
    assert_eq!(keys(Unbounded, Unbounded, Reverse), vec![7, 5, 3, 1]);
    assert_eq!(keys(Included(&[3]), Excluded(&[7]), Forward), vec![3, 5]);
    assert_eq!(keys(Excluded(&[3]), Included(&[7]), Reverse), vec![7, 5]);
    assert_eq!(
        keys(Included(&[4]), Included(&[4]), Forward),
        Vec::<u8>::new()
    );
    assert_eq!(
        keys(Included(&[6]), Excluded(&[2]), Forward),
        Vec::<u8>::new()
    );
    assert_eq!(snap.get(Space::Meta, &[3]).expect("get"), Some(vec![99]));
    assert_eq!(snap.get(Space::Data, &[2]).expect("get"), None);

    let mut later = KvBatch::new();
    later.put(Space::Data, vec![2], vec![20]);
    later.delete(Space::Data, vec![1]);
    engine.write(later, Durability::Buffered).expect("write");
    assert_eq!(keys(Unbounded, Unbounded, Forward), vec![1, 3, 5, 7]);
    drop(snap);
    let fresh = engine.snapshot();
    let now: Vec<u8> = fresh
        .range(Space::Data, Unbounded, Unbounded, Forward)
        .map(|kv| kv.expect("read").0[0])
        .collect();
    assert_eq!(now, vec![2, 3, 5, 7]);
}

/// A document read at each timestamp sees the newest version at or before it.
pub fn versions_visible_by_timestamp(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    let (a, b) = (doc(1), doc(2));
    let commit = |ts, documents| Commit {
        ts: Timestamp(ts),
        documents,
        index_entries: vec![],
    };
    store
        .apply(&batch(
            1,
            vec![commit(10, vec![put(a, "a1"), put(b, "b1")])],
        ))
        .expect("apply");
    store
        .apply(&batch(
            2,
            vec![
                commit(20, vec![put(a, "a2")]),
                commit(30, vec![DocumentWrite { id: a, body: None }]),
            ],
        ))
        .expect("apply");
    let body_at = |id: &DocumentId, ts: u64| {
        store
            .get(id, Timestamp(ts))
            .expect("get")
            .map(|v| (v.ts.0, String::from_utf8_lossy(&v.body).into_owned()))
    };
    assert_eq!(body_at(&a, 9), None);
    assert_eq!(body_at(&a, 10), Some((10, "a1".into())));
    assert_eq!(body_at(&a, 19), Some((10, "a1".into())));
    assert_eq!(body_at(&a, 20), Some((20, "a2".into())));
    assert_eq!(body_at(&a, 29), Some((20, "a2".into())));
    assert_eq!(body_at(&a, 30), None);
    assert_eq!(body_at(&a, u64::MAX), None);
    assert_eq!(body_at(&b, u64::MAX), Some((10, "b1".into())));
    assert_eq!(body_at(&doc(3), u64::MAX), None);
    assert_eq!(
        bodies(&scan_all(
            &store,
            IndexNumber::DOCUMENTS,
            Timestamp(25),
            Order::Asc
        )),
        vec!["a2", "b1"]
    );
    assert_eq!(
        bodies(&scan_all(
            &store,
            IndexNumber::DOCUMENTS,
            Timestamp(25),
            Order::Desc
        )),
        vec!["b1", "a2"]
    );
    assert_eq!(
        bodies(&scan_all(
            &store,
            IndexNumber::DOCUMENTS,
            Timestamp(30),
            Order::Asc
        )),
        vec!["b1"]
    );
}

/// Index entries move with their documents; reads at older timestamps see old positions.
pub fn index_entries_follow_documents(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    let (a, b, c) = (doc(1), doc(2), doc(3));
    let live = |id, k| IndexWrite {
        index: INDEX,
        key: key_of(k),
        id,
        live: true,
    };
    let dead = |id, k| IndexWrite {
        index: INDEX,
        key: key_of(k),
        id,
        live: false,
    };
    store
        .apply(&batch(
            1,
            vec![Commit {
                ts: Timestamp(10),
                documents: vec![put(a, "a@5"), put(b, "b@1"), put(c, "c@9")],
                index_entries: vec![live(a, 5), live(b, 1), live(c, 9)],
            }],
        ))
        .expect("apply");
    // a moves from 5 to 0; c is deleted.
    store
        .apply(&batch(
            2,
            vec![Commit {
                ts: Timestamp(20),
                documents: vec![put(a, "a@0"), DocumentWrite { id: c, body: None }],
                index_entries: vec![dead(a, 5), live(a, 0), dead(c, 9)],
            }],
        ))
        .expect("apply");
    assert_eq!(
        bodies(&scan_all(&store, INDEX, Timestamp(10), Order::Asc)),
        vec!["b@1", "a@5", "c@9"]
    );
    assert_eq!(
        bodies(&scan_all(&store, INDEX, Timestamp(15), Order::Desc)),
        vec!["c@9", "a@5", "b@1"]
    );
    assert_eq!(
        bodies(&scan_all(&store, INDEX, Timestamp(20), Order::Asc)),
        vec!["a@0", "b@1"]
    );
    assert_eq!(
        bodies(&scan_all(&store, INDEX, Timestamp(99), Order::Desc)),
        vec!["b@1", "a@0"]
    );
    assert!(scan_all(&store, INDEX, Timestamp(9), Order::Asc).is_empty());
    // A range: keys in [1, 9) at ts 10 → b@1, a@5.
    let mut start = Vec::new();
    value::key::encode(&Value::Int64(1), &mut start);
    let mut end = Vec::new();
    value::key::encode(&Value::Int64(9), &mut end);
    let page = store
        .scan(&ScanRequest {
            table: table(),
            index: INDEX,
            range: KeyRange {
                start,
                end: Some(end),
            },
            ts: Timestamp(10),
            order: Order::Asc,
            limit: 10,
            cursor: None,
        })
        .expect("scan");
    assert_eq!(bodies(&page.rows), vec!["b@1", "a@5"]);
    assert_eq!(page.cursor, None);
    // An equality prefix: k = 5.
    let mut eq = Vec::new();
    value::key::encode(&Value::Int64(5), &mut eq);
    let page = store
        .scan(&ScanRequest {
            table: table(),
            index: INDEX,
            range: KeyRange::prefix(&eq),
            ts: Timestamp(10),
            order: Order::Desc,
            limit: 10,
            cursor: None,
        })
        .expect("scan");
    assert_eq!(bodies(&page.rows), vec!["a@5"]);
}

/// Paging with the cursor visits every row exactly once, in order, in both directions.
pub fn pagination_covers_range_exactly(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    let mut documents = Vec::new();
    let mut index_entries = Vec::new();
    for n in 0..50u8 {
        let id = doc(n);
        documents.push(put(id, &format!("d{n}")));
        index_entries.push(IndexWrite {
            index: INDEX,
            key: key_of(i64::from(n % 7)),
            id,
            live: true,
        });
    }
    store
        .apply(&batch(
            1,
            vec![Commit {
                ts: Timestamp(5),
                documents,
                index_entries,
            }],
        ))
        .expect("apply");
    for index in [IndexNumber::DOCUMENTS, INDEX] {
        for order in [Order::Asc, Order::Desc] {
            let full = scan_all(&store, index, Timestamp(5), order);
            assert_eq!(full.len(), 50);
            for limit in [1usize, 3, 7, 50, 51] {
                let mut paged = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store
                        .scan(&ScanRequest {
                            table: table(),
                            index,
                            range: KeyRange::all(),
                            ts: Timestamp(5),
                            order,
                            limit,
                            cursor: cursor.clone(),
                        })
                        .expect("scan");
                    assert!(page.rows.len() <= limit);
                    paged.extend(page.rows);
                    match page.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(paged, full, "index {index:?} {order:?} limit {limit}");
            }
        }
    }
    let zero = store.scan(&ScanRequest {
        table: table(),
        index: INDEX,
        range: KeyRange::all(),
        ts: Timestamp(5),
        order: Order::Asc,
        limit: 0,
        cursor: None,
    });
    assert!(matches!(zero, Err(StoreError::InvalidScan(_))));
}

/// Re-applying a position is a no-op; a conflicting term is refused; state survives reopen.
pub fn apply_is_idempotent_and_durable(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    assert_eq!(store.applied(), None);
    let first = batch(
        1,
        vec![Commit {
            ts: Timestamp(10),
            documents: vec![put(doc(1), "v1")],
            index_entries: vec![],
        }],
    );
    assert_eq!(store.apply(&first).expect("apply"), ApplyOutcome::Applied);
    let second = batch(
        2,
        vec![Commit {
            ts: Timestamp(20),
            documents: vec![put(doc(1), "v2")],
            index_entries: vec![],
        }],
    );
    assert_eq!(store.apply(&second).expect("apply"), ApplyOutcome::Applied);
    // The same entry again (as after a crash between apply and acknowledging it): no-op.
    assert_eq!(
        store.apply(&second).expect("apply"),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(
        store.apply(&first).expect("apply"),
        ApplyOutcome::AlreadyApplied
    );
    let mut conflicting = second.clone();
    conflicting.position.term = 2;
    assert!(matches!(
        store.apply(&conflicting),
        Err(StoreError::PositionConflict { .. })
    ));
    let applied = store.applied().expect("applied");
    assert_eq!(applied.position, LogPosition { term: 1, index: 2 });
    assert_eq!(applied.max_commit_ts, Timestamp(20));
    assert_eq!(applied.state, b"state@2".to_vec());
    drop(store);
    let engine = h.reopen(engine);
    let store = open(&engine);
    assert_eq!(store.applied(), Some(applied));
    let v = store
        .get(&doc(1), Timestamp::MAX)
        .expect("get")
        .expect("present");
    assert_eq!(v.body, b"v2".to_vec());
    assert_eq!(
        store.apply(&second).expect("apply"),
        ApplyOutcome::AlreadyApplied
    );
}

/// A batch that breaks a rule is refused whole: no data, no position.
pub fn invalid_batch_writes_nothing(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    let bad_index = batch(
        1,
        vec![Commit {
            ts: Timestamp(10),
            documents: vec![put(doc(1), "v")],
            index_entries: vec![IndexWrite {
                index: IndexNumber::DOCUMENTS,
                key: key_of(1),
                id: doc(1),
                live: true,
            }],
        }],
    );
    assert!(matches!(
        store.apply(&bad_index),
        Err(StoreError::InvalidBatch(_))
    ));
    let too_many = batch(
        1,
        vec![Commit {
            ts: Timestamp(10),
            documents: (0..=knobs::COMMIT_MAX_DOCUMENTS)
                .map(|_| put(doc(1), "v"))
                .collect(),
            index_entries: vec![],
        }],
    );
    assert!(matches!(
        store.apply(&too_many),
        Err(StoreError::InvalidBatch(_))
    ));
    let too_big = batch(
        1,
        vec![Commit {
            ts: Timestamp(10),
            documents: vec![DocumentWrite {
                id: doc(1),
                body: Some(vec![0u8; knobs::APPLY_BATCH_MAX_BYTES]),
            }],
            index_entries: vec![],
        }],
    );
    assert!(matches!(
        store.apply(&too_big),
        Err(StoreError::InvalidBatch(_))
    ));
    assert!(matches!(
        crate::validate_commits(&too_big.commits),
        Err(StoreError::InvalidBatch(_))
    ));
    assert_eq!(store.applied(), None);
    assert_eq!(store.get(&doc(1), Timestamp::MAX).expect("get"), None);
    let snap = engine.snapshot();
    assert_eq!(
        snap.range(
            Space::Data,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward
        )
        .count(),
        0
    );
}

/// GC removes only what no read at or after the watermark can see.
pub fn gc_keeps_reads_at_or_after_watermark(h: &mut dyn Harness) {
    let engine = h.fresh();
    let store = open(&engine);
    let (a, b) = (doc(1), doc(2));
    let commits = vec![
        Commit {
            ts: Timestamp(10),
            documents: vec![put(a, "a1"), put(b, "b1")],
            index_entries: vec![IndexWrite {
                index: INDEX,
                key: key_of(1),
                id: a,
                live: true,
            }],
        },
        Commit {
            ts: Timestamp(20),
            documents: vec![put(a, "a2")],
            index_entries: vec![
                IndexWrite {
                    index: INDEX,
                    key: key_of(1),
                    id: a,
                    live: false,
                },
                IndexWrite {
                    index: INDEX,
                    key: key_of(2),
                    id: a,
                    live: true,
                },
            ],
        },
        Commit {
            ts: Timestamp(30),
            documents: vec![DocumentWrite { id: b, body: None }],
            index_entries: vec![],
        },
        Commit {
            ts: Timestamp(40),
            documents: vec![put(a, "a3")],
            index_entries: vec![],
        },
    ];
    store.apply(&batch(1, commits)).expect("apply");
    let reads = |store: &MvccStore, ts: u64| {
        (
            store.get(&a, Timestamp(ts)).expect("get"),
            store.get(&b, Timestamp(ts)).expect("get"),
            scan_all(store, INDEX, Timestamp(ts), Order::Asc),
            scan_all(store, IndexNumber::DOCUMENTS, Timestamp(ts), Order::Desc),
        )
    };
    let before: Vec<_> = (30..45).map(|ts| reads(&store, ts)).collect();
    let mut progress_calls = 0;
    let stats = store
        .gc(Timestamp(30), |_| progress_calls += 1)
        .expect("gc");
    assert!(progress_calls >= 1);
    // Removed: a@10 (shadowed by a@20), b@10 and b's deletion at 30, a's index entry at key 1
    // (its tombstone at 20 and live version at 10).
    assert_eq!(stats.versions_removed, 5, "{stats:?}");
    let after: Vec<_> = (30..45).map(|ts| reads(&store, ts)).collect();
    assert_eq!(before, after);
    assert!(matches!(
        store.get(&a, Timestamp(29)),
        Err(StoreError::SnapshotTooOld { .. })
    ));
    // The watermark never goes down.
    store.gc(Timestamp(5), |_| {}).expect("gc");
    assert_eq!(store.gc_watermark(), Timestamp(30));
    drop(store);
    let engine = h.reopen(engine);
    let store = open(&engine);
    assert_eq!(store.gc_watermark(), Timestamp(30));
    assert!(matches!(
        store.get(&a, Timestamp(10)),
        Err(StoreError::SnapshotTooOld { .. })
    ));
    let again: Vec<_> = (30..45).map(|ts| reads(&store, ts)).collect();
    assert_eq!(before, again);
}

/// A checkpoint restored elsewhere reads the same and carries the applied state; a checkpoint
/// of one table's span replaces only that table.
pub fn checkpoint_restore_round_trip(h: &mut dyn Harness) {
    let source_engine = h.fresh();
    let source = open(&source_engine);
    let other_table = TableNumber::new(10002).expect("valid");
    let foreign = DocumentId::new(other_table, InternalId([9; 16]));
    source
        .apply(&batch(
            1,
            vec![
                Commit {
                    ts: Timestamp(10),
                    documents: vec![put(doc(1), "x1"), put(doc(2), "y1"), put(foreign, "f1")],
                    index_entries: vec![IndexWrite {
                        index: INDEX,
                        key: key_of(3),
                        id: doc(1),
                        live: true,
                    }],
                },
                Commit {
                    ts: Timestamp(20),
                    documents: vec![put(doc(1), "x2")],
                    index_entries: vec![],
                },
            ],
        ))
        .expect("apply");
    let mut stream = Vec::new();
    let info = source
        .checkpoint(&KeySpan::all(), &mut stream)
        .expect("checkpoint");
    assert_eq!(info.bytes as usize, stream.len());
    assert_eq!(info.applied, source.applied());

    let target_engine = h.fresh();
    let target = open(&target_engine);
    target
        .apply(&batch(
            7,
            vec![Commit {
                ts: Timestamp(5),
                documents: vec![put(doc(3), "stale")],
                index_entries: vec![],
            }],
        ))
        .expect("apply");
    let restored = target.restore(&mut stream.as_slice()).expect("restore");
    assert_eq!(restored.records, info.records);
    assert_eq!(target.applied(), source.applied());
    for ts in [9u64, 10, 15, 20, 99] {
        for id in [doc(1), doc(2), doc(3), foreign] {
            assert_eq!(
                target.get(&id, Timestamp(ts)).expect("get"),
                source.get(&id, Timestamp(ts)).expect("get")
            );
        }
        assert_eq!(
            scan_all(&target, INDEX, Timestamp(ts), Order::Asc),
            scan_all(&source, INDEX, Timestamp(ts), Order::Asc)
        );
    }
    // Durable across reopen.
    drop(target);
    let target_engine = h.reopen(target_engine);
    let target = open(&target_engine);
    assert_eq!(
        target
            .get(&doc(1), Timestamp(99))
            .expect("get")
            .map(|v| v.body),
        Some(b"x2".to_vec())
    );

    // A span checkpoint of table 10002 leaves table 10001 untouched in the target.
    source
        .apply(&batch(
            2,
            vec![Commit {
                ts: Timestamp(30),
                documents: vec![put(foreign, "f2"), put(doc(2), "y-new")],
                index_entries: vec![],
            }],
        ))
        .expect("apply");
    let mut span_stream = Vec::new();
    source
        .checkpoint(&KeySpan::table(other_table), &mut span_stream)
        .expect("checkpoint");
    target
        .restore(&mut span_stream.as_slice())
        .expect("restore");
    assert_eq!(
        target
            .get(&foreign, Timestamp(99))
            .expect("get")
            .map(|v| v.body),
        Some(b"f2".to_vec())
    );
    assert_eq!(
        target
            .get(&doc(2), Timestamp(99))
            .expect("get")
            .map(|v| v.body),
        Some(b"y1".to_vec())
    );
}

/// Corrupt or truncated streams are refused; a failure after the header leaves the store
/// refusing service until a good restore.
pub fn corrupt_checkpoint_is_refused(h: &mut dyn Harness) {
    let source_engine = h.fresh();
    let source = open(&source_engine);
    source
        .apply(&batch(
            1,
            vec![Commit {
                ts: Timestamp(10),
                documents: (0..20).map(|n| put(doc(n), "body")).collect(),
                index_entries: vec![],
            }],
        ))
        .expect("apply");
    let mut stream = Vec::new();
    source
        .checkpoint(&KeySpan::all(), &mut stream)
        .expect("checkpoint");

    let target_engine = h.fresh();
    let target = open(&target_engine);
    // Bad magic: refused before anything is written.
    let mut bad_magic = stream.clone();
    bad_magic[0] ^= 0xFF;
    assert!(matches!(
        target.restore(&mut bad_magic.as_slice()),
        Err(StoreError::BadCheckpoint(_))
    ));
    assert_eq!(target.get(&doc(1), Timestamp::MAX).expect("readable"), None);

    // A flipped byte in the records: checksum mismatch, store refuses service.
    let mut flipped = stream.clone();
    let at = stream.len() - 40;
    flipped[at] ^= 0x01;
    assert!(target.restore(&mut flipped.as_slice()).is_err());
    assert!(matches!(
        target.get(&doc(1), Timestamp::MAX),
        Err(StoreError::RestoreIncomplete)
    ));
    // Truncated.
    let truncated = &stream[..stream.len() / 2];
    assert!(target.restore(&mut &truncated[..]).is_err());
    // The state survives a restart: still refusing.
    drop(target);
    let target_engine = h.reopen(target_engine);
    let target = open(&target_engine);
    assert!(matches!(
        target.get(&doc(1), Timestamp::MAX),
        Err(StoreError::RestoreIncomplete)
    ));
    assert!(matches!(
        target.apply(&batch(5, vec![])),
        Err(StoreError::RestoreIncomplete)
    ));
    // A good restore heals it.
    target.restore(&mut stream.as_slice()).expect("restore");
    assert_eq!(
        target
            .get(&doc(1), Timestamp::MAX)
            .expect("get")
            .map(|v| v.body),
        Some(b"body".to_vec())
    );
}

/// A small deterministic PRNG (splitmix64), so the suite needs no dependency and a seed
/// reproduces a failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model's view of the table after a commit: id → (index key, body).
type ModelState = BTreeMap<DocumentId, (i64, Vec<u8>)>;

/// Applies a seeded random history (inserts, updates that move index entries, deletes;
/// several commits per log entry), then checks every read at every timestamp against a
/// model, before and after GC, after a checkpoint/restore and after a reopen.
pub fn random_history(h: &mut dyn Harness, seed: u64) {
    let mut rng = Rng(seed);
    let engine = h.fresh();
    let store = open(&engine);
    // model[i] = state after commit i: id → (index key, body)
    let mut states: Vec<(Timestamp, ModelState)> = vec![(Timestamp(0), BTreeMap::new())];
    let mut ts = 0u64;
    let mut position = 0u64;
    for _ in 0..40 {
        let mut commits = Vec::new();
        for _ in 0..=rng.below(3) {
            ts += 1 + rng.below(5);
            let mut state = states.last().expect("initial state").1.clone();
            let mut documents = Vec::new();
            let mut index_entries = Vec::new();
            let mut touched = Vec::new();
            for _ in 0..=rng.below(3) {
                let id = doc(rng.below(8) as u8);
                if touched.contains(&id) {
                    continue;
                }
                touched.push(id);
                let old = state.get(&id).cloned();
                if rng.below(4) == 0 {
                    if let Some((k, _)) = old {
                        documents.push(DocumentWrite { id, body: None });
                        index_entries.push(IndexWrite {
                            index: INDEX,
                            key: key_of(k),
                            id,
                            live: false,
                        });
                        state.remove(&id);
                    }
                } else {
                    let k = rng.below(5) as i64 - 2;
                    let body = format!("{seed}-{ts}-{}", rng.next()).into_bytes();
                    documents.push(DocumentWrite {
                        id,
                        body: Some(body.clone()),
                    });
                    match old {
                        Some((old_k, _)) if old_k == k => {}
                        Some((old_k, _)) => {
                            index_entries.push(IndexWrite {
                                index: INDEX,
                                key: key_of(old_k),
                                id,
                                live: false,
                            });
                            index_entries.push(IndexWrite {
                                index: INDEX,
                                key: key_of(k),
                                id,
                                live: true,
                            });
                        }
                        None => index_entries.push(IndexWrite {
                            index: INDEX,
                            key: key_of(k),
                            id,
                            live: true,
                        }),
                    }
                    state.insert(id, (k, body));
                }
            }
            commits.push(Commit {
                ts: Timestamp(ts),
                documents,
                index_entries,
            });
            states.push((Timestamp(ts), state));
        }
        position += 1;
        let mut b = batch(position, commits);
        b.durability = if rng.below(2) == 0 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        assert_eq!(store.apply(&b).expect("apply"), ApplyOutcome::Applied);
    }
    let model_at = |t: u64| -> &ModelState {
        &states
            .iter()
            .rev()
            .find(|(ts, _)| ts.0 <= t)
            .expect("state at 0")
            .1
    };
    let check = |store: &MvccStore, from: u64, rng: &mut Rng| {
        for t in from..=ts + 1 {
            let model = model_at(t);
            for n in 0..8u8 {
                let id = doc(n);
                let got = store.get(&id, Timestamp(t)).expect("get").map(|v| v.body);
                assert_eq!(
                    got,
                    model.get(&id).map(|(_, b)| b.clone()),
                    "seed {seed} get {id} at {t}"
                );
            }
            let mut by_index: Vec<(Vec<u8>, Vec<u8>)> = model
                .iter()
                .map(|(id, (k, body))| {
                    let mut entry = key_of(*k).into_bytes();
                    entry.extend_from_slice(&id.internal.0);
                    (entry, body.clone())
                })
                .collect();
            by_index.sort();
            let by_id: Vec<Vec<u8>> = model.values().map(|(_, b)| b.clone()).collect();
            for (index, expected) in [
                (
                    INDEX,
                    by_index.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
                ),
                (IndexNumber::DOCUMENTS, by_id),
            ] {
                for order in [Order::Asc, Order::Desc] {
                    let limit = 1 + rng.below(4) as usize;
                    let mut got = Vec::new();
                    let mut cursor = None;
                    loop {
                        let page = store
                            .scan(&ScanRequest {
                                table: table(),
                                index,
                                range: KeyRange::all(),
                                ts: Timestamp(t),
                                order,
                                limit,
                                cursor,
                            })
                            .expect("scan");
                        got.extend(page.rows.into_iter().map(|r| r.doc.body));
                        cursor = page.cursor;
                        if cursor.is_none() {
                            break;
                        }
                    }
                    let mut want = expected.clone();
                    if order == Order::Desc {
                        want.reverse();
                    }
                    assert_eq!(got, want, "seed {seed} scan {index:?} {order:?} at {t}");
                }
            }
        }
    };
    check(&store, 0, &mut rng);

    let mut stream = Vec::new();
    store
        .checkpoint(&KeySpan::all(), &mut stream)
        .expect("checkpoint");
    let cutoff = ts / 2;
    store.gc(Timestamp(cutoff), |_| {}).expect("gc");
    check(&store, cutoff, &mut rng);

    let copy_engine = h.fresh();
    let copy = open(&copy_engine);
    copy.restore(&mut stream.as_slice()).expect("restore");
    check(&copy, 0, &mut rng);

    drop(store);
    let engine = h.reopen(engine);
    let store = open(&engine);
    check(&store, cutoff, &mut rng);
}
