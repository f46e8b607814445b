//! Drives a real Chorus cluster on loopback: `chorus start` processes on free ports
//! ([`cluster::Cluster`]), faults on them by process id (SIGKILL, SIGSTOP/SIGCONT, restart),
//! and a small blocking HTTP client ([`http`]) for the client protocol and the cluster's admin
//! endpoints. The cluster tests (`crates/chorus/tests/cluster.rs`) and the correctness harness
//! build on it.
//!
//! Every process it starts is stopped by id when its [`cluster::Cluster`] is dropped; nothing
//! is ever killed by name.

pub mod cluster;
pub mod http;
pub mod load;
