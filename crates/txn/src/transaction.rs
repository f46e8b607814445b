//! A transaction: reads at one snapshot timestamp, buffered writes, and the read set and write
//! set the committer validates and commits.
//!
//! Invariants:
//! - every read goes through the read set — single documents as one-entry ranges of the
//!   documents index, index scans as the exact range they covered (empty ranges included, and
//!   up to the last row returned when a page stopped at its limit) — so any later commit that
//!   changes what the transaction saw, or would have seen, intersects it;
//! - a transaction reads its own writes: `get` and `scan` overlay buffered writes on the
//!   snapshot, in index order;
//! - every write of an existing document first reads it, so two transactions writing one
//!   document conflict even if neither read it for any other reason.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use store::{
    Commit, DocumentWrite, IndexNumber, IndexWrite, KeyRange, MvccStore, Order, ScanRequest,
    Timestamp,
};
use value::{DocumentId, InternalId, TableNumber, Value};

use crate::catalog::{CREATION_TIME, Catalog, ID, IndexState, TableDef};
use crate::error::TxnError;
use crate::readset::{IndexRef, ReadSet, WrittenKeys};
use crate::system::{self, CatalogCache};
use crate::tso::{Clock, LOGICAL_PER_MS};

/// A document's fields, system fields (`_id`, `_creationTime`) included.
pub type Object = BTreeMap<String, Value>;

/// Field updates for [`Transaction::patch`]: `Some(v)` sets a field, `None` removes it.
pub type Patch = BTreeMap<String, Option<Value>>;

/// One page of an index range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexScan {
    pub table: TableNumber,
    pub index: IndexNumber,
    pub range: KeyRange,
    pub order: Order,
    pub limit: usize,
    /// Resume after this entry key (the cursor of the previous page).
    pub cursor: Option<Vec<u8>>,
}

/// A page of documents from an index, in index order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanResult {
    /// Entry key and document of each row.
    pub rows: Vec<(Vec<u8>, Object)>,
    /// The last entry key when the page is full (there may be more); `None` at the end.
    pub cursor: Option<Vec<u8>>,
}

/// Document ids: 14 random bytes then the day number (as Convex makes them), from a seeded
/// generator so a retried attempt can be made deterministic.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from the process's random hasher keys (OS randomness).
    pub fn random() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5EED);
        Self::seeded(hasher.finish())
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_id(&mut self, table: TableNumber, ts: Timestamp) -> DocumentId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..14].copy_from_slice(&self.next_u64().to_be_bytes()[..6]);
        let day = (ts.0 / LOGICAL_PER_MS / 86_400_000).min(u64::from(u16::MAX)) as u16;
        bytes[14..].copy_from_slice(&day.to_be_bytes());
        DocumentId::new(table, InternalId(bytes))
    }
}

/// Hands out `_creationTime`s: milliseconds since the epoch, never below the wall clock or the
/// reading transaction's snapshot, and strictly increasing across every transaction that
/// shares this clock (one per committer). Concurrent transactions often share one snapshot
/// timestamp, so deriving creation times from it alone would give their documents equal
/// creation times and order them by random id.
pub struct CreationClock {
    clock: Arc<dyn Clock>,
    last_bits: AtomicU64,
}

impl CreationClock {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            last_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The next creation time, at least `floor_ms`.
    pub fn next(&self, floor_ms: f64) -> f64 {
        let floor = floor_ms.max(self.clock.now_ms() as f64);
        let mut last_bits = self.last_bits.load(Ordering::SeqCst);
        loop {
            let last = f64::from_bits(last_bits);
            let candidate = if floor > last { floor } else { last.next_up() };
            match self.last_bits.compare_exchange(
                last_bits,
                candidate.to_bits(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return candidate,
                Err(actual) => last_bits = actual,
            }
        }
    }
}

#[derive(Clone, Debug)]
struct PendingWrite {
    /// The document as of the read timestamp (`None`: it did not exist, e.g. an insert).
    old: Option<Object>,
    /// The document after this transaction (`None`: deleted).
    new: Option<Object>,
}

/// A transaction at a snapshot of one store. See the module docs.
pub struct Transaction {
    read_ts: Timestamp,
    store: Arc<MvccStore>,
    catalog: Arc<Catalog>,
    reads: ReadSet,
    documents_read: usize,
    writes: BTreeMap<DocumentId, PendingWrite>,
    bytes_written: usize,
    ids: IdGenerator,
    creation: Arc<CreationClock>,
    /// Set when the catalog is stored in the database (`crate::system`): the cache it was
    /// loaded through and the version read at the snapshot.
    stored: Option<(Arc<CatalogCache>, u64)>,
    /// Index entries to write for documents that existed before their index (backfill).
    backfills: BTreeMap<(DocumentId, IndexNumber), ()>,
}

/// The buffered writes of a [`Transaction`] at one moment, to undo what a nested function
/// (a sub-transaction) wrote when it fails: see [`Transaction::savepoint`].
#[derive(Clone, Debug)]
pub struct Savepoint {
    writes: BTreeMap<DocumentId, PendingWrite>,
    bytes_written: usize,
    catalog: Arc<Catalog>,
    backfills: BTreeMap<(DocumentId, IndexNumber), ()>,
}

/// What a finished transaction asks the committer to commit.
#[derive(Clone, Debug, Default)]
pub struct FinalTransaction {
    pub read_ts: Timestamp,
    pub reads: ReadSet,
    pub documents: Vec<DocumentWrite>,
    pub index_entries: Vec<IndexWrite>,
    /// Every entry key the writes touch, for validating later transactions.
    pub written: WrittenKeys,
}

impl FinalTransaction {
    pub fn is_read_only(&self) -> bool {
        self.documents.is_empty() && self.index_entries.is_empty()
    }

    /// The store commit for these writes at commit timestamp `ts`.
    pub fn to_commit(&self, ts: Timestamp) -> Commit {
        Commit {
            ts,
            documents: self.documents.clone(),
            index_entries: self.index_entries.clone(),
        }
    }
}

fn decode(id: &DocumentId, body: &[u8]) -> Result<Object, TxnError> {
    value::key::decode_document(body).map_err(|e| TxnError::Corrupt(format!("document {id}: {e}")))
}

fn encode(doc: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    value::key::encode_document(doc, &mut out);
    out
}

/// The smallest byte string after `key`: turns "after key" into an inclusive start.
fn just_after(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.extend_from_slice(key);
    out.push(0);
    out
}

fn reject_system_fields(fields: &Object, current: Option<&Object>) -> Result<(), TxnError> {
    for (name, value) in fields {
        if name.starts_with('_') {
            // Passing a system field back unchanged is allowed (Convex allows it in replace).
            if current.and_then(|c| c.get(name)) != Some(value) {
                return Err(TxnError::SystemField(name.clone()));
            }
        }
    }
    Ok(())
}

impl Transaction {
    pub fn new(
        store: Arc<MvccStore>,
        catalog: Arc<Catalog>,
        read_ts: Timestamp,
        ids: IdGenerator,
        creation: Arc<CreationClock>,
    ) -> Self {
        Self {
            read_ts,
            store,
            catalog,
            reads: ReadSet::default(),
            documents_read: 0,
            writes: BTreeMap::new(),
            bytes_written: 0,
            ids,
            creation,
            stored: None,
            backfills: BTreeMap::new(),
        }
    }

    /// Switches this (new) transaction to the catalog stored in the database: reads the
    /// catalog head at the snapshot (recorded, so a concurrent catalog change conflicts with
    /// this transaction and invalidates what it read) and takes that version's catalog from
    /// `cache`, decoding the body on a miss.
    pub fn load_catalog(&mut self, cache: Arc<CatalogCache>) -> Result<(), TxnError> {
        self.catalog = Arc::new(system::empty_stored_catalog());
        let head = self.get(&system::catalog_head_id())?;
        let version = system::decode_head(head.as_ref()).map_err(TxnError::Catalog)?;
        let catalog = match cache.get(version) {
            Some(catalog) => catalog,
            None => {
                let body = if version == 0 {
                    None
                } else {
                    self.get(&system::catalog_body_id())?
                };
                let catalog = Arc::new(
                    system::decode_body(body.as_ref(), version, cache.compiler())
                        .map_err(TxnError::Catalog)?,
                );
                cache.insert(catalog.clone());
                catalog
            }
        };
        self.catalog = catalog;
        self.stored = Some((cache, version));
        Ok(())
    }

    /// The catalog this transaction sees (its own catalog changes included).
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Creates the user table `name` (Convex does so on a table's first insert): it commits
    /// or aborts with this transaction. Only on a database with a stored catalog.
    pub fn create_table(&mut self, name: &str) -> Result<TableNumber, TxnError> {
        if self.stored.is_none() {
            return Err(TxnError::Catalog(format!("Table {name} does not exist")));
        }
        if let Some(existing) = self.catalog.table_named(name) {
            return Ok(existing.number);
        }
        system::check_table_name(name).map_err(TxnError::Catalog)?;
        let mut next = (*self.catalog).clone();
        let number = system::next_table_number(&next).map_err(TxnError::Catalog)?;
        next.insert(TableDef::new(number, name));
        self.set_catalog(next)?;
        Ok(number)
    }

    /// Replaces the stored catalog with `next` (its version becomes the one read + 1) as part
    /// of this transaction. Only on a database with a stored catalog.
    pub fn set_catalog(&mut self, mut next: Catalog) -> Result<(), TxnError> {
        let Some((_, base)) = &self.stored else {
            return Err(TxnError::Catalog(
                "this database's catalog is fixed and cannot change".into(),
            ));
        };
        next.version = base + 1;
        next.next_table = next
            .tables()
            .map(|t| t.number.get() + 1)
            .max()
            .unwrap_or(0)
            .max(next.next_table)
            .max(self.catalog.next_table);
        next.next_index = next.next_index.max(self.catalog.next_index);
        for table in system::system_tables() {
            next.insert(table);
        }
        self.put_system(system::catalog_head_id(), system::encode_head(&next))?;
        self.put_system(system::catalog_body_id(), system::encode_body(&next))?;
        self.catalog = Arc::new(next);
        Ok(())
    }

    /// Writes a document of a system table at a fixed id (inserting or replacing it). For the
    /// layers that keep state in system tables (the catalog, deployed modules).
    pub fn put_system(&mut self, id: DocumentId, fields: Object) -> Result<(), TxnError> {
        let table = self.table(id.table)?;
        if !table.name.starts_with('_') {
            return Err(TxnError::Catalog(format!(
                "put_system is for system tables, not {}",
                table.name
            )));
        }
        let current = self.get(&id)?;
        let mut doc = fields;
        doc.insert(ID.into(), Value::String(id.encode()));
        let creation = match current.as_ref().and_then(|c| c.get(CREATION_TIME)) {
            Some(v) => v.clone(),
            None => Value::Float64(
                self.creation
                    .next(self.read_ts.0 as f64 / LOGICAL_PER_MS as f64),
            ),
        };
        doc.insert(CREATION_TIME.into(), creation);
        value::validate_document(&doc)?;
        self.set(id, current, Some(doc))
    }

    /// Deletes a document of a system table (if it exists).
    pub fn delete_system(&mut self, id: DocumentId) -> Result<(), TxnError> {
        if self.get(&id)?.is_some() {
            self.delete(&id)?;
        }
        Ok(())
    }

    /// Writes the entry of document `id` in `index` (a backfilling index of its table), as
    /// the document is at this transaction's snapshot. The document is read (so a concurrent
    /// write of it conflicts); returns whether it exists.
    pub fn backfill_index_entry(
        &mut self,
        id: &DocumentId,
        index: IndexNumber,
    ) -> Result<bool, TxnError> {
        let table = self.table(id.table)?;
        match table.index(index) {
            Some(def) if def.state == IndexState::Backfilling => {}
            _ => {
                return Err(TxnError::UnknownIndex {
                    table: id.table,
                    index: index.0,
                });
            }
        }
        if self.get(id)?.is_none() {
            return Ok(false);
        }
        self.backfills.insert((*id, index), ());
        Ok(true)
    }

    pub fn read_ts(&self) -> Timestamp {
        self.read_ts
    }

    pub fn read_set(&self) -> &ReadSet {
        &self.reads
    }

    fn table(&self, number: TableNumber) -> Result<&TableDef, TxnError> {
        self.catalog
            .table(number)
            .ok_or(TxnError::UnknownTable(number))
    }

    fn note_range(&mut self) -> Result<(), TxnError> {
        if self.reads.len() >= knobs::TRANSACTION_MAX_READ_RANGES {
            return Err(TxnError::Limit(format!(
                "more than {} index ranges read",
                knobs::TRANSACTION_MAX_READ_RANGES
            )));
        }
        Ok(())
    }

    fn note_documents_read(&mut self, n: usize) -> Result<(), TxnError> {
        self.documents_read += n;
        if self.documents_read > knobs::TRANSACTION_MAX_READ_DOCUMENTS {
            return Err(TxnError::Limit(format!(
                "more than {} documents read",
                knobs::TRANSACTION_MAX_READ_DOCUMENTS
            )));
        }
        Ok(())
    }

    /// The document as this transaction sees it (its own writes included).
    pub fn get(&mut self, id: &DocumentId) -> Result<Option<Object>, TxnError> {
        if let Some(write) = self.writes.get(id) {
            return Ok(write.new.clone());
        }
        self.note_range()?;
        self.reads.record_document(id);
        match self.store.get(id, self.read_ts)? {
            Some(version) => {
                self.note_documents_read(1)?;
                decode(id, &version.body).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Inserts a new document into `table`; returns its id.
    pub fn insert(&mut self, table: TableNumber, fields: Object) -> Result<DocumentId, TxnError> {
        self.table(table)?;
        reject_system_fields(&fields, None)?;
        let id = self.ids.next_id(table, self.read_ts);
        let creation = self
            .creation
            .next(self.read_ts.0 as f64 / LOGICAL_PER_MS as f64);
        let mut doc = fields;
        doc.insert(ID.into(), Value::String(id.encode()));
        doc.insert(CREATION_TIME.into(), Value::Float64(creation));
        value::validate_document(&doc)?;
        self.check_schema(table, &doc)?;
        assert!(
            !self.writes.contains_key(&id),
            "generated a duplicate id {id}"
        );
        self.set(id, None, Some(doc))?;
        Ok(id)
    }

    /// Replaces every user field of an existing document.
    pub fn replace(&mut self, id: &DocumentId, fields: Object) -> Result<(), TxnError> {
        let current = self.get(id)?.ok_or(TxnError::NotFound(*id))?;
        reject_system_fields(&fields, Some(&current))?;
        let mut doc = fields;
        for system in [ID, CREATION_TIME] {
            if let Some(v) = current.get(system) {
                doc.insert(system.into(), v.clone());
            }
        }
        value::validate_document(&doc)?;
        self.check_schema(id.table, &doc)?;
        self.set(*id, Some(current), Some(doc))
    }

    /// Sets or removes top-level fields of an existing document (Convex's shallow merge).
    pub fn patch(&mut self, id: &DocumentId, patch: Patch) -> Result<(), TxnError> {
        let current = self.get(id)?.ok_or(TxnError::NotFound(*id))?;
        let mut doc = current.clone();
        for (name, value) in patch {
            if name.starts_with('_') {
                if value.as_ref() != current.get(&name) {
                    return Err(TxnError::SystemField(name));
                }
                continue;
            }
            match value {
                Some(v) => doc.insert(name, v),
                None => doc.remove(&name),
            };
        }
        value::validate_document(&doc)?;
        self.check_schema(id.table, &doc)?;
        self.set(*id, Some(current), Some(doc))
    }

    /// Deletes an existing document.
    pub fn delete(&mut self, id: &DocumentId) -> Result<(), TxnError> {
        let current = self.get(id)?.ok_or(TxnError::NotFound(*id))?;
        self.set(*id, Some(current), None)
    }

    /// The writes buffered so far, to return to with [`Self::rollback_to`].
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            writes: self.writes.clone(),
            bytes_written: self.bytes_written,
            catalog: self.catalog.clone(),
            backfills: self.backfills.clone(),
        }
    }

    /// Undoes every write made since `savepoint` was taken (of this transaction). Reads stay
    /// recorded: the read set only grows, so a rolled-back sub-transaction's reads still
    /// conflict with later commits, as they should (the caller saw their effects).
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        self.writes = savepoint.writes;
        self.bytes_written = savepoint.bytes_written;
        self.catalog = savepoint.catalog;
        self.backfills = savepoint.backfills;
    }

    /// Checks `doc` against its table's schema, if one with validation is deployed.
    fn check_schema(&self, table: TableNumber, doc: &Object) -> Result<(), TxnError> {
        let def = self.table(table)?;
        let Some(schema) = &def.schema else {
            return Ok(());
        };
        let mut fields = doc.clone();
        fields.remove(ID);
        fields.remove(CREATION_TIME);
        schema
            .0
            .check(&fields, &self.catalog)
            .map_err(|message| TxnError::SchemaViolation {
                table: def.name.clone(),
                message,
            })
    }

    /// Records a write. `current` is what `get` returned: for a first write of this id it is
    /// the version at the read timestamp.
    fn set(
        &mut self,
        id: DocumentId,
        current: Option<Object>,
        new: Option<Object>,
    ) -> Result<(), TxnError> {
        self.bytes_written += new
            .as_ref()
            .map_or(0, |doc| Value::Object(doc.clone()).size_bytes());
        if self.bytes_written > knobs::TRANSACTION_MAX_WRITE_BYTES {
            return Err(TxnError::Limit(format!(
                "more than {} bytes written",
                knobs::TRANSACTION_MAX_WRITE_BYTES
            )));
        }
        match self.writes.get_mut(&id) {
            Some(write) => write.new = new,
            None => {
                if self.writes.len() >= knobs::TRANSACTION_MAX_WRITE_DOCUMENTS {
                    return Err(TxnError::Limit(format!(
                        "more than {} documents written",
                        knobs::TRANSACTION_MAX_WRITE_DOCUMENTS
                    )));
                }
                self.writes.insert(id, PendingWrite { old: current, new });
            }
        }
        Ok(())
    }

    /// The entry key of `doc` (with id `id`) in `index` of `table`.
    fn entry_key(
        table: &TableDef,
        index: IndexNumber,
        id: &DocumentId,
        doc: &Object,
    ) -> Result<Vec<u8>, TxnError> {
        if index.is_documents() {
            return Ok(id.internal.0.to_vec());
        }
        let def = table.index(index).ok_or(TxnError::UnknownIndex {
            table: table.number,
            index: index.0,
        })?;
        let key = def.key_of(doc)?;
        Ok(store::layout::index_entry(key.as_bytes(), &id.internal))
    }

    /// Reads one page of an index range, this transaction's writes included.
    pub fn scan(&mut self, req: &IndexScan) -> Result<ScanResult, TxnError> {
        let table = self.table(req.table)?.clone();
        if !req.index.is_documents() && table.index(req.index).is_none() {
            return Err(TxnError::UnknownIndex {
                table: req.table,
                index: req.index.0,
            });
        }
        self.note_range()?;
        let limit = req.limit.clamp(1, knobs::SCAN_MAX_ROWS);
        let after_cursor = |entry: &[u8]| match (&req.cursor, req.order) {
            (None, _) => true,
            (Some(c), Order::Asc) => entry > c.as_slice(),
            (Some(c), Order::Desc) => entry < c.as_slice(),
        };

        // This transaction's writes to the table: their documents hide the snapshot's
        // versions, and their new versions join the scan at their new positions.
        let mut written: BTreeSet<InternalId> = BTreeSet::new();
        let mut overlay: Vec<(Vec<u8>, Object)> = Vec::new();
        for (id, write) in &self.writes {
            if id.table != req.table {
                continue;
            }
            written.insert(id.internal);
            if let Some(doc) = &write.new {
                let entry = Self::entry_key(&table, req.index, id, doc)?;
                if req.range.contains(&entry) && after_cursor(&entry) {
                    overlay.push((entry, doc.clone()));
                }
            }
        }
        overlay.sort_by(|a, b| a.0.cmp(&b.0));
        if req.order == Order::Desc {
            overlay.reverse();
        }
        let mut overlay: VecDeque<(Vec<u8>, Object)> = overlay.into();

        let mut rows: Vec<(Vec<u8>, Object)> = Vec::new();
        let mut buffered: VecDeque<store::ScanRow> = VecDeque::new();
        let mut store_cursor = req.cursor.clone();
        let mut store_done = false;
        let mut from_store = 0usize;
        while rows.len() < limit {
            if buffered.is_empty() && !store_done {
                let page = self.store.scan(&ScanRequest {
                    table: req.table,
                    index: req.index,
                    range: req.range.clone(),
                    ts: self.read_ts,
                    order: req.order,
                    limit: (limit - rows.len() + written.len()).min(knobs::SCAN_MAX_ROWS),
                    cursor: store_cursor.take(),
                })?;
                store_done = page.cursor.is_none();
                store_cursor = page.cursor;
                buffered.extend(
                    page.rows
                        .into_iter()
                        .filter(|row| !written.contains(&row.id.internal)),
                );
                continue;
            }
            let take_store = match (buffered.front(), overlay.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(s), Some(o)) => match req.order {
                    Order::Asc => s.entry < o.0,
                    Order::Desc => s.entry > o.0,
                },
            };
            if take_store {
                if let Some(row) = buffered.pop_front() {
                    from_store += 1;
                    let doc = decode(&row.id, &row.doc.body)?;
                    rows.push((row.entry, doc));
                }
            } else if let Some(row) = overlay.pop_front() {
                rows.push(row);
            }
        }
        self.note_documents_read(from_store)?;

        let full = rows.len() == limit;
        let last = rows.last().map(|(entry, _)| entry.clone());
        // The range this page covered: from the request's start (or just after/before its
        // cursor) through the last row when the page is full, else to the range's end.
        let covered = match req.order {
            Order::Asc => KeyRange {
                start: match &req.cursor {
                    Some(c) if c.as_slice() >= req.range.start.as_slice() => just_after(c),
                    _ => req.range.start.clone(),
                },
                end: match (&last, full) {
                    (Some(last), true) => Some(just_after(last)),
                    _ => req.range.end.clone(),
                },
            },
            Order::Desc => KeyRange {
                start: match (&last, full) {
                    (Some(last), true) => last.clone(),
                    _ => req.range.start.clone(),
                },
                end: match &req.cursor {
                    Some(c) if req.range.end.as_ref().is_none_or(|e| c < e) => Some(c.clone()),
                    _ => req.range.end.clone(),
                },
            },
        };
        self.reads.record(
            IndexRef {
                table: req.table,
                index: req.index,
            },
            covered,
        );
        Ok(ScanResult {
            cursor: if full { last } else { None },
            rows,
        })
    }

    /// The read set and the writes, with the index entries the writes imply.
    pub fn finish(self) -> Result<FinalTransaction, TxnError> {
        let mut out = FinalTransaction {
            read_ts: self.read_ts,
            reads: self.reads,
            ..FinalTransaction::default()
        };
        for (id, index) in self.backfills.keys() {
            let doc = match self.writes.get(id) {
                // The document's own write below covers every index, this one included.
                Some(write) if write.old != write.new => continue,
                Some(write) => write.new.clone(),
                None => self
                    .store
                    .get(id, self.read_ts)?
                    .map(|v| decode(id, &v.body))
                    .transpose()?,
            };
            let Some(doc) = doc else { continue };
            let table = self
                .catalog
                .table(id.table)
                .ok_or(TxnError::UnknownTable(id.table))?;
            let def = table.index(*index).ok_or(TxnError::UnknownIndex {
                table: id.table,
                index: index.0,
            })?;
            let key = def.key_of(&doc)?;
            out.written.insert(
                IndexRef {
                    table: id.table,
                    index: *index,
                },
                store::layout::index_entry(key.as_bytes(), &id.internal),
            );
            out.index_entries.push(IndexWrite {
                index: *index,
                key,
                id: *id,
                live: true,
            });
        }
        for (id, write) in &self.writes {
            if write.old == write.new {
                continue;
            }
            let table = self
                .catalog
                .table(id.table)
                .ok_or(TxnError::UnknownTable(id.table))?;
            out.documents.push(DocumentWrite {
                id: *id,
                body: write.new.as_ref().map(encode),
            });
            out.written
                .insert(IndexRef::documents(id.table), id.internal.0.to_vec());
            for def in &table.indexes {
                let old = write.old.as_ref().map(|d| def.key_of(d)).transpose()?;
                let new = write.new.as_ref().map(|d| def.key_of(d)).transpose()?;
                let index = IndexRef {
                    table: id.table,
                    index: def.number,
                };
                if old == new {
                    // The entry stays where it is, so nothing is written to the index, but
                    // what it leads to changed: a transaction that found this document through
                    // the index read the old body, and must conflict with this write. (Without
                    // this, two transactions that each read a document through an index and
                    // update another's non-indexed fields both commit: write skew, found by
                    // chorus-torture's list-append workload.)
                    if let Some(key) = new {
                        out.written.insert(
                            index,
                            store::layout::index_entry(key.as_bytes(), &id.internal),
                        );
                    }
                    continue;
                }
                for (key, live) in [(old, false), (new, true)] {
                    let Some(key) = key else { continue };
                    out.written.insert(
                        index,
                        store::layout::index_entry(key.as_bytes(), &id.internal),
                    );
                    out.index_entries.push(IndexWrite {
                        index: def.number,
                        key,
                        id: *id,
                        live,
                    });
                }
            }
        }
        Ok(out)
    }
}
