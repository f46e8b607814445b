//! What all sync sockets share: their limits and the memory of mutations already run, so a
//! mutation re-sent after a reconnect (same sessionId and requestId) is not run twice.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::RandomState;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::{ApiError, FunctionSuccess, MutationRun, Ts};

/// The limits and intervals of sync sessions. `Default` takes them from `knobs`; tests shorten
/// the intervals.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Outbound silence after which `{"type":"Ping"}` is sent.
    pub heartbeat_interval: Duration,
    /// Interval of WebSocket-level Ping frames.
    pub ws_ping_interval: Duration,
    /// Inbound silence after which the socket is closed.
    pub client_idle_timeout: Duration,
    /// Most queries per session.
    pub max_queries: usize,
    /// Most mutations queued plus actions running per session.
    pub max_inflight_requests: usize,
    /// Queries run concurrently for one transition.
    pub query_concurrency: usize,
    /// Largest client message, in bytes.
    pub max_message_bytes: usize,
    /// Most server messages waiting to be written.
    pub outbound_max_messages: usize,
    /// Most bytes of server messages waiting to be written.
    pub outbound_max_bytes: usize,
    /// Most remembered mutation results.
    pub mutation_memory_max_entries: usize,
    /// Most bytes of remembered mutation results.
    pub mutation_memory_max_bytes: usize,
    /// How long a closing socket waits for the client's half of the close handshake.
    pub close_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            heartbeat_interval: Duration::from_millis(knobs::SYNC_HEARTBEAT_INTERVAL_MS),
            ws_ping_interval: Duration::from_millis(knobs::SYNC_WS_PING_INTERVAL_MS),
            client_idle_timeout: Duration::from_millis(knobs::SYNC_CLIENT_IDLE_TIMEOUT_MS),
            max_queries: knobs::SYNC_MAX_QUERIES,
            max_inflight_requests: knobs::SYNC_MAX_INFLIGHT_REQUESTS,
            query_concurrency: knobs::SYNC_QUERY_CONCURRENCY,
            max_message_bytes: knobs::SYNC_MESSAGE_MAX_BYTES,
            outbound_max_messages: knobs::SYNC_OUTBOUND_MAX_MESSAGES,
            outbound_max_bytes: knobs::SYNC_OUTBOUND_MAX_BYTES,
            mutation_memory_max_entries: knobs::SYNC_MUTATION_MEMORY_MAX_ENTRIES,
            mutation_memory_max_bytes: knobs::SYNC_MUTATION_MEMORY_MAX_BYTES,
            close_timeout: Duration::from_millis(knobs::SYNC_CLOSE_TIMEOUT_MS),
        }
    }
}

/// State shared by all sockets: mutation results remembered by (sessionId, requestId) so a
/// mutation re-sent after a reconnect is answered from memory, not run twice. Bounded by
/// [`SyncConfig::mutation_memory_max_entries`] and [`SyncConfig::mutation_memory_max_bytes`];
/// the oldest results are forgotten first.
#[derive(Default)]
pub struct SyncShared {
    config: SyncConfig,
    mutations: Mutex<MutationMemory>,
    /// Keys for the digests sessions keep of sent query results (random per process, so a
    /// client cannot precompute colliding results).
    pub(crate) digest_keys: RandomState,
}

impl SyncShared {
    pub fn with_config(config: SyncConfig) -> Self {
        SyncShared {
            config,
            mutations: Mutex::default(),
            digest_keys: RandomState::new(),
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    fn memory(&self) -> MutexGuard<'_, MutationMemory> {
        // The memory is consistent after every statement, so a panic elsewhere while it was
        // held leaves nothing half-done.
        self.mutations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `key` for a run, or says how to answer it without running: from memory, or by
    /// waiting for the run already under way (the same request sent again on another socket).
    pub(crate) fn begin_mutation(&self, key: &MutationKey) -> Begin {
        let mut memory = self.memory();
        match memory.slots.entry(key.clone()) {
            Entry::Occupied(slot) => match slot.get() {
                Slot::Done(done) => Begin::Remembered(done.clone()),
                Slot::Running(receiver) => Begin::Wait(receiver.clone()),
            },
            Entry::Vacant(slot) => {
                let (sender, receiver) = watch::channel(None);
                slot.insert(Slot::Running(receiver));
                Begin::Run(sender)
            }
        }
    }

    /// Ends the run claimed by [`SyncShared::begin_mutation`]: a committed success is
    /// remembered, anything else forgotten (running it again is what the client asks for).
    pub(crate) fn finish_mutation(
        &self,
        key: &MutationKey,
        outcome: Option<&Result<MutationRun, ApiError>>,
    ) {
        let remembered = match outcome {
            Some(Ok(MutationRun {
                result: Ok(success),
                commit_ts: Some(commit_ts),
            })) => Some(Arc::new(Remembered {
                success: success.clone(),
                commit_ts: *commit_ts,
            })),
            _ => None,
        };
        let max_entries = self.config.mutation_memory_max_entries;
        let max_bytes = self.config.mutation_memory_max_bytes;
        self.memory()
            .finish(key, remembered, max_entries, max_bytes);
    }

    #[cfg(test)]
    fn remembered_count(&self) -> usize {
        self.memory().order.len()
    }
}

/// (sessionId, requestId).
pub(crate) type MutationKey = (String, u32);

/// The outcome of a mutation run, shared with anyone waiting for it (`None` until known).
pub(crate) type SharedOutcome = Option<Result<MutationRun, ApiError>>;

/// A successful mutation as it was answered the first time.
#[derive(Debug)]
pub(crate) struct Remembered {
    pub success: FunctionSuccess,
    pub commit_ts: Ts,
}

impl Remembered {
    fn size_bytes(&self, key: &MutationKey) -> usize {
        key.0.len()
            + self.success.value.size_bytes()
            + self
                .success
                .log_lines
                .iter()
                .map(String::len)
                .sum::<usize>()
    }
}

pub(crate) enum Begin {
    Remembered(Arc<Remembered>),
    Wait(watch::Receiver<SharedOutcome>),
    Run(watch::Sender<SharedOutcome>),
}

enum Slot {
    Running(watch::Receiver<SharedOutcome>),
    Done(Arc<Remembered>),
}

#[derive(Default)]
struct MutationMemory {
    slots: HashMap<MutationKey, Slot>,
    /// The `Done` slots, oldest first, with their sizes. Invariant: exactly the keys of the
    /// `Done` slots, each once, and `bytes` is the sum of their sizes.
    order: VecDeque<(MutationKey, usize)>,
    bytes: usize,
}

impl MutationMemory {
    fn finish(
        &mut self,
        key: &MutationKey,
        remembered: Option<Arc<Remembered>>,
        max_entries: usize,
        max_bytes: usize,
    ) {
        if !matches!(self.slots.get(key), Some(Slot::Running(_))) {
            return;
        }
        let Some(remembered) = remembered else {
            self.slots.remove(key);
            return;
        };
        let size = remembered.size_bytes(key);
        if size > max_bytes || max_entries == 0 {
            self.slots.remove(key);
            return;
        }
        self.slots.insert(key.clone(), Slot::Done(remembered));
        self.order.push_back((key.clone(), size));
        self.bytes += size;
        while self.order.len() > max_entries || self.bytes > max_bytes {
            let Some((old, old_size)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= old_size;
            let removed = self.slots.remove(&old);
            assert!(
                matches!(removed, Some(Slot::Done(_))),
                "mutation memory order lists a key that is not done"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use value::Value;

    use super::*;

    fn committed(n: f64) -> Result<MutationRun, ApiError> {
        Ok(MutationRun {
            result: Ok(FunctionSuccess {
                value: Value::Float64(n),
                log_lines: vec![],
            }),
            commit_ts: Some(7),
        })
    }

    fn key(n: u32) -> MutationKey {
        ("session".to_string(), n)
    }

    fn run(shared: &SyncShared, n: u32) {
        assert!(matches!(shared.begin_mutation(&key(n)), Begin::Run(_)));
        shared.finish_mutation(&key(n), Some(&committed(f64::from(n))));
    }

    #[test]
    fn remembers_successes_and_forgets_the_oldest_beyond_the_limit() {
        let shared = SyncShared::with_config(SyncConfig {
            mutation_memory_max_entries: 2,
            ..SyncConfig::default()
        });
        run(&shared, 1);
        match shared.begin_mutation(&key(1)) {
            Begin::Remembered(r) => {
                assert_eq!(r.commit_ts, 7);
                assert_eq!(r.success.value, Value::Float64(1.0));
            }
            _ => panic!("a committed mutation must be remembered"),
        }
        run(&shared, 2);
        run(&shared, 3);
        assert_eq!(shared.remembered_count(), 2);
        assert!(matches!(shared.begin_mutation(&key(1)), Begin::Run(_)));
        assert!(matches!(
            shared.begin_mutation(&key(3)),
            Begin::Remembered(_)
        ));
    }

    #[test]
    fn byte_limit_bounds_the_memory() {
        let shared = SyncShared::with_config(SyncConfig {
            mutation_memory_max_bytes: 40,
            ..SyncConfig::default()
        });
        // "session" (7) + a float (9) = 16 bytes each: two fit, three do not.
        run(&shared, 1);
        run(&shared, 2);
        run(&shared, 3);
        assert_eq!(shared.remembered_count(), 2);
    }

    #[test]
    fn failures_are_forgotten_and_a_running_mutation_is_waited_for() {
        let shared = SyncShared::default();
        let Begin::Run(sender) = shared.begin_mutation(&key(1)) else {
            panic!("first claim must run");
        };
        let Begin::Wait(receiver) = shared.begin_mutation(&key(1)) else {
            panic!("a second claim while running must wait");
        };
        let failed = Ok(MutationRun {
            result: Err(crate::FunctionFailure {
                message: "no".into(),
                data: None,
                log_lines: vec![],
            }),
            commit_ts: None,
        });
        shared.finish_mutation(&key(1), Some(&failed));
        let _ = sender.send(Some(failed.clone()));
        assert_eq!(
            receiver.borrow().as_ref().map(|r| r.is_ok()),
            Some(true),
            "the waiter sees the outcome"
        );
        assert!(matches!(shared.begin_mutation(&key(1)), Begin::Run(_)));
        assert_eq!(shared.remembered_count(), 0);
    }
}
