//! Transactions end to end over an in-memory store: reads see own writes, index entries follow
//! documents, conflicts name their cause, and the read rule holds under the dangerous
//! interleaving.

mod common;

use std::sync::Arc;

use common::{GatedReplicator, YieldingReplicator};
use replication::Replicator;
use store::{IndexNumber, KeyRange, MvccStore, Order, Timestamp};
use txn::{
    Catalog, CommitError, Committer, Database, IndexScan, LocalTso, Object, TableDef,
    TimestampOracle, TxnError,
};
use value::{TableNumber, Value};

fn table() -> TableNumber {
    TableNumber::new(10001).expect("valid")
}

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::new([
        TableDef::new(table(), "items").with_index("by_bucket", &["bucket"])
    ]))
}

const BY_BUCKET: IndexNumber = IndexNumber(2);

fn doc(bucket: i64, name: &str) -> Object {
    [
        ("bucket".to_string(), Value::Int64(bucket)),
        ("name".to_string(), Value::String(name.into())),
    ]
    .into_iter()
    .collect()
}

fn db_with(
    replicator: Arc<dyn Replicator>,
    store: Arc<MvccStore>,
    dir: &std::path::Path,
) -> Database {
    let tso: Arc<dyn TimestampOracle> = Arc::new(LocalTso::open(dir).expect("tso"));
    let committer = Committer::start(replicator, tso, Timestamp::MIN).expect("committer");
    Database::with_fixed_catalog(store, (*catalog()).clone(), committer)
}

fn new_db(dir: &std::path::Path) -> Database {
    let store = Arc::new(MvccStore::in_memory());
    db_with(
        Arc::new(YieldingReplicator::new(store.clone(), 1)),
        store,
        dir,
    )
}

fn bucket_range(bucket: i64) -> KeyRange {
    let mut prefix = Vec::new();
    value::key::encode(&Value::Int64(bucket), &mut prefix);
    KeyRange::prefix(&prefix)
}

fn names(rows: &[(Vec<u8>, Object)]) -> Vec<String> {
    rows.iter()
        .map(|(_, d)| match d.get("name") {
            Some(Value::String(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn scan(bucket: i64, order: Order, limit: usize) -> IndexScan {
    IndexScan {
        table: table(),
        index: BY_BUCKET,
        range: bucket_range(bucket),
        order,
        limit,
        cursor: None,
    }
}

#[tokio::test]
async fn own_writes_are_visible_and_index_entries_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut t = db.begin().expect("begin");
    let a = t.insert(table(), doc(1, "a")).expect("insert");
    let b = t.insert(table(), doc(1, "b")).expect("insert");
    let c = t.insert(table(), doc(2, "c")).expect("insert");
    assert_eq!(
        names(&t.scan(&scan(1, Order::Asc, 10)).expect("scan").rows),
        vec!["a", "b"]
    );
    let ts1 = db
        .committer
        .commit(t.finish().expect("finish"))
        .await
        .expect("commit");

    // A new transaction sees the committed state; moves b to bucket 2, deletes a, patches c.
    let mut t = db.begin().expect("begin");
    assert!(t.read_ts() >= ts1);
    assert_eq!(
        names(&t.scan(&scan(1, Order::Desc, 10)).expect("scan").rows),
        vec!["b", "a"]
    );
    let mut patch = txn::Patch::new();
    patch.insert("bucket".into(), Some(Value::Int64(2)));
    t.patch(&b, patch).expect("patch");
    t.delete(&a).expect("delete");
    t.replace(&c, doc(2, "c2")).expect("replace");
    assert!(
        t.scan(&scan(1, Order::Asc, 10))
            .expect("scan")
            .rows
            .is_empty()
    );
    // Within a bucket, entries order by _creationTime: b was created before c.
    assert_eq!(
        names(&t.scan(&scan(2, Order::Asc, 10)).expect("scan").rows),
        vec!["b", "c2"]
    );
    assert_eq!(t.get(&a).expect("get"), None);
    db.committer
        .commit(t.finish().expect("finish"))
        .await
        .expect("commit");

    let mut t = db.begin().expect("begin");
    assert!(
        t.scan(&scan(1, Order::Asc, 10))
            .expect("scan")
            .rows
            .is_empty()
    );
    let page = t.scan(&scan(2, Order::Asc, 1)).expect("scan");
    assert_eq!(names(&page.rows), vec!["b"]);
    let next = t
        .scan(&IndexScan {
            cursor: page.cursor,
            ..scan(2, Order::Asc, 1)
        })
        .expect("scan");
    assert_eq!(names(&next.rows), vec!["c2"]);
    let doc_c = t.get(&c).expect("get").expect("exists");
    assert_eq!(doc_c.get("_id"), Some(&Value::String(c.encode())));
    assert!(matches!(
        doc_c.get("_creationTime"),
        Some(Value::Float64(_))
    ));
}

#[tokio::test]
async fn bad_writes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut t = db.begin().expect("begin");
    let mut bad = doc(1, "x");
    bad.insert("_secret".into(), Value::Null);
    assert!(matches!(
        t.insert(table(), bad),
        Err(TxnError::SystemField(_))
    ));
    let other = TableNumber::new(20000).expect("valid");
    assert!(matches!(
        t.insert(other, doc(1, "x")),
        Err(TxnError::UnknownTable(_))
    ));
    let missing = value::DocumentId::new(table(), value::InternalId([9; 16]));
    assert!(matches!(t.delete(&missing), Err(TxnError::NotFound(_))));
    let mut deep = Value::Null;
    for _ in 0..20 {
        deep = Value::Array(vec![deep]);
    }
    let mut too_deep = doc(1, "x");
    too_deep.insert("deep".into(), deep);
    assert!(matches!(
        t.insert(table(), too_deep),
        Err(TxnError::InvalidDocument(_))
    ));
    let finished = t.finish().expect("finish");
    assert!(finished.is_read_only());
}

#[tokio::test]
async fn write_write_conflict_names_the_key_and_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut setup = db.begin().expect("begin");
    let id = setup.insert(table(), doc(1, "v0")).expect("insert");
    db.committer
        .commit(setup.finish().expect("finish"))
        .await
        .expect("commit");

    let mut t1 = db.begin().expect("begin");
    let mut t2 = db.begin().expect("begin");
    t1.replace(&id, doc(1, "t1")).expect("replace");
    t2.replace(&id, doc(1, "t2")).expect("replace");
    let ts1 = db
        .committer
        .commit(t1.finish().expect("finish"))
        .await
        .expect("commit t1");
    match db.committer.commit(t2.finish().expect("finish")).await {
        Err(CommitError::Conflict {
            table: t,
            index,
            key,
            ts,
        }) => {
            assert_eq!(t, table().get());
            assert_eq!(index, 0);
            assert_eq!(key, id.internal.0.to_vec());
            assert_eq!(ts, ts1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stats = db.committer.stats();
    assert_eq!(stats.conflicts, 1);
}

#[tokio::test]
async fn phantom_insert_into_a_scanned_range_conflicts_but_outside_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    // t1 reads the (empty) bucket 5 and writes elsewhere; t2 inserts into bucket 5 first.
    let mut t1 = db.begin().expect("begin");
    assert!(
        t1.scan(&scan(5, Order::Asc, 10))
            .expect("scan")
            .rows
            .is_empty()
    );
    t1.insert(table(), doc(6, "t1")).expect("insert");
    let mut t3 = db.begin().expect("begin");
    assert!(
        t3.scan(&scan(7, Order::Asc, 10))
            .expect("scan")
            .rows
            .is_empty()
    );
    t3.insert(table(), doc(8, "t3")).expect("insert");

    let mut t2 = db.begin().expect("begin");
    t2.insert(table(), doc(5, "t2")).expect("insert");
    db.committer
        .commit(t2.finish().expect("finish"))
        .await
        .expect("commit t2");

    assert!(matches!(
        db.committer.commit(t1.finish().expect("finish")).await,
        Err(CommitError::Conflict { .. })
    ));
    // t3 read bucket 7, which nobody wrote: it commits.
    db.committer
        .commit(t3.finish().expect("finish"))
        .await
        .expect("commit t3");
}

/// The dangerous interleaving: a commit has its timestamp but is not applied yet, and a reader
/// starts at a later timestamp. The reader must wait and then see the commit.
#[tokio::test]
async fn read_at_later_timestamp_waits_for_in_flight_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(MvccStore::in_memory());
    let (gated, mut entered) = GatedReplicator::new(store.clone());
    let gated = Arc::new(gated);
    let db = db_with(gated.clone(), store.clone(), dir.path());

    // Commit a document and let it through.
    let mut setup = db.begin().expect("begin");
    let id = setup.insert(table(), doc(1, "before")).expect("insert");
    let setup = setup.finish().expect("finish");
    gated.gate.add_permits(1);
    db.committer.commit(setup).await.expect("setup");
    entered.recv().await.expect("setup entered");

    // Writer: timestamp taken, replication held at the gate.
    let mut w = db.begin().expect("begin");
    w.replace(&id, doc(1, "after")).expect("replace");
    let w = w.finish().expect("finish");
    let committer = db.committer.clone();
    let writer = tokio::spawn(async move { committer.commit(w).await });
    entered.recv().await.expect("writer entered replication");

    // A reader picks a later timestamp (as a gateway taking one from the oracle would).
    let tso = LocalTso::open(dir.path()).expect("second oracle on the same window file");
    let later = tso.next().expect("ts");
    // Without the read rule, a read at `later` misses the in-flight commit:
    let unsafe_read = store.get(&id, later).expect("get").expect("exists");
    assert_eq!(
        value::key::decode_document(&unsafe_read.body)
            .expect("doc")
            .get("name"),
        Some(&Value::String("before".into()))
    );

    let db2 = db.clone();
    let reader = tokio::spawn(async move {
        let mut t = db2.begin_at(later).await.expect("begin_at");
        t.get(&id).expect("get")
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !reader.is_finished(),
        "the reader must wait for the in-flight commit"
    );
    assert!(!writer.is_finished());

    gated.gate.add_permits(1);
    let commit_ts = writer.await.expect("join").expect("commit");
    assert!(commit_ts < later);
    let seen = reader.await.expect("join").expect("document");
    assert_eq!(seen.get("name"), Some(&Value::String("after".into())));
}

/// Concurrent transactions often read at the same snapshot; their documents must still get
/// distinct creation times, increasing in the order the inserts happened.
#[tokio::test]
async fn creation_times_are_unique_across_transactions_at_one_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut t1 = db.begin().expect("begin");
    let mut t2 = db.begin().expect("begin");
    assert_eq!(t1.read_ts(), t2.read_ts());
    let mut inserted = Vec::new();
    for i in 0..5 {
        let t = if i % 2 == 0 { &mut t1 } else { &mut t2 };
        let id = t.insert(table(), doc(1, "x")).expect("insert");
        let created = match t
            .get(&id)
            .expect("get")
            .and_then(|d| d.get("_creationTime").cloned())
        {
            Some(Value::Float64(ms)) => ms,
            other => panic!("_creationTime is {other:?}"),
        };
        inserted.push(created);
    }
    for pair in inserted.windows(2) {
        assert!(
            pair[0] < pair[1],
            "creation times must increase: {inserted:?}"
        );
    }
    // Never below the wall clock at insert time (an idle database's snapshot can be old).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as f64;
    assert!(inserted[0] > now_ms - 60_000.0);
}

#[tokio::test]
async fn rollback_to_a_savepoint_undoes_later_writes_and_keeps_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut t = db.begin().expect("begin");
    let a = t.insert(table(), doc(1, "a")).expect("insert");
    let before = t.savepoint();
    let b = t.insert(table(), doc(1, "b")).expect("insert");
    t.replace(&a, doc(1, "a2")).expect("replace");
    assert_eq!(
        names(&t.scan(&scan(1, Order::Asc, 10)).expect("scan").rows),
        vec!["a2", "b"]
    );
    let reads_before_rollback = t.read_set().clone();
    t.rollback_to(before);
    assert_eq!(t.get(&b).expect("get"), None);
    assert_eq!(
        names(&t.scan(&scan(1, Order::Asc, 10)).expect("scan").rows),
        vec!["a"]
    );
    // The read set only grows: what was read after the savepoint is still recorded.
    assert!(t.read_set().len() >= reads_before_rollback.len());
    assert!(
        reads_before_rollback
            .iter()
            .all(|read| t.read_set().iter().any(|r| r == read))
    );
    let finished = t.finish().expect("finish");
    assert_eq!(finished.documents.len(), 1);
    db.committer.commit(finished).await.expect("commit");
    let mut t = db.begin().expect("begin");
    assert_eq!(
        names(&t.scan(&scan(1, Order::Asc, 10)).expect("scan").rows),
        vec!["a"]
    );
}

#[tokio::test]
async fn a_stopped_committer_refuses_with_a_retryable_not_leader_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut first = db.begin().expect("begin");
    first.insert(table(), doc(1, "kept")).expect("insert");
    db.committer
        .commit(first.finish().expect("finish"))
        .await
        .expect("commit");
    let applied = *db.committer.watch_applied().borrow();

    // A transaction runs; meanwhile the node loses the lead.
    let mut late = db.begin().expect("begin");
    late.insert(table(), doc(1, "refused")).expect("insert");
    db.committer.stop("lost the lead");
    assert!(db.committer.is_stopped());
    match db.committer.commit(late.finish().expect("finish")).await {
        Err(e @ CommitError::NotLeader { hint: None }) => assert!(e.is_retryable()),
        other => panic!("expected a retryable NotLeader, got {other:?}"),
    }
    assert!(db.begin().is_err(), "a stopped committer serves no reads");
    assert_eq!(*db.committer.watch_applied().borrow(), applied);
}

/// Write skew through an index (found by chorus-torture's list-append workload): each
/// transaction finds one document through the index and rewrites the *other* document's
/// non-indexed field. The second to commit read, through the index, a document the first
/// changed, so it must conflict even though no index key moved.
#[tokio::test]
async fn updating_non_indexed_fields_conflicts_with_a_reader_that_found_the_document_by_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = new_db(dir.path());
    let mut setup = db.begin().expect("begin");
    let a = setup.insert(table(), doc(1, "a0")).expect("insert");
    let b = setup.insert(table(), doc(2, "b0")).expect("insert");
    db.committer
        .commit(setup.finish().expect("finish"))
        .await
        .expect("commit");

    let mut t1 = db.begin().expect("begin");
    let mut t2 = db.begin().expect("begin");
    assert_eq!(
        names(&t1.scan(&scan(1, Order::Asc, 10)).expect("scan").rows),
        ["a0"]
    );
    assert_eq!(
        names(&t2.scan(&scan(2, Order::Asc, 10)).expect("scan").rows),
        ["b0"]
    );
    t1.replace(&b, doc(2, "b1 (saw a0)")).expect("replace");
    t2.replace(&a, doc(1, "a1 (saw b0)")).expect("replace");
    db.committer
        .commit(t1.finish().expect("finish"))
        .await
        .expect("commit t1");
    match db.committer.commit(t2.finish().expect("finish")).await {
        Err(CommitError::Conflict { index, .. }) => assert_eq!(index, BY_BUCKET.0),
        other => panic!("write skew: t2 must conflict, got {other:?}"),
    }
}
