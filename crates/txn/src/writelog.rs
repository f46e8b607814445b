//! The write log: recent commits' timestamps and written keys, in commit-timestamp order,
//! including commits proposed but not yet applied. The committer validates read sets against
//! it; subscriptions will read it too. Bounded by count and by age.

use std::collections::VecDeque;
use std::sync::Arc;

use store::Timestamp;

use crate::error::CommitError;
use crate::readset::{ReadSet, WrittenKeys};
use crate::tso::LOGICAL_PER_MS;

#[derive(Clone, Debug)]
pub struct WriteLogEntry {
    pub ts: Timestamp,
    pub keys: Arc<WrittenKeys>,
}

#[derive(Debug, Default)]
pub struct WriteLog {
    entries: VecDeque<WriteLogEntry>,
    /// Every commit at or below this may have been trimmed: a read at an older timestamp
    /// cannot be validated.
    trimmed_through: Timestamp,
}

impl WriteLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a commit. Commit timestamps are assigned in increasing order.
    pub fn append(&mut self, ts: Timestamp, keys: Arc<WrittenKeys>) {
        assert!(
            self.entries.back().is_none_or(|last| last.ts < ts) && ts > self.trimmed_through,
            "write log timestamps must increase: {ts}"
        );
        self.entries.push_back(WriteLogEntry { ts, keys });
    }

    /// Fails if a commit after `read_ts` wrote a key inside `reads`, or if commits after
    /// `read_ts` may have been trimmed.
    pub fn validate(&self, reads: &ReadSet, read_ts: Timestamp) -> Result<(), CommitError> {
        if read_ts < self.trimmed_through {
            return Err(CommitError::ReadTsTooOld {
                read_ts,
                oldest: self.trimmed_through,
            });
        }
        let first_after = self.entries.partition_point(|e| e.ts <= read_ts);
        for entry in self.entries.range(first_after..) {
            if let Some((index, key)) = entry.keys.first_intersection(reads) {
                return Err(CommitError::Conflict {
                    table: index.table.get(),
                    index: index.index.0,
                    key,
                    ts: entry.ts,
                });
            }
        }
        Ok(())
    }

    /// Drops entries beyond the size bound, and entries older than the age bound measured
    /// from `now`, but never an entry above `applied_through` (it is still in flight).
    pub fn trim(&mut self, applied_through: Timestamp, now: Timestamp) {
        let age = knobs::WRITE_LOG_MAX_AGE_MS * LOGICAL_PER_MS;
        while let Some(front) = self.entries.front() {
            let too_many = self.entries.len() > knobs::WRITE_LOG_MAX_COMMITS;
            let too_old = front.ts.0.saturating_add(age) < now.0;
            if front.ts > applied_through || !(too_many || too_old) {
                break;
            }
            self.trimmed_through = front.ts;
            self.entries.pop_front();
        }
    }

    /// Whether a commit in `(from, to]` wrote a key inside `reads`: `true` also when commits
    /// after `from` may have been trimmed (when in doubt, say it changed).
    pub fn changed(&self, reads: &ReadSet, from: Timestamp, to: Timestamp) -> bool {
        if from < self.trimmed_through {
            return true;
        }
        self.after(from)
            .take_while(|e| e.ts <= to)
            .any(|e| e.keys.first_intersection(reads).is_some())
    }

    /// Commits after `ts`, oldest first.
    pub fn after(&self, ts: Timestamp) -> impl Iterator<Item = &WriteLogEntry> {
        let first = self.entries.partition_point(|e| e.ts <= ts);
        self.entries.range(first..)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use store::IndexNumber;
    use value::{DocumentId, InternalId, TableNumber};

    use super::*;
    use crate::readset::IndexRef;

    fn id(n: u8) -> DocumentId {
        DocumentId::new(TableNumber::new(10001).expect("valid"), InternalId([n; 16]))
    }

    fn wrote(n: u8) -> Arc<WrittenKeys> {
        let mut keys = WrittenKeys::default();
        keys.insert(IndexRef::documents(id(n).table), id(n).internal.0.to_vec());
        Arc::new(keys)
    }

    fn read(n: u8) -> ReadSet {
        let mut reads = ReadSet::default();
        reads.record_document(&id(n));
        reads
    }

    #[test]
    fn conflicts_only_after_the_read_timestamp() {
        let mut log = WriteLog::new();
        log.append(Timestamp(10), wrote(1));
        log.append(Timestamp(20), wrote(2));
        assert!(log.validate(&read(1), Timestamp(10)).is_ok());
        assert!(matches!(
            log.validate(&read(1), Timestamp(9)),
            Err(CommitError::Conflict {
                ts: Timestamp(10),
                ..
            })
        ));
        assert!(log.validate(&read(3), Timestamp(0)).is_ok());
        // An index range read conflicts with a key written inside it only.
        let mut range_read = ReadSet::default();
        range_read.record(
            IndexRef {
                table: id(1).table,
                index: IndexNumber::DOCUMENTS,
            },
            store::KeyRange {
                start: vec![2],
                end: Some(vec![3]),
            },
        );
        assert!(matches!(
            log.validate(&range_read, Timestamp(10)),
            Err(CommitError::Conflict { .. })
        ));
        assert!(log.validate(&range_read, Timestamp(20)).is_ok());
    }

    #[test]
    fn reads_older_than_the_trimmed_window_are_retryable_errors() {
        let mut log = WriteLog::new();
        let age = knobs::WRITE_LOG_MAX_AGE_MS * LOGICAL_PER_MS;
        log.append(Timestamp(10), wrote(1));
        log.append(Timestamp(20), wrote(2));
        // Nothing is trimmed while it is still in flight (above applied_through).
        log.trim(Timestamp(5), Timestamp(20 + age + 1));
        assert_eq!(log.len(), 2);
        log.trim(Timestamp(20), Timestamp(15 + age));
        assert_eq!(log.len(), 1);
        let err = log.validate(&read(3), Timestamp(9)).expect_err("too old");
        assert!(err.is_retryable());
        assert!(matches!(
            err,
            CommitError::ReadTsTooOld {
                oldest: Timestamp(10),
                ..
            }
        ));
        assert!(log.validate(&read(3), Timestamp(10)).is_ok());
    }
}
