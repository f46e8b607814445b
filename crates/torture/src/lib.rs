//! Drives a real Chorus cluster on loopback: `chorus start` processes on free ports
//! ([`cluster::Cluster`]), faults on them by process id (SIGKILL, SIGSTOP/SIGCONT, restart),
//! and a small blocking HTTP client ([`http`]) for the client protocol and the cluster's admin
//! endpoints. The cluster tests (`crates/chorus/tests/cluster.rs`) build on it.
//!
//! It is also the correctness harness, `chorus-torture` (`docs/correctness.md`): clients run
//! workloads through the client protocol ([`workload`], recorded by [`record`]) while a
//! nemesis injects faults ([`nemesis`]); the recorded histories are checked by the `check`
//! crate's checkers ([`verdict`]); [`run`] puts it together.
//!
//! Every process it starts is stopped by id when its [`cluster::Cluster`] is dropped; nothing
//! is ever killed by name.

pub mod cluster;
pub mod http;
pub mod load;
pub mod nemesis;
pub mod record;
pub mod rng;
pub mod run;
pub mod verdict;
pub mod workload;
