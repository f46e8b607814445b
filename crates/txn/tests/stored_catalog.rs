//! The catalog stored in the database (`txn::system`): tables created on first insert commit or
//! abort with the transaction that creates them, concurrent creators conflict, every
//! transaction depends on the catalog it read, the catalog survives a restart, and a new index
//! on existing documents is backfilled before it is enabled.

use std::collections::BTreeMap;

use store::{IndexNumber, KeyRange, Order};
use txn::{
    CommitError, IndexScan, IndexState, LocalRange, Object, ReplicatorKind, TableDef, Transaction,
};
use value::Value;

fn doc(n: i64) -> Object {
    BTreeMap::from([("n".to_string(), Value::Int64(n))])
}

async fn commit(range: &LocalRange, txn: Transaction) -> Result<store::Timestamp, CommitError> {
    range
        .db
        .committer
        .commit(txn.finish().expect("finish"))
        .await
}

#[tokio::test]
async fn a_table_is_created_by_its_first_insert_and_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Raft, None)
        .await
        .expect("open");
    let mut t = range.db.begin().expect("begin");
    assert!(t.catalog().table_named("users").is_none());
    let users = t.create_table("users").expect("create");
    assert_eq!(users.get(), txn::system::FIRST_USER_TABLE);
    let id = t.insert(users, doc(1)).expect("insert");
    // The same transaction sees its own table.
    assert_eq!(
        t.get(&id).expect("get").expect("doc").get("n"),
        Some(&Value::Int64(1))
    );
    commit(&range, t).await.expect("commit");

    let mut t = range.db.begin().expect("begin");
    assert_eq!(
        t.catalog().table_named("users").map(|t| t.number),
        Some(users)
    );
    assert!(t.get(&id).expect("get").is_some());
    // A second table gets the next number; a bad name is refused.
    assert_eq!(
        t.create_table("posts").expect("create").get(),
        users.get() + 1
    );
    assert!(t.create_table("_secret").is_err());
    assert!(t.create_table("has space").is_err());
    commit(&range, t).await.expect("commit");
    range.shutdown().await.expect("shutdown");

    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Raft, None)
        .await
        .expect("reopen");
    let mut t = range.db.begin().expect("begin");
    let names: Vec<_> = t
        .catalog()
        .tables()
        .map(|t| (t.name.clone(), t.number.get()))
        .collect();
    assert!(names.contains(&("users".into(), users.get())), "{names:?}");
    assert!(
        names.contains(&("posts".into(), users.get() + 1)),
        "{names:?}"
    );
    assert!(t.get(&id).expect("get").is_some());
    range.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_aborted_creation_leaves_no_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Direct, None)
        .await
        .expect("open");
    let mut t = range.db.begin().expect("begin");
    let table = t.create_table("ghosts").expect("create");
    t.insert(table, doc(1)).expect("insert");
    drop(t);
    let t = range.db.begin().expect("begin");
    assert!(t.catalog().table_named("ghosts").is_none());

    // Rolled back to a savepoint taken before the creation: the table is gone with the insert.
    let mut t = range.db.begin().expect("begin");
    let savepoint = t.savepoint();
    let table = t.create_table("ghosts").expect("create");
    t.insert(table, doc(1)).expect("insert");
    t.rollback_to(savepoint);
    assert!(t.catalog().table_named("ghosts").is_none());
    commit(&range, t).await.expect("commit");
    let t = range.db.begin().expect("begin");
    assert!(t.catalog().table_named("ghosts").is_none());
}

#[tokio::test]
async fn concurrent_creators_conflict_and_the_retry_finds_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Direct, None)
        .await
        .expect("open");
    let mut a = range.db.begin().expect("begin");
    let mut b = range.db.begin().expect("begin");
    let ta = a.create_table("items").expect("create");
    let tb = b.create_table("items").expect("create");
    assert_eq!(ta, tb, "both picked the same number at one snapshot");
    a.insert(ta, doc(1)).expect("insert");
    b.insert(tb, doc(2)).expect("insert");
    commit(&range, a).await.expect("first creator commits");
    let err = commit(&range, b)
        .await
        .expect_err("second creator conflicts");
    assert!(matches!(err, CommitError::Conflict { .. }), "{err}");

    let mut retry = range.db.begin().expect("begin");
    assert_eq!(retry.create_table("items").expect("exists"), ta);
    retry.insert(ta, doc(2)).expect("insert");
    commit(&range, retry).await.expect("retry commits");
    let scan = range
        .db
        .begin()
        .expect("begin")
        .scan(&IndexScan {
            table: ta,
            index: IndexNumber(1),
            range: KeyRange::all(),
            order: Order::Asc,
            limit: 10,
            cursor: None,
        })
        .expect("scan");
    assert_eq!(scan.rows.len(), 2);
}

#[tokio::test]
async fn every_transaction_depends_on_the_catalog_it_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Direct, None)
        .await
        .expect("open");
    let mut setup = range.db.begin().expect("begin");
    let items = setup.create_table("items").expect("create");
    commit(&range, setup).await.expect("commit");

    // `writer` read the catalog; a catalog change commits before it does.
    let mut writer = range.db.begin().expect("begin");
    writer.insert(items, doc(1)).expect("insert");
    let mut changer = range.db.begin().expect("begin");
    changer.create_table("other").expect("create");
    commit(&range, changer).await.expect("commit");
    let err = commit(&range, writer).await.expect_err("stale catalog");
    assert!(matches!(err, CommitError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn a_new_index_is_backfilled_before_it_is_enabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let range = LocalRange::open_stored(dir.path(), ReplicatorKind::Direct, None)
        .await
        .expect("open");
    let mut t = range.db.begin().expect("begin");
    let items = t.create_table("items").expect("create");
    let mut ids = Vec::new();
    for n in [3, 1, 2] {
        ids.push(t.insert(items, doc(n)).expect("insert"));
    }
    commit(&range, t).await.expect("commit");

    // Add `by_n`, backfilling.
    let mut t = range.db.begin().expect("begin");
    let mut catalog = (**t.catalog()).clone();
    let table = catalog.table(items).expect("table").clone();
    let mut table: TableDef = table.with_index("by_n", &["n"]);
    let by_n = table.index_named("by_n").expect("index").number;
    table.indexes.last_mut().expect("index").state = IndexState::Backfilling;
    catalog.insert(table);
    t.set_catalog(catalog).expect("set catalog");
    commit(&range, t).await.expect("commit");

    // A write after the index exists maintains it; a document from before does not yet
    // have an entry.
    let mut t = range.db.begin().expect("begin");
    t.insert(items, doc(0)).expect("insert");
    commit(&range, t).await.expect("commit");
    let by_n_scan = |t: &mut Transaction| {
        t.scan(&IndexScan {
            table: items,
            index: by_n,
            range: KeyRange::all(),
            order: Order::Asc,
            limit: 10,
            cursor: None,
        })
        .expect("scan")
        .rows
        .into_iter()
        .map(|(_, d)| d.get("n").cloned())
        .collect::<Vec<_>>()
    };
    let mut t = range.db.begin().expect("begin");
    assert_eq!(by_n_scan(&mut t), vec![Some(Value::Int64(0))]);

    // Backfill the three older documents, then enable the index.
    let mut t = range.db.begin().expect("begin");
    for id in &ids {
        assert!(t.backfill_index_entry(id, by_n).expect("backfill"));
    }
    commit(&range, t).await.expect("commit");
    let mut t = range.db.begin().expect("begin");
    let mut catalog = (**t.catalog()).clone();
    let mut table = catalog.table(items).expect("table").clone();
    for index in &mut table.indexes {
        index.state = IndexState::Enabled;
    }
    catalog.insert(table);
    t.set_catalog(catalog).expect("set catalog");
    commit(&range, t).await.expect("commit");

    let mut t = range.db.begin().expect("begin");
    assert_eq!(
        by_n_scan(&mut t),
        [0, 1, 2, 3].map(|n| Some(Value::Int64(n))).to_vec()
    );
    // Backfilling an enabled index is refused.
    assert!(t.backfill_index_entry(&ids[0], by_n).is_err());
}
