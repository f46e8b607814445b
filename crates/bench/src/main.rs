//! `chorus-bench`: benchmarks that print their numbers and the conditions they ran under.
//! Results go into `docs/benchmarks.md` together with the command that produced them.
//!
//! Usage: `chorus-bench store [--batches N] [--reads N] [--dir PATH]`
//!        `chorus-bench commit [--writers 1,16,128] [--seconds S] [--replicator raft|direct]`
//!        `chorus-bench functions [--bundle DIR] [--seconds S] [--callers 1,4] [--pause-ms P]`
//!        `chorus-bench cluster [--clients 1,16,128] [--secs S] [--spread leader,all] ...`

use std::time::{Duration, Instant};

use store::{
    ApplyBatch, Commit, DocumentWrite, Durability, IndexNumber, IndexWrite, KeyRange, LogPosition,
    MvccStore, Order, ScanRequest, Timestamp,
};
use value::{DocumentId, IndexKey, InternalId, TableNumber, Value};

mod cluster;
mod commit;
mod functions;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("store") => store_bench(&args[1..]),
        Some("commit") => commit::run(&args[1..]),
        Some("functions") => functions::run(&args[1..]),
        Some("cluster") => cluster::run(&args[1..]),
        _ => Err(
            "usage: chorus-bench store [--batches N] [--reads N] [--dir PATH]\n       \
             chorus-bench commit [--writers 1,16,128] [--seconds S] [--replicator raft|direct]\n       \
             chorus-bench functions [--bundle DIR] [--seconds S] [--callers 1,4] [--pause-ms P]\n       \
             chorus-bench cluster [--clients 1,16,128] [--secs S] [--warmup S] [--spread leader,all]\n                \
             [--chorus-bin PATH] [--etcd-bin PATH] [--project DIR] [--dir DIR] [--generator-threads N]\n  \
             store:  MVCC store on fjall: durable 100-document batches, point reads, index scans\n  \
             commit: transactions through the committer, durable, closed-loop writers\n  \
             functions: the real Convex bundle of tests/convex-project through the runtime\n  \
             cluster: replicated commits on a 3-node Chorus cluster next to a 3-member etcd cluster"
                .to_string(),
        ),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

struct Opts {
    batches: u64,
    reads: u64,
    dir: Option<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        batches: 1_000,
        reads: 500_000,
        dir: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--batches" => opts.batches = number()?.max(1),
            "--reads" => opts.reads = number()?.max(1),
            "--dir" => opts.dir = Some(value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(opts)
}

/// splitmix64: deterministic ids and bodies without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn internal_id(n: u64) -> InternalId {
    // Spread ids over the keyspace like random ids are, but reproducibly.
    let mut rng = Rng(n);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next().to_be_bytes());
    bytes[8..].copy_from_slice(&rng.next().to_be_bytes());
    InternalId(bytes)
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    format!(
        "{cores} cores ({cpu}), {:.1} GiB RAM, Linux {kernel}, {} build",
        mem_kib as f64 / (1024.0 * 1024.0),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn store_bench(args: &[String]) -> Result<(), String> {
    const DOCS_PER_BATCH: u64 = 100;
    const BODY_BYTES: usize = 200;
    const INDEX: IndexNumber = IndexNumber(1);
    let opts = parse_opts(args)?;
    let tmp;
    let dir = match &opts.dir {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir_in(".").map_err(|e| format!("tempdir: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let store = MvccStore::open_fjall(&dir).map_err(|e| format!("open store: {e}"))?;
    let table = TableNumber::new(10001).map_err(|e| e.to_string())?;
    let docs = opts.batches * DOCS_PER_BATCH;
    println!("chorus-bench store");
    println!("machine:  {}", machine());
    println!(
        "settings: fjall store in {}; {} batches x {DOCS_PER_BATCH} documents \
         ({BODY_BYTES}-byte bodies, 1 secondary index entry each), fsync per batch; \
         {} point reads",
        dir.display(),
        opts.batches,
        opts.reads
    );

    // 1. Durable apply of 100-document batches.
    let mut latencies = Vec::with_capacity(opts.batches as usize);
    let mut rng = Rng(42);
    let started = Instant::now();
    for b in 0..opts.batches {
        let ts = Timestamp(b + 1);
        let mut documents = Vec::with_capacity(DOCS_PER_BATCH as usize);
        let mut index_entries = Vec::with_capacity(DOCS_PER_BATCH as usize);
        for d in 0..DOCS_PER_BATCH {
            let n = b * DOCS_PER_BATCH + d;
            let id = DocumentId::new(table, internal_id(n));
            let mut body = vec![0u8; BODY_BYTES];
            for chunk in body.chunks_mut(8) {
                let r = rng.next().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            documents.push(DocumentWrite {
                id,
                body: Some(body),
            });
            let key = IndexKey::from_parts(&[Some(&Value::Int64((rng.next() % 1_000_000) as i64))])
                .map_err(|e| e.to_string())?;
            index_entries.push(IndexWrite {
                index: INDEX,
                key,
                id,
                live: true,
            });
        }
        let batch = ApplyBatch {
            position: LogPosition {
                term: 1,
                index: b + 1,
            },
            commits: vec![Commit {
                ts,
                documents,
                index_entries,
            }],
            state: Vec::new(),
            durability: Durability::Sync,
        };
        let t = Instant::now();
        store.apply(&batch).map_err(|e| format!("apply: {e}"))?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "apply:    {:.0} batches/s, {:.0} documents/s (durable, fsync per batch); \
         per batch p50 {:.2} ms, p99 {:.2} ms  [{} batches in {:.2} s]",
        opts.batches as f64 / elapsed.as_secs_f64(),
        docs as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        opts.batches,
        elapsed.as_secs_f64()
    );

    // 2. Point reads at one snapshot timestamp.
    let read_ts = Timestamp(opts.batches);
    let mut rng = Rng(7);
    let started = Instant::now();
    let mut found = 0u64;
    for _ in 0..opts.reads {
        let n = rng.next() % docs;
        let id = DocumentId::new(table, internal_id(n));
        if store
            .get(&id, read_ts)
            .map_err(|e| format!("get: {e}"))?
            .is_some()
        {
            found += 1;
        }
    }
    let elapsed = started.elapsed();
    if found != opts.reads {
        return Err(format!(
            "point reads found {found} of {} documents",
            opts.reads
        ));
    }
    println!(
        "get:      {:.0} point reads/s at a snapshot (1 thread, random ids over {docs} documents)",
        opts.reads as f64 / elapsed.as_secs_f64()
    );

    // 3. Index range scans: the whole secondary index in pages, both directions, and the
    //    documents themselves (no join).
    for (label, index) in [("index", INDEX), ("documents", IndexNumber::DOCUMENTS)] {
        for order in [Order::Asc, Order::Desc] {
            let started = Instant::now();
            let mut rows = 0u64;
            let mut cursor = None;
            loop {
                let page = store
                    .scan(&ScanRequest {
                        table,
                        index,
                        range: KeyRange::all(),
                        ts: read_ts,
                        order,
                        limit: 1_000,
                        cursor,
                    })
                    .map_err(|e| format!("scan: {e}"))?;
                rows += page.rows.len() as u64;
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            let elapsed = started.elapsed();
            if rows != docs {
                return Err(format!("{label} scan saw {rows} of {docs} rows"));
            }
            println!(
                "scan:     {:.0} rows/s, {label} {order:?}, pages of 1000 ({rows} rows in {:.2} s{})",
                rows as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64(),
                if index == INDEX {
                    ", each row joined to its document"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
