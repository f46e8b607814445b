//! Query streams and pages over real transactions on an in-memory store: index ranges in both
//! orders, filters, limits, read sets that stop where the stream stopped, and pagination with
//! cursors to the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use replication::{BoxFuture, ReplicateError, Replicator};
use serde_json::{Value as Json, json};
use store::{ApplyBatch, Commit, Durability, LogPosition, MvccStore, Timestamp};
use txn::{Catalog, Committer, Database, LocalTso, Object, TableDef, TimestampOracle, Transaction};
use udf::{EvalError, Page, PreparedQuery, Query, QueryError, QueryStream};
use value::{DocumentId, TableNumber, Value};

/// Applies each group to the store at once, as the next entry of a one-node "log".
struct ApplyingReplicator {
    store: Arc<MvccStore>,
    index: AtomicU64,
}

impl Replicator for ApplyingReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            let position = LogPosition {
                term: 1,
                index: self.index.fetch_add(1, Ordering::SeqCst) + 1,
            };
            self.store.apply(&ApplyBatch {
                position,
                commits,
                state: vec![],
                durability: Durability::Buffered,
            })?;
            Ok(position)
        })
    }
}

const DOCS: i64 = 24;
const AUTHORS: [&str; 3] = ["a", "b", "c"];

fn table() -> TableNumber {
    TableNumber::new(10001).unwrap()
}

fn catalog() -> Catalog {
    Catalog::new([TableDef::new(table(), "messages")
        .with_index("by_author", &["author"])
        .with_index("by_author_n", &["author", "n"])])
}

fn message(n: i64) -> Object {
    let body = if n % 4 == 0 {
        String::new()
    } else {
        format!("m{n}")
    };
    [
        ("author".to_owned(), Value::from(AUTHORS[(n % 3) as usize])),
        ("n".to_owned(), Value::Int64(n)),
        ("body".to_owned(), Value::String(body)),
    ]
    .into_iter()
    .collect()
}

struct Fixture {
    db: Database,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn begin(&self) -> Transaction {
        self.db.begin().unwrap()
    }

    async fn commit(&self, t: Transaction) {
        self.db.committer.commit(t.finish().unwrap()).await.unwrap();
    }

    /// Inserts messages 0..DOCS in order (so `_creationTime` follows `n`).
    async fn seeded() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MvccStore::in_memory());
        let replicator = Arc::new(ApplyingReplicator {
            store: store.clone(),
            index: AtomicU64::new(0),
        });
        let tso: Arc<dyn TimestampOracle> = Arc::new(LocalTso::open(dir.path()).unwrap());
        let committer = Committer::start(replicator, tso, Timestamp::MIN).unwrap();
        let fixture = Fixture {
            db: Database::with_fixed_catalog(store, catalog(), committer),
            _dir: dir,
        };
        let mut t = fixture.begin();
        for n in 0..DOCS {
            t.insert(table(), message(n)).unwrap();
        }
        fixture.commit(t).await;
        fixture
    }
}

fn query(json: Json) -> Query {
    Query::from_json(&json).unwrap()
}

fn prepare(json: Json) -> PreparedQuery {
    PreparedQuery::new(query(json), &catalog()).unwrap()
}

fn stream(json: Json) -> QueryStream {
    QueryStream::new(query(json), &catalog()).unwrap()
}

fn drain(s: &mut QueryStream, t: &mut Transaction) -> Result<Vec<Object>, QueryError> {
    let mut out = Vec::new();
    while let Some(doc) = s.next(t)? {
        out.push(doc);
    }
    Ok(out)
}

fn ns(docs: &[Object]) -> Vec<i64> {
    docs.iter()
        .map(|d| match d.get("n") {
            Some(Value::Int64(n)) => *n,
            other => panic!("no n: {other:?}"),
        })
        .collect()
}

fn int(n: i64) -> Json {
    Value::Int64(n).to_json()
}

fn by_author(author: &str, order: &str, operators: Json) -> Json {
    json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_author", "range": [
            {"type": "Eq", "fieldPath": "author", "value": author}], "order": order},
        "operators": operators
    })
}

fn full_scan(order: &str, operators: Json) -> Json {
    json!({
        "source": {"type": "FullTableScan", "tableName": "messages", "order": order},
        "operators": operators
    })
}

/// Whether the transaction's read set covers `doc`'s entry in index `index_name`.
fn read_covers(t: &Transaction, index_name: &str, doc: &Object) -> bool {
    let cat = catalog();
    let def = cat.table(table()).unwrap().index_named(index_name).unwrap();
    let Some(Value::String(id)) = doc.get("_id") else {
        panic!("no _id");
    };
    let id = DocumentId::decode(id).unwrap();
    let entry = store::layout::index_entry(def.key_of(doc).unwrap().as_bytes(), &id.internal);
    t.read_set()
        .iter()
        .any(|(index, range)| index.index == def.number && range.contains(&entry))
}

fn expected(filter: impl Fn(i64) -> bool) -> Vec<i64> {
    (0..DOCS).filter(|n| filter(*n)).collect()
}

#[tokio::test]
async fn full_scans_follow_creation_time_both_ways() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let asc = drain(&mut stream(full_scan("asc", json!([]))), &mut t).unwrap();
    assert_eq!(ns(&asc), expected(|_| true));
    let mut s = stream(full_scan("desc", json!([])));
    let desc = drain(&mut s, &mut t).unwrap();
    let mut want = expected(|_| true);
    want.reverse();
    assert_eq!(ns(&desc), want);
    assert!(s.is_done());
    // Documents carry their system fields.
    assert!(matches!(
        asc[0].get("_creationTime"),
        Some(Value::Float64(_))
    ));
    assert!(matches!(asc[0].get("_id"), Some(Value::String(_))));
}

#[tokio::test]
async fn observed_by_author_desc_take_10() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let mut s = stream(by_author("a", "desc", json!([{"limit": 10}])));
    let docs = drain(&mut s, &mut t).unwrap();
    let mut want = expected(|n| n % 3 == 0);
    want.reverse();
    assert_eq!(ns(&docs), want);
    assert!(s.is_done());
    // Asked again after done, it stays done.
    assert_eq!(s.next(&mut t).unwrap(), None);
}

#[tokio::test]
async fn a_limit_reads_exactly_what_it_returns() {
    let f = Fixture::seeded().await;
    let mut all = f.begin();
    let b_desc = drain(&mut stream(by_author("b", "desc", json!([]))), &mut all).unwrap();
    assert_eq!(ns(&b_desc)[..4], [22, 19, 16, 13]);

    let mut t = f.begin();
    let mut s = stream(by_author("b", "desc", json!([{"limit": 3}])));
    let docs = drain(&mut s, &mut t).unwrap();
    assert_eq!(ns(&docs), vec![22, 19, 16]);
    assert!(read_covers(&t, "by_author", &b_desc[2]));
    assert!(!read_covers(&t, "by_author", &b_desc[3]));

    // Consuming one row at a time without a limit still never reads past what a batch asked.
    let mut t = f.begin();
    let mut s = stream(by_author("b", "asc", json!([])));
    let first = s.next(&mut t).unwrap().unwrap();
    assert_eq!(ns(&[first]), vec![1]);
    assert!(!s.is_done());

    // A limit of zero reads nothing at all.
    let mut t = f.begin();
    let mut s = stream(full_scan("asc", json!([{"limit": 0}])));
    assert_eq!(s.next(&mut t).unwrap(), None);
    assert!(t.read_set().is_empty());
}

#[tokio::test]
async fn index_ranges_with_bounds() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let range = |order: &str| {
        json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_author_n", "range": [
                {"type": "Lte", "fieldPath": "n", "value": int(18)},
                {"type": "Eq", "fieldPath": "author", "value": "a"},
                {"type": "Gt", "fieldPath": "n", "value": int(5)}], "order": order},
            "operators": []
        })
    };
    let asc = drain(&mut stream(range("asc")), &mut t).unwrap();
    assert_eq!(ns(&asc), vec![6, 9, 12, 15, 18]);
    let desc = drain(&mut stream(range("desc")), &mut t).unwrap();
    assert_eq!(ns(&desc), vec![18, 15, 12, 9, 6]);

    // A Float64 bound sorts above every Int64: `n < 5.0` holds for every n.
    let floats = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_author_n", "range": [
            {"type": "Eq", "fieldPath": "author", "value": "c"},
            {"type": "Lt", "fieldPath": "n", "value": 5.0}]},
        "operators": []
    });
    let docs = drain(&mut stream(floats), &mut t).unwrap();
    assert_eq!(ns(&docs), expected(|n| n % 3 == 2));

    // An impossible range reads nothing.
    let mut t = f.begin();
    let empty = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_author_n", "range": [
            {"type": "Eq", "fieldPath": "author", "value": "a"},
            {"type": "Gt", "fieldPath": "n", "value": int(9)},
            {"type": "Lt", "fieldPath": "n", "value": int(3)}]},
        "operators": []
    });
    assert!(drain(&mut stream(empty), &mut t).unwrap().is_empty());
    assert!(t.read_set().is_empty());
}

#[tokio::test]
async fn creation_time_and_id_ranges() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let all = drain(&mut stream(full_scan("asc", json!([]))), &mut t).unwrap();
    let ct10 = all[10].get("_creationTime").unwrap().to_json();
    let since = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_creation_time", "range": [
            {"type": "Gte", "fieldPath": "_creationTime", "value": ct10}]},
        "operators": []
    });
    assert_eq!(
        ns(&drain(&mut stream(since), &mut t).unwrap()),
        expected(|n| n >= 10)
    );

    // by_id orders by the id strings.
    let mut by_id: Vec<(String, i64)> = all
        .iter()
        .map(|d| match d.get("_id") {
            Some(Value::String(id)) => (id.clone(), ns(std::slice::from_ref(d))[0]),
            other => panic!("no _id: {other:?}"),
        })
        .collect();
    by_id.sort();
    let (middle, middle_n) = by_id[DOCS as usize / 2].clone();
    let after = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_id", "range": [
            {"type": "Gt", "fieldPath": "_id", "value": middle}]},
        "operators": []
    });
    let want: Vec<i64> = by_id[DOCS as usize / 2 + 1..]
        .iter()
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(ns(&drain(&mut stream(after), &mut t).unwrap()), want);
    let exact = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_id", "range": [
            {"type": "Eq", "fieldPath": "_id", "value": middle}]},
        "operators": []
    });
    assert_eq!(
        ns(&drain(&mut stream(exact), &mut t).unwrap()),
        vec![middle_n]
    );
}

#[tokio::test]
async fn filters_and_limits_apply_in_order() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let nonempty = json!({"filter": {"$neq": [{"$field": "body"}, {"$literal": ""}]}});
    // `.filter(q => q.neq(q.field("body"), ""))`
    let docs = drain(&mut stream(full_scan("asc", json!([nonempty]))), &mut t).unwrap();
    assert_eq!(ns(&docs), expected(|n| n % 4 != 0));
    // Filter, then limit: the first five non-empty messages.
    let docs = drain(
        &mut stream(full_scan("asc", json!([nonempty, {"limit": 5}]))),
        &mut t,
    )
    .unwrap();
    assert_eq!(ns(&docs), vec![1, 2, 3, 5, 6]);
    // Limit, then filter: the non-empty ones among the first five.
    let docs = drain(
        &mut stream(full_scan("asc", json!([{"limit": 5}, nonempty]))),
        &mut t,
    )
    .unwrap();
    assert_eq!(ns(&docs), vec![1, 2, 3]);
    // Arithmetic in filters: even n.
    let even = json!({"filter": {"$eq": [
        {"$mod": [{"$field": "n"}, {"$literal": int(2)}]}, {"$literal": int(0)}]}});
    let docs = drain(&mut stream(by_author("b", "asc", json!([even]))), &mut t).unwrap();
    assert_eq!(ns(&docs), expected(|n| n % 3 == 1 && n % 2 == 0));
}

#[tokio::test]
async fn filter_errors_end_the_stream() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let bad = json!({"filter": {"$gt": [{"$add": [{"$field": "body"}, {"$literal": int(1)}]},
        {"$literal": int(0)}]}});
    let mut s = stream(full_scan("asc", json!([bad])));
    let err = s.next(&mut t).unwrap_err();
    assert!(
        matches!(
            err,
            QueryError::Filter(EvalError::ArithmeticTypes {
                op: "$add",
                left: "string",
                right: "int64"
            })
        ),
        "{err}"
    );
    assert!(err.is_developer_error());
    assert!(s.is_done());
    assert_eq!(s.next(&mut t).unwrap(), None);
}

#[tokio::test]
async fn own_writes_are_streamed() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let mut doc = message(100);
    doc.insert("author".into(), "z".into());
    t.insert(table(), doc).unwrap();
    let docs = drain(&mut stream(by_author("z", "asc", json!([]))), &mut t).unwrap();
    assert_eq!(ns(&docs), vec![100]);
}

#[tokio::test]
async fn unknown_tables_are_empty_and_read_nothing() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let ghosts = json!({
        "source": {"type": "FullTableScan", "tableName": "ghosts"},
        "operators": []
    });
    let prepared = prepare(ghosts.clone());
    assert_eq!(prepared.missing_table(), Some("ghosts"));
    assert!(drain(&mut prepared.stream(), &mut t).unwrap().is_empty());
    let page = prepare(ghosts).page(&mut t, None, 10, None).unwrap();
    assert!(page.docs.is_empty() && page.is_done);
    assert!(t.read_set().is_empty());
}

/// Pages through `json` with `page_size`, each page in a fresh transaction; returns the pages.
fn paginate(f: &Fixture, json: &Json, page_size: usize) -> Vec<Page> {
    let mut pages: Vec<Page> = Vec::new();
    loop {
        let cursor = pages.last().map(|p| p.continue_cursor.clone());
        let mut t = f.begin();
        let page = prepare(json.clone())
            .page(&mut t, cursor.as_deref(), page_size, None)
            .unwrap();
        let done = page.is_done;
        pages.push(page);
        if done {
            return pages;
        }
        assert!(pages.len() <= DOCS as usize + 1, "pagination does not end");
    }
}

#[tokio::test]
async fn pages_walk_to_the_end_with_cursors() {
    let f = Fixture::seeded().await;
    let a_asc = expected(|n| n % 3 == 0);
    let pages = paginate(&f, &by_author("a", "asc", json!([])), 3);
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.docs.len(), p.is_done)).collect();
    assert_eq!(sizes, vec![(3, false), (3, false), (2, true)]);
    assert_eq!(ns(&pages[0].docs), a_asc[..3]);
    assert_eq!(ns(&pages[1].docs), a_asc[3..6]);
    assert_eq!(ns(&pages[2].docs), a_asc[6..]);
    let end = pages[2].continue_cursor.clone();
    assert!(pages[..2].iter().all(|p| p.continue_cursor != end));

    // From the end cursor: nothing more, still done.
    let mut t = f.begin();
    let after_end = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, Some(&end), 3, None)
        .unwrap();
    assert!(after_end.docs.is_empty() && after_end.is_done);
    assert_eq!(after_end.continue_cursor, end);

    // A page size that divides the range exactly: the last full page looks ahead and is done.
    let pages = paginate(&f, &by_author("a", "desc", json!([])), 4);
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.docs.len(), p.is_done)).collect();
    assert_eq!(sizes, vec![(4, false), (4, true)]);
    let mut a_desc = a_asc.clone();
    a_desc.reverse();
    let flat: Vec<i64> = pages.iter().flat_map(|p| ns(&p.docs)).collect();
    assert_eq!(flat, a_desc);

    // Filters apply within pages; every page but the last is full.
    let nonempty = json!([{"filter": {"$neq": [{"$field": "body"}, {"$literal": ""}]}}]);
    let pages = paginate(&f, &full_scan("asc", nonempty), 5);
    assert!(pages[..pages.len() - 1].iter().all(|p| p.docs.len() == 5));
    let flat: Vec<i64> = pages.iter().flat_map(|p| ns(&p.docs)).collect();
    assert_eq!(flat, expected(|n| n % 4 != 0));

    // A limit counts across pages (cursors carry its count) and ends the pagination.
    let pages = paginate(&f, &full_scan("desc", json!([{"limit": 7}])), 3);
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.docs.len(), p.is_done)).collect();
    assert_eq!(sizes, vec![(3, false), (3, false), (1, true)]);
    let flat: Vec<i64> = pages.iter().flat_map(|p| ns(&p.docs)).collect();
    assert_eq!(flat, (DOCS - 7..DOCS).rev().collect::<Vec<_>>());
    let pages = paginate(&f, &full_scan("asc", json!([{"limit": 2}])), 3);
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.docs.len(), p.is_done)).collect();
    assert_eq!(sizes, vec![(2, true)]);
}

#[tokio::test]
async fn a_page_reads_up_to_the_row_after_its_last_document() {
    let f = Fixture::seeded().await;
    let mut all = f.begin();
    let a = drain(&mut stream(by_author("a", "asc", json!([]))), &mut all).unwrap();
    let mut t = f.begin();
    let page = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, None, 3, None)
        .unwrap();
    assert_eq!(ns(&page.docs), ns(&a[..3]));
    assert!(!page.is_done);
    // The look-ahead row is read but not returned, and the next page starts with it.
    assert!(read_covers(&t, "by_author", &a[3]));
    assert!(!read_covers(&t, "by_author", &a[4]));
    let next = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, Some(&page.continue_cursor), 1, None)
        .unwrap();
    assert_eq!(ns(&next.docs), ns(&a[3..4]));
}

/// The documents of author `a` with `n` in `from..`, in `n` order (index `by_author_n`).
fn a_from(from: i64, operators: Json) -> Json {
    json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_author_n", "range": [
            {"type": "Eq", "fieldPath": "author", "value": "a"},
            {"type": "Gte", "fieldPath": "n", "value": int(from)}]},
        "operators": operators
    })
}

/// A message by `a` with `n`, as a writer outside the page's transaction inserts it.
fn a_message(n: i64) -> Object {
    let mut doc = message(n);
    doc.insert("author".into(), "a".into());
    doc
}

#[tokio::test]
async fn a_full_page_knows_whether_it_is_the_last() {
    let f = Fixture::seeded().await;
    // Author `a` has n = 0, 3, …, 21; from 12 on: 12, 15, 18, 21.
    let json = a_from(12, json!([]));

    // The page ends exactly at the last row: done, with the end cursor.
    let mut t = f.begin();
    let page = prepare(json.clone()).page(&mut t, None, 4, None).unwrap();
    assert_eq!(ns(&page.docs), vec![12, 15, 18, 21]);
    assert!(page.is_done);
    let mut t = f.begin();
    let after = prepare(json.clone())
        .page(&mut t, Some(&page.continue_cursor), 4, None)
        .unwrap();
    assert!(after.docs.is_empty() && after.is_done);

    // The page ends one before the last row: not done, and the cursor resumes at that row.
    let mut t = f.begin();
    let page = prepare(json.clone()).page(&mut t, None, 3, None).unwrap();
    assert_eq!(ns(&page.docs), vec![12, 15, 18]);
    assert!(!page.is_done);
    let mut t = f.begin();
    let last = prepare(json.clone())
        .page(&mut t, Some(&page.continue_cursor), 3, None)
        .unwrap();
    assert_eq!(ns(&last.docs), vec![21]);
    assert!(last.is_done);

    // A filter rejects every row after the page: done, and the look-ahead did not count them.
    let below_20 = json!([{"filter": {"$lt": [{"$field": "n"}, {"$literal": int(20)}]}}]);
    let mut t = f.begin();
    let page = prepare(a_from(12, below_20.clone()))
        .page(&mut t, None, 3, None)
        .unwrap();
    assert_eq!(ns(&page.docs), vec![12, 15, 18]);
    assert!(page.is_done);
    // With one row left that passes it, not done.
    let below_22 = json!([{"filter": {"$lt": [{"$field": "n"}, {"$literal": int(22)}]}}]);
    let mut t = f.begin();
    let page = prepare(a_from(12, below_22))
        .page(&mut t, None, 3, None)
        .unwrap();
    assert_eq!(ns(&page.docs), vec![12, 15, 18]);
    assert!(!page.is_done);

    // A limit before a filter: the look-ahead's rows count against the limit only for deciding
    // `is_done`; the cursor carries the counts at the page's last document.
    let limited = json!([{"limit": 4},
        {"filter": {"$neq": [{"$field": "n"}, {"$literal": int(15)}]}}]);
    let pages = paginate(&f, &a_from(12, limited), 1);
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.docs.len(), p.is_done)).collect();
    assert_eq!(sizes, vec![(1, false), (1, false), (1, true)]);
    let flat: Vec<i64> = pages.iter().flat_map(|p| ns(&p.docs)).collect();
    assert_eq!(flat, vec![12, 18, 21]);
}

#[tokio::test]
async fn a_done_page_reads_to_the_end_of_its_range() {
    let below_20 = json!([{"filter": {"$lt": [{"$field": "n"}, {"$literal": int(20)}]}}]);
    // (query, page size, done): author `a` from n = 12 has 12, 15, 18, 21.
    let cases = [
        // Ends at the last row.
        (a_from(12, json!([])), 4, true),
        // The filter rejects the only row after the page.
        (a_from(12, below_20), 3, true),
        // One row follows: the page reads up to it and no further.
        (a_from(12, json!([])), 3, false),
    ];
    for (json, page_size, done) in cases {
        let f = Fixture::seeded().await;
        let mut t = f.begin();
        let last = drain(&mut stream(a_from(21, json!([]))), &mut f.begin()).unwrap();
        assert_eq!(ns(&last), vec![21]);
        // Where a document with n = 1000 would go (any id will do: the key comes first).
        let mut beyond = a_message(1_000);
        beyond.insert("_id".into(), last[0].get("_id").unwrap().clone());
        let page = prepare(json).page(&mut t, None, page_size, None).unwrap();
        assert_eq!(page.is_done, done);
        assert!(read_covers(&t, "by_author_n", &last[0]));
        assert_eq!(read_covers(&t, "by_author_n", &beyond), done);

        // A document inserted after the last row invalidates a done page (the subscription
        // that saw `isDone: true` re-runs), and only a done one.
        let mut w = f.begin();
        w.insert(table(), a_message(1_000)).unwrap();
        let from = t.read_ts();
        let to = f.db.committer.commit(w.finish().unwrap()).await.unwrap();
        assert_eq!(f.db.committer.changed(t.read_set(), from, to), done);
    }
}

#[tokio::test]
async fn an_end_cursor_pins_a_page_while_documents_arrive() {
    let f = Fixture::seeded().await;
    let json = json!({
        "source": {"type": "IndexRange", "indexName": "messages.by_author_n", "range": [
            {"type": "Eq", "fieldPath": "author", "value": "a"}]},
        "operators": []
    });
    let mut t = f.begin();
    let first = prepare(json.clone()).page(&mut t, None, 3, None).unwrap();
    assert_eq!(ns(&first.docs), vec![0, 3, 6]);

    // A new document lands inside the first page's range.
    let mut w = f.begin();
    let mut doc = message(1);
    doc.insert("author".into(), "a".into());
    w.insert(table(), doc).unwrap();
    f.commit(w).await;

    // Re-running the first page up to its end cursor returns every document in it, more than
    // the page size, and continues where it did before.
    let mut t = f.begin();
    let refreshed = prepare(json.clone())
        .page(&mut t, None, 3, Some(&first.continue_cursor))
        .unwrap();
    assert_eq!(ns(&refreshed.docs), vec![0, 1, 3, 6]);
    assert!(!refreshed.is_done);
    assert_eq!(refreshed.continue_cursor, first.continue_cursor);

    let second = prepare(json.clone())
        .page(&mut t, Some(&first.continue_cursor), 3, None)
        .unwrap();
    assert_eq!(ns(&second.docs), vec![9, 12, 15]);

    // With the end cursor the page reaches to the end of the range and is done.
    let rest = prepare(json.clone())
        .page(&mut t, Some(&second.continue_cursor), 1, None)
        .unwrap();
    let end_page = prepare(json.clone())
        .page(
            &mut t,
            Some(&second.continue_cursor),
            1,
            Some(&rest.continue_cursor),
        )
        .unwrap();
    assert_eq!(ns(&end_page.docs), vec![18]);
    let mut to_end = rest;
    while !to_end.is_done {
        to_end = prepare(json.clone())
            .page(&mut t, Some(&to_end.continue_cursor), 10, None)
            .unwrap();
    }
    let tail = prepare(json)
        .page(
            &mut t,
            Some(&second.continue_cursor),
            1,
            Some(&to_end.continue_cursor),
        )
        .unwrap();
    assert_eq!(ns(&tail.docs), vec![18, 21]);
    assert!(tail.is_done);
}

#[tokio::test]
async fn bad_page_requests() {
    let f = Fixture::seeded().await;
    let mut t = f.begin();
    let first = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, None, 2, None)
        .unwrap();
    let err = prepare(by_author("b", "asc", json!([])))
        .page(&mut t, Some(&first.continue_cursor), 2, None)
        .unwrap_err();
    assert!(matches!(err, QueryError::CursorFromOtherQuery), "{err}");
    let err = prepare(by_author("a", "desc", json!([])))
        .page(&mut t, Some(&first.continue_cursor), 2, None)
        .unwrap_err();
    assert!(matches!(err, QueryError::CursorFromOtherQuery), "{err}");
    let err = prepare(by_author("a", "asc", json!([{"limit": 5}])))
        .page(&mut t, Some(&first.continue_cursor), 2, None)
        .unwrap_err();
    assert!(matches!(err, QueryError::InvalidCursor { .. }), "{err}");
    let err = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, Some("garbage!"), 2, None)
        .unwrap_err();
    assert!(matches!(err, QueryError::InvalidCursor { .. }), "{err}");
    let err = prepare(by_author("a", "asc", json!([])))
        .page(&mut t, None, 0, None)
        .unwrap_err();
    assert!(matches!(err, QueryError::InvalidPageSize), "{err}");
}
