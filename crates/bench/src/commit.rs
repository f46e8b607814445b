//! `chorus-bench commit`: the commit path under closed-loop load. Each writer runs
//! transactions that insert one small document (no reads, so no conflicts) and waits for each
//! acknowledgement before starting the next. Durable: every group is fsync'd before any of its
//! commits is acknowledged.

use std::path::Path;
use std::time::{Duration, Instant};

use txn::{Catalog, LocalRange, Object, ReplicatorKind, TableDef};
use value::{TableNumber, Value};

use crate::{machine, ms, percentile};

struct Opts {
    writers: Vec<usize>,
    seconds: u64,
    replicator: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        writers: vec![1, 16, 128],
        seconds: 5,
        replicator: "raft".into(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--writers" => {
                opts.writers = value
                    .split(',')
                    .map(|w| {
                        w.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("--writers: bad number {w:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => {
                opts.seconds = value
                    .parse()
                    .map_err(|_| format!("--seconds: {value:?} is not a number"))?;
            }
            "--replicator" => opts.replicator = value.clone(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if opts.writers.is_empty() || opts.writers.contains(&0) {
        return Err("--writers needs positive numbers".into());
    }
    Ok(opts)
}

async fn level(dir: &Path, kind: &str, writers: usize, seconds: u64) -> Result<(), String> {
    let table = TableNumber::new(10001).map_err(|e| e.to_string())?;
    let kind: ReplicatorKind = kind.parse()?;
    let range = LocalRange::open(dir, kind, Catalog::new([TableDef::new(table, "bench")]))
        .await
        .map_err(|e| e.to_string())?;
    let db = range.db.clone();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0i64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut t = db.begin().map_err(|e| e.to_string())?;
                let doc: Object = [
                    ("writer".to_string(), Value::Int64(w as i64)),
                    ("n".to_string(), Value::Int64(n)),
                    ("payload".to_string(), Value::String("x".repeat(64))),
                ]
                .into_iter()
                .collect();
                t.insert(table, doc).map_err(|e| e.to_string())?;
                db.committer
                    .commit(t.finish().map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(t0.elapsed());
                n += 1;
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let stats = db.committer.stats();
    println!(
        "commit:   {writers:>3} writers: {:>7.0} commits/s, p50 {:.2} ms, p99 {:.2} ms, \
         {:.1} commits per group (= per fsync) [{} commits, {} groups, {:.1} s]",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        stats.commits as f64 / stats.groups.max(1) as f64,
        stats.commits,
        stats.groups,
        elapsed.as_secs_f64(),
    );
    range.shutdown().await.map_err(|e| e.to_string())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    println!("chorus-bench commit");
    println!("machine:  {}", machine());
    println!(
        "settings: replicator {} ({}), fjall store, durable (fsync per group), {} s per level, \
         each transaction inserts one ~100-byte document",
        opts.replicator,
        if opts.replicator == "raft" {
            "single-node openraft group: log fsync'd on append, store applied without fsync"
        } else {
            "no consensus: store fsync'd per group"
        },
        opts.seconds
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    for &writers in &opts.writers {
        let dir = tempfile::tempdir_in(".").map_err(|e| e.to_string())?;
        runtime.block_on(level(dir.path(), &opts.replicator, writers, opts.seconds))?;
    }
    Ok(())
}
