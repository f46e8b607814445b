//! What a transaction read (its read set) and what a commit wrote (its written keys), both in
//! the store's terms: entry keys of indexes, so a conflict check is a range intersection.

use std::collections::{BTreeMap, BTreeSet};

use store::{IndexNumber, KeyRange, layout::prefix_successor};
use value::{DocumentId, TableNumber};

/// One index of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexRef {
    pub table: TableNumber,
    pub index: IndexNumber,
}

impl IndexRef {
    pub fn documents(table: TableNumber) -> Self {
        Self {
            table,
            index: IndexNumber::DOCUMENTS,
        }
    }
}

/// The index ranges a transaction read, including ranges that were empty (so an insert into
/// them conflicts) and single documents (a range of one entry of the documents index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    ranges: Vec<(IndexRef, KeyRange)>,
}

impl ReadSet {
    pub fn record(&mut self, index: IndexRef, range: KeyRange) {
        self.ranges.push((index, range));
    }

    pub fn record_document(&mut self, id: &DocumentId) {
        self.record(IndexRef::documents(id.table), document_range(id));
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(IndexRef, KeyRange)> {
        self.ranges.iter()
    }
}

/// The range of the documents index that holds exactly document `id`.
pub fn document_range(id: &DocumentId) -> KeyRange {
    KeyRange {
        start: id.internal.0.to_vec(),
        end: prefix_successor(&id.internal.0),
    }
}

/// The entry keys one commit wrote, per index: the document itself (documents index) and
/// every index entry it added or removed (old and new positions both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrittenKeys {
    keys: BTreeMap<IndexRef, BTreeSet<Vec<u8>>>,
}

impl WrittenKeys {
    pub fn insert(&mut self, index: IndexRef, entry: Vec<u8>) {
        self.keys.entry(index).or_default().insert(entry);
    }

    /// The first written key inside any range of `reads`, if one is.
    pub fn first_intersection(&self, reads: &ReadSet) -> Option<(IndexRef, Vec<u8>)> {
        for (index, range) in reads.iter() {
            let Some(keys) = self.keys.get(index) else {
                continue;
            };
            let mut hits = keys.range(range.start.clone()..);
            if let Some(hit) = hits.next()
                && range.end.as_ref().is_none_or(|end| hit < end)
            {
                return Some((*index, hit.clone()));
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IndexRef, &Vec<u8>)> {
        self.keys
            .iter()
            .flat_map(|(index, keys)| keys.iter().map(move |k| (index, k)))
    }
}
