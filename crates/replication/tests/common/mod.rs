//! Helpers shared by the Raft integration tests: replicas over tempdirs and an in-process
//! router, deterministic commits, and a history of acknowledged writes to check stores against.
#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::impls::BasicNode;
use replication::raft::{InProcessRouter, RangeReplica, ReplicaOptions};
use replication::{ReplicateError, Replicator};
use store::{
    Commit, DocumentWrite, IndexNumber, KeyRange, KeySpan, LogPosition, MvccStore, Order,
    ScanRequest, Timestamp,
};
use value::{DocumentId, InternalId, TableNumber};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn node(id: u64) -> BasicNode {
    BasicNode {
        addr: format!("in-process-{id}"),
    }
}

pub fn doc_id(n: u64) -> DocumentId {
    let mut internal = [0u8; 16];
    internal[..8].copy_from_slice(&n.to_be_bytes());
    internal[8..].copy_from_slice(&(!n).to_be_bytes());
    DocumentId::new(
        TableNumber::new(1).expect("valid table"),
        InternalId(internal),
    )
}

pub fn body(n: u64, ts: u64) -> Vec<u8> {
    format!("document {n} written at {ts}").into_bytes()
}

/// One node's directories: the replica's and its store's.
pub struct NodeDirs {
    pub replica: PathBuf,
    pub store: PathBuf,
}

impl NodeDirs {
    pub fn new(root: &Path, id: u64) -> Self {
        Self {
            replica: root.join(format!("node-{id}/replica")),
            store: root.join(format!("node-{id}/store")),
        }
    }
}

/// Opens node `id`'s store and replica and makes it reachable on `router`.
pub async fn start_node(
    id: u64,
    dirs: &NodeDirs,
    router: &InProcessRouter,
    options: &ReplicaOptions,
) -> RangeReplica {
    let store = Arc::new(MvccStore::open_fjall(&dirs.store).expect("open store"));
    let replica = RangeReplica::open_with(id, &dirs.replica, store, router.network(id), options)
        .await
        .expect("open replica");
    router.register(id, replica.raft().clone());
    replica
}

/// Stops a replica and makes it unreachable; its directories can be reopened afterwards.
pub async fn stop_node(replica: RangeReplica, router: &InProcessRouter) {
    router.unregister(replica.node_id());
    replica.shutdown().await.expect("shutdown");
}

/// Writes acknowledged by the group: what every replica must still hold.
#[derive(Default)]
pub struct History {
    /// Document number -> (commit ts, body) of its acknowledged version.
    pub acknowledged: BTreeMap<u64, (u64, Vec<u8>)>,
    pub last_position: Option<LogPosition>,
    pub next_doc: u64,
    pub next_ts: u64,
}

impl History {
    /// A batch of `commits` commits, each writing `docs_per_commit` new documents at a new,
    /// increasing timestamp. Returns the batch and what it writes.
    pub fn next_batch(
        &mut self,
        commits: usize,
        docs_per_commit: usize,
    ) -> (Vec<Commit>, Vec<(u64, u64)>) {
        let mut batch = Vec::new();
        let mut written = Vec::new();
        for _ in 0..commits {
            self.next_ts += 1;
            let ts = self.next_ts;
            let mut documents = Vec::new();
            for _ in 0..docs_per_commit {
                self.next_doc += 1;
                let n = self.next_doc;
                documents.push(DocumentWrite {
                    id: doc_id(n),
                    body: Some(body(n, ts)),
                });
                written.push((n, ts));
            }
            batch.push(Commit {
                ts: Timestamp(ts),
                documents,
                index_entries: Vec::new(),
            });
        }
        (batch, written)
    }

    /// Replicates one fresh batch through `replicator` and records it if acknowledged.
    pub async fn write(
        &mut self,
        replicator: &dyn Replicator,
        commits: usize,
        docs_per_commit: usize,
    ) -> Result<LogPosition, ReplicateError> {
        let (batch, written) = self.next_batch(commits, docs_per_commit);
        let position = replicator.replicate(batch).await?;
        if let Some(last) = self.last_position {
            assert!(
                position.index > last.index,
                "positions go forward: {last:?} then {position:?}"
            );
        }
        self.last_position = Some(position);
        for (n, ts) in written {
            self.acknowledged.insert(n, (ts, body(n, ts)));
        }
        Ok(position)
    }

    /// Every acknowledged document is readable from `store`, at the newest timestamp and at
    /// its own commit timestamp, with the body it was written with.
    pub fn check_store(&self, store: &MvccStore, who: &str) {
        let newest = Timestamp(self.next_ts);
        for (n, (ts, body)) in &self.acknowledged {
            for at in [newest, Timestamp(*ts)] {
                let got = store
                    .get(&doc_id(*n), at)
                    .expect("read")
                    .unwrap_or_else(|| panic!("{who}: acknowledged document {n} missing at {at}"));
                assert_eq!(got.ts, Timestamp(*ts), "{who}: document {n} version");
                assert_eq!(&got.body, body, "{who}: document {n} body");
            }
        }
        // And nothing else: the table holds exactly the acknowledged documents.
        let table = TableNumber::new(1).expect("valid table");
        let mut found = 0usize;
        let mut cursor = None;
        loop {
            let page = store
                .scan(&ScanRequest {
                    table,
                    index: IndexNumber::DOCUMENTS,
                    range: KeyRange::all(),
                    ts: newest,
                    order: Order::Asc,
                    limit: 1000,
                    cursor,
                })
                .expect("scan");
            found += page.rows.len();
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(
            found,
            self.acknowledged.len(),
            "{who}: documents in the table"
        );
    }
}

/// The whole store as one checkpoint stream: equal streams mean equal data, applied state and
/// watermark.
pub fn store_image(store: &MvccStore) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .checkpoint(&KeySpan::all(), &mut out)
        .expect("checkpoint");
    out
}

/// Asserts two store images are equal, naming the first differing byte instead of dumping
/// megabytes.
pub fn assert_same_image(left: &[u8], right: &[u8], what: &str) {
    if left != right {
        let at = left.iter().zip(right).take_while(|(a, b)| a == b).count();
        let lo = at.saturating_sub(16);
        panic!(
            "{what}: store images differ at byte {at} (lengths {} and {}): {:?} vs {:?}",
            left.len(),
            right.len(),
            &left[lo..(at + 32).min(left.len())],
            &right[lo..(at + 32).min(right.len())]
        );
    }
}

/// Waits until `replica` applied at least `index`.
pub async fn wait_applied(replica: &RangeReplica, index: u64) {
    replica
        .raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "applied")
        .await
        .unwrap_or_else(|e| panic!("node {}: {e}", replica.node_id()));
}
