//! A writer process for the crash test (`crates/txn/tests/crash.rs`): commits transactions on
//! a durable single-node range and prints `ACK <seq> <commit ts>` for each acknowledged one,
//! until it is killed. `verify` recovers the same directory and prints what is stored.
//!
//! Each transaction reads the counter document (value n), inserts a `ledger` document and a
//! `mirror` document both with `seq = n + 1`, and sets the counter to n + 1. So after any crash
//! the stored state must satisfy: ledger seqs = mirror seqs = 1..=counter, and every
//! acknowledged seq is among them.
//!
//! Usage: `txn-crash-writer run --dir DIR [--writers N] [--replicator raft|direct]`
//!      | `txn-crash-writer verify --dir DIR [--replicator raft|direct]`
//!
//! With `raft` (the default) commits go through a single-node Raft group whose log is the
//! durable record and whose state machine applies without fsync, so recovery replays the log.

use std::io::Write;
use std::path::{Path, PathBuf};

use store::{IndexNumber, KeyRange, Order};
use txn::{Catalog, IndexScan, LocalRange, Object, ReplicatorKind, TableDef, Transaction};
use value::{TableNumber, Value};

const LEDGER: u32 = 10001;
const MIRROR: u32 = 10002;
const COUNTER: u32 = 10003;

fn table(n: u32) -> Result<TableNumber, String> {
    TableNumber::new(n).map_err(|e| e.to_string())
}

fn catalog() -> Result<Catalog, String> {
    Ok(Catalog::new([
        TableDef::new(table(LEDGER)?, "ledger").with_index("by_seq", &["seq"]),
        TableDef::new(table(MIRROR)?, "mirror"),
        TableDef::new(table(COUNTER)?, "counter"),
    ]))
}

fn seq_of(doc: &Object) -> Result<i64, String> {
    match doc.get("seq") {
        Some(Value::Int64(n)) => Ok(*n),
        other => Err(format!("seq field is {other:?}")),
    }
}

/// Every document of `table` at the transaction's snapshot.
fn all_docs(t: &mut Transaction, table: TableNumber) -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = t
            .scan(&IndexScan {
                table,
                index: IndexNumber::DOCUMENTS,
                range: KeyRange::all(),
                order: Order::Asc,
                limit: 1_000,
                cursor,
            })
            .map_err(|e| e.to_string())?;
        out.extend(page.rows.into_iter().map(|(_, doc)| doc));
        cursor = page.cursor;
        if cursor.is_none() {
            return Ok(out);
        }
    }
}

async fn open(dir: &Path, kind: &str) -> Result<LocalRange, String> {
    let kind: ReplicatorKind = kind.parse()?;
    LocalRange::open(dir, kind, catalog()?)
        .await
        .map_err(|e| e.to_string())
}

async fn run(dir: &Path, writers: usize, kind: &str) -> Result<(), String> {
    let range = open(dir, kind).await?;
    let db = range.db.clone();
    // Create the counter document once.
    let counter_table = table(COUNTER)?;
    let mut t = db.begin().map_err(|e| e.to_string())?;
    if all_docs(&mut t, counter_table)?.is_empty() {
        let fields: Object = [("seq".to_string(), Value::Int64(0))].into_iter().collect();
        t.insert(counter_table, fields).map_err(|e| e.to_string())?;
        db.committer
            .commit(t.finish().map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
    }
    println!("READY");
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let result = db
                    .transact(|mut t| async move {
                        let counter = all_docs(&mut t, counter_table)?
                            .into_iter()
                            .next()
                            .ok_or("counter document missing")?;
                        let counter_id = match counter.get("_id") {
                            Some(Value::String(s)) => {
                                s.parse::<value::DocumentId>().map_err(|e| e.to_string())?
                            }
                            other => return Err(format!("_id is {other:?}")),
                        };
                        let seq = seq_of(&counter)? + 1;
                        let doc: Object = [("seq".to_string(), Value::Int64(seq))]
                            .into_iter()
                            .collect();
                        t.insert(table(LEDGER)?, doc.clone())
                            .map_err(|e| e.to_string())?;
                        t.insert(table(MIRROR)?, doc.clone())
                            .map_err(|e| e.to_string())?;
                        t.replace(&counter_id, doc).map_err(|e| e.to_string())?;
                        Ok::<_, String>((seq, t))
                    })
                    .await;
                match result {
                    Ok((seq, ts)) => {
                        let mut out = std::io::stdout().lock();
                        // Printed only after the commit is acknowledged (durable and applied).
                        let _ = writeln!(out, "ACK {seq} {ts}");
                        let _ = out.flush();
                    }
                    // Contention on the one counter: try again.
                    Err(txn::TransactError::TooManyRetries { .. }) => {}
                    Err(e) => {
                        eprintln!("commit failed: {e}");
                        return;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Err("every writer stopped".into())
}

async fn verify(dir: &Path, kind: &str) -> Result<(), String> {
    let range = open(dir, kind).await?;
    let db = range.db.clone();
    let mut t = db.begin().map_err(|e| e.to_string())?;
    let counter = all_docs(&mut t, table(COUNTER)?)?;
    let counter = match counter.as_slice() {
        [] => 0,
        [doc] => seq_of(doc)?,
        more => return Err(format!("{} counter documents", more.len())),
    };
    let seqs = |docs: Vec<Object>| -> Result<Vec<String>, String> {
        docs.iter()
            .map(|d| seq_of(d).map(|n| n.to_string()))
            .collect()
    };
    println!("COUNTER {counter}");
    println!(
        "LEDGER {}",
        seqs(all_docs(&mut t, table(LEDGER)?)?)?.join(",")
    );
    println!(
        "MIRROR {}",
        seqs(all_docs(&mut t, table(MIRROR)?)?)?.join(",")
    );
    range.shutdown().await.map_err(|e| e.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir: Option<PathBuf> = None;
    let mut writers = 8usize;
    let mut kind = "raft".to_string();
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
            ("--writers", Some(v)) => writers = v.parse().unwrap_or(8),
            ("--replicator", Some(v)) => kind = v.clone(),
            _ => {
                eprintln!("unknown or incomplete flag {flag}");
                std::process::exit(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: txn-crash-writer run|verify --dir DIR [--writers N]");
        std::process::exit(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("run") => run(&dir, writers, &kind).await,
            Some("verify") => verify(&dir, &kind).await,
            _ => Err("first argument must be run or verify".into()),
        }
    });
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
