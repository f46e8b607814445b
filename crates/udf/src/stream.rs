//! Running a parsed query over a [`Transaction`]: `1.0/queryStream` (one document per
//! [`QueryStream::next`]) and `1.0/queryPage` ([`PreparedQuery::page`]).
//!
//! Reads go through [`Transaction::scan`] page by page, so the transaction's read set covers
//! the index range only as far as the stream actually read. When it is known how many more
//! rows can be consumed (a limit with no filter before it, or a page without filters), a scan
//! asks for exactly that many and the read set ends at the last consumed row (for a full page,
//! at the row after it, which the page looks at to tell whether it is the last). Otherwise scans
//! start at `knobs::QUERY_SCAN_BATCH_MIN_ROWS` rows and double up to
//! `knobs::QUERY_SCAN_BATCH_MAX_ROWS`, and the read set may extend past the last consumed row
//! by the rest of one batch: a superset, which costs at most a spurious conflict or re-run.
//!
//! A query on a table the resolver does not know reads nothing and returns no documents (Convex
//! creates tables on first insert, so a query before it sees an empty table) for full scans
//! and the system indexes; a user index on an unknown table is an error.
//! [`PreparedQuery::missing_table`] tells the caller, which must make the result depend on the
//! table's creation itself.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use store::layout::prefix_successor;
use store::{IndexNumber, KeyRange, Order};
use txn::{Catalog, IndexScan, Object, TableDef, Transaction, TxnError};
use value::TableNumber;

use crate::expr::EvalError;
use crate::parse::ParseError;
use crate::query::{Operator, Query, RangeExpr, RangeOp, Source};
use crate::range::{IndexKind, RangeError, check_range, compile_range, is_empty_range};

/// Name of the system index over every document by id (the documents index).
pub const BY_ID: &str = "by_id";
/// Name of the system index over every document by `_creationTime`; full scans use it.
pub const BY_CREATION_TIME: &str = "by_creation_time";

/// How table names become tables. Supplied by the caller, so this crate does not decide how
/// the catalog is stored. An implementation must answer consistently within one transaction.
pub trait TableResolver {
    /// The table named `name`, if it exists.
    fn table_by_name(&self, name: &str) -> Option<TableDef>;

    /// The number of the table named `name`, if it exists.
    fn table_number_by_name(&self, name: &str) -> Option<TableNumber> {
        self.table_by_name(name).map(|t| t.number)
    }

    /// The name of table `number`, if known; only used to word error messages.
    fn table_name_by_number(&self, number: TableNumber) -> Option<String> {
        let _ = number;
        None
    }
}

impl TableResolver for Catalog {
    fn table_by_name(&self, name: &str) -> Option<TableDef> {
        self.table_named(name).cloned()
    }

    fn table_number_by_name(&self, name: &str) -> Option<TableNumber> {
        self.table_named(name).map(|t| t.number)
    }

    fn table_name_by_number(&self, number: TableNumber) -> Option<String> {
        Catalog::table(self, number).map(|t| t.name.clone())
    }
}

impl<F> TableResolver for F
where
    F: Fn(&str) -> Option<TableDef>,
{
    fn table_by_name(&self, name: &str) -> Option<TableDef> {
        self(name)
    }
}

/// Why a query could not be prepared or run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("text search is not supported (the query searches index {index})")]
    SearchUnsupported { index: String },
    #[error("Index {index} not found.")]
    IndexNotFound { index: String },
    #[error("Index {index} is currently backfilling and not available to query yet.")]
    IndexBackfilling { index: String },
    #[error("invalid index range for {index}: {source}")]
    InvalidRange {
        index: String,
        #[source]
        source: RangeError,
    },
    #[error("filter failed: {0}")]
    Filter(#[from] EvalError),
    #[error(transparent)]
    Transaction(#[from] TxnError),
    #[error("invalid cursor: {reason}")]
    InvalidCursor { reason: String },
    #[error("the cursor belongs to a different query")]
    CursorFromOtherQuery,
    #[error("pageSize must be at least 1")]
    InvalidPageSize,
}

impl QueryError {
    /// Whether the error is the function author's (a bad query, filter or cursor) rather than
    /// the database's.
    pub fn is_developer_error(&self) -> bool {
        !matches!(self, QueryError::Transaction(_))
    }
}

/// What to scan: one compiled range of one index.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScanPlan {
    table: TableNumber,
    index: IndexNumber,
    range: KeyRange,
    order: Order,
}

/// A query resolved against the catalog and compiled, ready to stream or page.
#[derive(Clone, Debug)]
pub struct PreparedQuery {
    /// `None` when the table does not exist: the query reads nothing.
    plan: Option<ScanPlan>,
    missing_table: Option<String>,
    order: Order,
    operators: Vec<Operator>,
    /// Identifies the source (table, index, range, order) in cursors.
    fingerprint: u64,
}

impl PreparedQuery {
    /// Resolves the query's table and index through `tables` and compiles its range.
    pub fn new<R: TableResolver + ?Sized>(query: Query, tables: &R) -> Result<Self, QueryError> {
        let (table_name, index_name, range, order) = match query.source {
            Source::FullTableScan { table, order } => {
                (table, BY_CREATION_TIME.to_owned(), Vec::new(), order)
            }
            Source::IndexRange {
                index,
                range,
                order,
            } => (index.table, index.index, range, order),
            Source::Search { index, .. } => {
                return Err(QueryError::SearchUnsupported {
                    index: index.to_string(),
                });
            }
        };
        let fingerprint = fingerprint(&table_name, &index_name, order, &range);
        let full_name = || format!("{table_name}.{index_name}");
        let invalid_range = |source| QueryError::InvalidRange {
            index: full_name(),
            source,
        };
        let no_fields: &[Vec<String>] = &[];

        let Some(table) = tables.table_by_name(&table_name) else {
            let kind = match index_name.as_str() {
                BY_ID => IndexKind::ById,
                BY_CREATION_TIME => IndexKind::Fields(no_fields),
                _ => return Err(QueryError::IndexNotFound { index: full_name() }),
            };
            // The range must still make sense for the index.
            check_range(kind, &range).map_err(invalid_range)?;
            return Ok(PreparedQuery {
                plan: None,
                missing_table: Some(table_name),
                order,
                operators: query.operators,
                fingerprint,
            });
        };
        let (index, kind) = if index_name == BY_ID {
            (IndexNumber::DOCUMENTS, IndexKind::ById)
        } else {
            let def = table
                .index_named(&index_name)
                .ok_or_else(|| QueryError::IndexNotFound { index: full_name() })?;
            if def.state != txn::IndexState::Enabled {
                return Err(QueryError::IndexBackfilling { index: full_name() });
            }
            (def.number, IndexKind::Fields(&def.fields))
        };
        let key_range = compile_range(table.number, kind, &range).map_err(invalid_range)?;
        Ok(PreparedQuery {
            plan: Some(ScanPlan {
                table: table.number,
                index,
                range: key_range,
                order,
            }),
            missing_table: None,
            order,
            operators: query.operators,
            fingerprint,
        })
    }

    /// The name of the queried table when it does not exist (the query then reads nothing).
    pub fn missing_table(&self) -> Option<&str> {
        self.missing_table.as_deref()
    }

    /// The table, index and entry-key range the query scans, if its table exists.
    pub fn scan_target(&self) -> Option<(TableNumber, IndexNumber, &KeyRange)> {
        self.plan.as_ref().map(|p| (p.table, p.index, &p.range))
    }

    pub fn order(&self) -> Order {
        self.order
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// A stream from the start of the range.
    pub fn stream(self) -> QueryStream {
        let passed = vec![0; self.operators.len()];
        QueryStream {
            plan: self.plan,
            operators: self.operators,
            passed,
            buffer: VecDeque::new(),
            scan_cursor: None,
            scan_exhausted: false,
            done: false,
            next_batch_rows: knobs::QUERY_SCAN_BATCH_MIN_ROWS,
            demand: None,
        }
    }

    /// One page for `1.0/queryPage`: the documents after `cursor` (`None`: from the start),
    /// at most `page_size` of them, or, when `end_cursor` is given, exactly those up to and
    /// including `end_cursor`'s position whatever `page_size` says.
    ///
    /// `continue_cursor` is the position after the last returned document, or the "end"
    /// cursor when the range (or a limit) is exhausted, in which case `is_done` is true. A
    /// full page looks one row ahead (a row the filters reject does not count; at most
    /// `PAGE_LOOK_AHEAD_MAX_ROWS` rows are examined), so a page ending at the last row is done,
    /// as in Convex's `convex-test`. The look-ahead row is not returned and the cursor stays
    /// after the last returned one; the read set reaches the look-ahead row, or the end of the
    /// range when none was found, so a document added after the page's last one invalidates a
    /// page that reported `is_done`. With `end_cursor`, `continue_cursor` is `end_cursor`'s
    /// position and `is_done` is whether that is the end. Pages partition the query's one result
    /// sequence: a cursor also carries how many rows each `limit` operator has let through, so a
    /// limit counts across pages.
    pub fn page(
        self,
        txn: &mut Transaction,
        cursor: Option<&str>,
        page_size: usize,
        end_cursor: Option<&str>,
    ) -> Result<Page, QueryError> {
        if page_size == 0 {
            return Err(QueryError::InvalidPageSize);
        }
        let fp = self.fingerprint;
        let start = cursor.map(|c| decode_cursor(fp, c)).transpose()?;
        let end = end_cursor.map(|c| decode_cursor(fp, c)).transpose()?;
        let end_text = || encode_cursor(fp, &Position::End);
        let mut stream = self.stream();
        match start {
            Some(Position::End) => {
                return Ok(Page {
                    docs: Vec::new(),
                    is_done: true,
                    continue_cursor: end_text(),
                });
            }
            Some(Position::After { key, limits }) => {
                stream.restore_limits(&limits)?;
                stream.scan_cursor = Some(key);
            }
            None => {}
        }
        if let Some(Position::After { key, .. }) = &end
            && let Some(plan) = &mut stream.plan
        {
            end_at(plan, key);
        }

        let unfiltered = !stream
            .operators
            .iter()
            .any(|op| matches!(op, Operator::Filter(_)));
        let mut docs = Vec::new();
        let mut last_entry: Option<Vec<u8>> = None;
        loop {
            if end.is_none() {
                if docs.len() >= page_size {
                    break;
                }
                if unfiltered {
                    stream.demand = Some(page_size - docs.len());
                }
            }
            match stream.next_row(txn)? {
                Some((entry, doc)) => {
                    last_entry = Some(entry);
                    docs.push(doc);
                }
                None => break,
            }
        }
        // A full page looks one emitted row ahead, so a page ending at the last row says so.
        let ahead = if end.is_none() && docs.len() >= page_size {
            if unfiltered {
                stream.demand = Some(1);
            }
            stream.look_ahead(txn, PAGE_LOOK_AHEAD_MAX_ROWS)?
        } else {
            LookAhead::NotNeeded
        };
        let after = |key: Vec<u8>| {
            encode_cursor(
                fp,
                &Position::After {
                    key,
                    limits: stream.limit_counts(),
                },
            )
        };
        let (is_done, continue_cursor) = if stream.limit_reached() {
            (true, end_text())
        } else {
            match end {
                Some(Position::After { key, .. }) => (false, after(key)),
                Some(Position::End) => (true, end_text()),
                None if stream.is_done() || ahead == LookAhead::End => (true, end_text()),
                // Not done means the page filled up (and a row may follow), so a last
                // document exists.
                None => match last_entry {
                    Some(key) => (false, after(key)),
                    None => (true, end_text()),
                },
            }
        };
        Ok(Page {
            docs,
            is_done,
            continue_cursor,
        })
    }
}

/// Narrows `plan` to end at entry `key` inclusive, in scan order.
fn end_at(plan: &mut ScanPlan, key: &[u8]) {
    match plan.order {
        Order::Asc => {
            // Entry keys are prefix-free, so every entry after `key` is at or past its prefix
            // successor. (`key ++ 00` would not do: the store compares bounds with its raw keys,
            // which extend the entry key, and a bound must not extend an entry key.)
            let after = prefix_successor(key);
            let tighter = match (&after, &plan.range.end) {
                (Some(after), Some(end)) => after < end,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if tighter {
                plan.range.end = after;
            }
        }
        Order::Desc => {
            if key > plan.range.start.as_slice() {
                plan.range.start = key.to_vec();
            }
        }
    }
}

/// Most rows a full page's look-ahead examines for one that passes the filters. Past it the page
/// reports `is_done: false` (whether more follows is unknown) and the next page reads on, so
/// a selective filter near the end of a long range cannot make one page read the whole range.
const PAGE_LOOK_AHEAD_MAX_ROWS: usize = knobs::QUERY_SCAN_BATCH_MAX_ROWS;

/// What the look-ahead after a page found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LookAhead {
    /// The page was not full, or an end cursor pinned it: no look-ahead ran.
    NotNeeded,
    /// A row follows the page.
    More,
    /// Nothing follows: the range or a limit ends with the page.
    End,
    /// `PAGE_LOOK_AHEAD_MAX_ROWS` rows were all filtered out; whether more follows is unknown.
    Unknown,
}

/// One page of `1.0/queryPage`.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub docs: Vec<Object>,
    pub is_done: bool,
    pub continue_cursor: String,
}

/// A running query: documents in index order, filtered and limited.
#[derive(Debug)]
pub struct QueryStream {
    plan: Option<ScanPlan>,
    operators: Vec<Operator>,
    /// Rows each operator has let through (counted for limits only).
    passed: Vec<usize>,
    /// Rows scanned but not yet consumed.
    buffer: VecDeque<(Vec<u8>, Object)>,
    /// Entry key of the last row scanned; the next scan resumes after it.
    scan_cursor: Option<Vec<u8>>,
    scan_exhausted: bool,
    done: bool,
    /// Size of the next scan when nothing bounds how many rows will be consumed.
    next_batch_rows: usize,
    /// Rows a page still wants; each scanned row is one document when there are no filters.
    demand: Option<usize>,
}

impl QueryStream {
    /// Prepares `query` (see [`PreparedQuery::new`]) and starts a stream over it.
    pub fn new<R: TableResolver + ?Sized>(query: Query, tables: &R) -> Result<Self, QueryError> {
        PreparedQuery::new(query, tables).map(PreparedQuery::stream)
    }

    /// The next document, or `None` once the stream is done. Errors (a failing filter, a
    /// transaction limit) end the stream.
    pub fn next(&mut self, txn: &mut Transaction) -> Result<Option<Object>, QueryError> {
        Ok(self.next_row(txn)?.map(|(_, doc)| doc))
    }

    /// Whether the stream has reported its end (or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How many rows each `limit` operator has let through, in operator order.
    fn limit_counts(&self) -> Vec<u64> {
        self.operators
            .iter()
            .zip(&self.passed)
            .filter(|(op, _)| matches!(op, Operator::Limit(_)))
            .map(|(_, passed)| *passed as u64)
            .collect()
    }

    /// Resumes the `limit` counters a cursor carried.
    fn restore_limits(&mut self, counts: &[u64]) -> Result<(), QueryError> {
        let slots: Vec<usize> = self
            .operators
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Operator::Limit(_)))
            .map(|(i, _)| i)
            .collect();
        if slots.len() != counts.len() {
            return Err(QueryError::InvalidCursor {
                reason: format!(
                    "it carries {} limit counts but the query has {} limits",
                    counts.len(),
                    slots.len()
                ),
            });
        }
        for (slot, count) in slots.into_iter().zip(counts) {
            self.passed[slot] = usize::try_from(*count).unwrap_or(usize::MAX);
        }
        Ok(())
    }

    /// Whether some limit has let all its rows through, so no further row can be emitted.
    fn limit_reached(&self) -> bool {
        self.operators
            .iter()
            .zip(&self.passed)
            .any(|(op, passed)| matches!(op, Operator::Limit(n) if passed >= n))
    }

    /// The next emitted row with its entry key.
    fn next_row(&mut self, txn: &mut Transaction) -> Result<Option<(Vec<u8>, Object)>, QueryError> {
        loop {
            // Checked before reading, so a finished limit reads nothing more.
            if self.done || self.limit_reached() {
                self.done = true;
                return Ok(None);
            }
            let row = match self.fetch(txn) {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            match self.admit(&row.1) {
                Ok(true) => return Ok(Some(row)),
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Err(e.into());
                }
            }
        }
    }

    /// Runs the operators on one row; true if it comes out of the last one.
    fn admit(&mut self, doc: &Object) -> Result<bool, EvalError> {
        for (op, passed) in self.operators.iter().zip(self.passed.iter_mut()) {
            match op {
                Operator::Filter(expr) => {
                    if !expr.matches(doc)? {
                        return Ok(false);
                    }
                }
                Operator::Limit(n) => {
                    // `next_row` stops before fetching once any limit is full.
                    debug_assert!(*passed < *n, "a row reached a full limit");
                    *passed += 1;
                }
            }
        }
        Ok(true)
    }

    /// Whether another row would be emitted, for a full page, without emitting it: reads on
    /// until a row passes every operator, the range or a limit ends, or `max_rows` rows were
    /// examined. The limit counts are put back as they were, so the page's cursor carries the
    /// counts at its last document; the stream must not be read further afterwards.
    fn look_ahead(
        &mut self,
        txn: &mut Transaction,
        max_rows: usize,
    ) -> Result<LookAhead, QueryError> {
        let counts = self.passed.clone();
        let mut examined = 0;
        let found = loop {
            if self.done || self.limit_reached() {
                self.done = true;
                break Ok(LookAhead::End);
            }
            if examined >= max_rows {
                break Ok(LookAhead::Unknown);
            }
            let row = match self.fetch(txn) {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.done = true;
                    break Ok(LookAhead::End);
                }
                Err(e) => {
                    self.done = true;
                    break Err(e);
                }
            };
            examined += 1;
            match self.admit(&row.1) {
                Ok(true) => break Ok(LookAhead::More),
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    break Err(e.into());
                }
            }
        };
        self.passed = counts;
        found
    }

    /// How many rows the next scan should ask for (see the module docs).
    fn batch_rows(&mut self) -> usize {
        let mut bound: Option<usize> = None;
        let mut filtered = false;
        for (op, passed) in self.operators.iter().zip(&self.passed) {
            match op {
                Operator::Filter(_) => {
                    filtered = true;
                    break;
                }
                Operator::Limit(n) => {
                    let left = n.saturating_sub(*passed);
                    bound = Some(bound.map_or(left, |b| b.min(left)));
                }
            }
        }
        if !filtered && let Some(demand) = self.demand {
            bound = Some(bound.map_or(demand, |b| b.min(demand)));
        }
        match bound {
            Some(rows) => rows.clamp(1, knobs::QUERY_SCAN_BATCH_MAX_ROWS),
            None => {
                let rows = self.next_batch_rows;
                self.next_batch_rows = (rows * 2).min(knobs::QUERY_SCAN_BATCH_MAX_ROWS);
                rows
            }
        }
    }

    /// The next scanned row, scanning another batch when the buffer is empty.
    fn fetch(&mut self, txn: &mut Transaction) -> Result<Option<(Vec<u8>, Object)>, QueryError> {
        if let Some(row) = self.buffer.pop_front() {
            return Ok(Some(row));
        }
        if self.scan_exhausted {
            return Ok(None);
        }
        let plan = match &self.plan {
            Some(plan) if !is_empty_range(&plan.range) => plan.clone(),
            // No table or an impossible range: nothing can ever be in it, so nothing is read.
            _ => {
                self.scan_exhausted = true;
                return Ok(None);
            }
        };
        let limit = self.batch_rows();
        let result = txn.scan(&IndexScan {
            table: plan.table,
            index: plan.index,
            range: plan.range,
            order: plan.order,
            limit,
            cursor: self.scan_cursor.clone(),
        })?;
        if let Some((entry, _)) = result.rows.last() {
            self.scan_cursor = Some(entry.clone());
        }
        self.scan_exhausted = result.cursor.is_none();
        self.buffer.extend(result.rows);
        Ok(self.buffer.pop_front())
    }
}

// ---- Cursors ----
//
// A cursor is URL-safe base64 (no padding) of:
//
//   format (1 byte, = 1) | query fingerprint (8 bytes BE) | kind (1 byte) | rest
//
// kind 0 = "after this entry key": rest = count n (2 bytes BE), n limit counters (8 bytes BE
// each: rows each `limit` operator has let through), then the entry key (non-empty);
// kind 1 = "the end of the range": rest is empty. The fingerprint ties a cursor to the source
// it was made for, so a cursor of another query is refused rather than silently resumed at a
// meaningless position.

const CURSOR_FORMAT: u8 = 1;
const CURSOR_AFTER: u8 = 0;
const CURSOR_END: u8 = 1;
const CURSOR_HEADER_LEN: usize = 1 + 8 + 1;
/// The longest entry key: an index key plus the internal id.
const CURSOR_KEY_MAX_BYTES: usize = knobs::INDEX_KEY_MAX_BYTES + value::INTERNAL_ID_LEN;
/// The longest cursor in bytes: every operator a limit.
const CURSOR_MAX_BYTES: usize =
    CURSOR_HEADER_LEN + 2 + 8 * knobs::QUERY_MAX_OPERATORS + CURSOR_KEY_MAX_BYTES;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Position {
    After { key: Vec<u8>, limits: Vec<u64> },
    End,
}

fn encode_cursor(fingerprint: u64, position: &Position) -> String {
    let mut bytes = Vec::with_capacity(CURSOR_HEADER_LEN + 64);
    bytes.push(CURSOR_FORMAT);
    bytes.extend_from_slice(&fingerprint.to_be_bytes());
    match position {
        Position::After { key, limits } => {
            bytes.push(CURSOR_AFTER);
            // A query has at most `QUERY_MAX_OPERATORS` (< 2^16) operators.
            let n = u16::try_from(limits.len()).unwrap_or(u16::MAX);
            bytes.extend_from_slice(&n.to_be_bytes());
            for count in limits.iter().take(usize::from(n)) {
                bytes.extend_from_slice(&count.to_be_bytes());
            }
            bytes.extend_from_slice(key);
        }
        Position::End => bytes.push(CURSOR_END),
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_cursor(fingerprint: u64, text: &str) -> Result<Position, QueryError> {
    let invalid = |reason: &str| QueryError::InvalidCursor {
        reason: reason.to_owned(),
    };
    // Refuse before decoding anything longer than the longest cursor could be.
    if text.len() > CURSOR_MAX_BYTES.div_ceil(3) * 4 {
        return Err(invalid("too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| invalid("not a cursor returned by this server"))?;
    let (header, rest) = bytes
        .split_at_checked(CURSOR_HEADER_LEN)
        .ok_or_else(|| invalid("too short"))?;
    if header[0] != CURSOR_FORMAT {
        return Err(invalid("unknown cursor format"));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&header[1..9]);
    if u64::from_be_bytes(fp) != fingerprint {
        return Err(QueryError::CursorFromOtherQuery);
    }
    match header[9] {
        CURSOR_END if rest.is_empty() => Ok(Position::End),
        CURSOR_AFTER => {
            let (n, rest) = rest
                .split_first_chunk::<2>()
                .ok_or_else(|| invalid("malformed position"))?;
            let n = usize::from(u16::from_be_bytes(*n));
            let (counts, key) = rest
                .split_at_checked(n * 8)
                .ok_or_else(|| invalid("malformed position"))?;
            if key.is_empty() || key.len() > CURSOR_KEY_MAX_BYTES {
                return Err(invalid("malformed position"));
            }
            let limits = counts
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    u64::from_be_bytes(b)
                })
                .collect();
            Ok(Position::After {
                key: key.to_vec(),
                limits,
            })
        }
        _ => Err(invalid("malformed position")),
    }
}

/// FNV-1a over a canonical description of the source. Stable across processes and versions
/// of this code (cursors outlive both), unlike `std`'s hashers.
fn fingerprint(table: &str, index: &str, order: Order, range: &[RangeExpr]) -> u64 {
    let mut bytes = Vec::new();
    let mut field = |b: &[u8]| {
        bytes.extend_from_slice(&(b.len() as u64).to_be_bytes());
        bytes.extend_from_slice(b);
    };
    field(table.as_bytes());
    field(index.as_bytes());
    field(&[match order {
        Order::Asc => 0,
        Order::Desc => 1,
    }]);
    for expr in range {
        field(&[match expr.op {
            RangeOp::Eq => 0,
            RangeOp::Gt => 1,
            RangeOp::Gte => 2,
            RangeOp::Lt => 3,
            RangeOp::Lte => 4,
        }]);
        field(expr.field.to_string().as_bytes());
        let mut value = Vec::new();
        match &expr.value {
            Some(v) => value::key::encode(v, &mut value),
            None => value::key::encode_missing(&mut value),
        }
        field(&value);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::new([TableDef::new(TableNumber::new(10001).unwrap(), "messages")
            .with_index("by_author", &["author"])])
    }

    fn prepare(json: serde_json::Value) -> Result<PreparedQuery, QueryError> {
        PreparedQuery::new(Query::from_json(&json)?, &catalog())
    }

    #[test]
    fn resolution() {
        let q = prepare(json!({
            "source": {"type": "FullTableScan", "tableName": "messages", "order": "desc"},
            "operators": []
        }))
        .unwrap();
        let (table, index, range) = q.scan_target().unwrap();
        assert_eq!(table.get(), 10001);
        assert_eq!(index, IndexNumber(1));
        assert_eq!(range, &KeyRange::all());
        assert_eq!(q.order(), Order::Desc);

        let q = prepare(json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_id", "range": []},
            "operators": []
        }))
        .unwrap();
        assert_eq!(q.scan_target().unwrap().1, IndexNumber::DOCUMENTS);

        let err = prepare(json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_nope", "range": []},
            "operators": []
        }))
        .unwrap_err();
        assert_eq!(err.to_string(), "Index messages.by_nope not found.");

        let err = prepare(json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_author", "range": [
                {"type": "Eq", "fieldPath": "body", "value": "x"}]},
            "operators": []
        }))
        .unwrap_err();
        assert!(
            matches!(&err, QueryError::InvalidRange { index, .. } if index == "messages.by_author"),
            "{err}"
        );
        assert!(err.is_developer_error());
    }

    #[test]
    fn search_is_rejected_after_parsing() {
        let err = prepare(json!({
            "source": {"type": "Search", "indexName": "messages.search_body", "filters": [
                {"type": "Search", "fieldPath": "body", "value": "hi"}]},
            "operators": []
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "text search is not supported (the query searches index messages.search_body)"
        );
    }

    #[test]
    fn unknown_tables_read_nothing_for_system_indexes() {
        for index in ["by_id", "by_creation_time"] {
            let q = prepare(json!({
                "source": {"type": "IndexRange", "indexName": format!("ghosts.{index}"), "range": []},
                "operators": []
            }))
            .unwrap();
            assert_eq!(q.missing_table(), Some("ghosts"));
            assert!(q.scan_target().is_none());
        }
        let q = prepare(json!({
            "source": {"type": "FullTableScan", "tableName": "ghosts"},
            "operators": []
        }))
        .unwrap();
        assert_eq!(q.missing_table(), Some("ghosts"));
        // The range is still checked.
        let err = prepare(json!({
            "source": {"type": "IndexRange", "indexName": "ghosts.by_id", "range": [
                {"type": "Eq", "fieldPath": "x", "value": 1}]},
            "operators": []
        }))
        .unwrap_err();
        assert!(matches!(err, QueryError::InvalidRange { .. }), "{err}");
        let err = prepare(json!({
            "source": {"type": "IndexRange", "indexName": "ghosts.by_x", "range": []},
            "operators": []
        }))
        .unwrap_err();
        assert!(matches!(err, QueryError::IndexNotFound { .. }), "{err}");
    }

    #[test]
    fn closures_resolve_tables() {
        let def = TableDef::new(TableNumber::new(10007).unwrap(), "t");
        let resolver = move |name: &str| (name == "t").then(|| def.clone());
        let q = Query::from_json(&json!({
            "source": {"type": "FullTableScan", "tableName": "t"},
            "operators": []
        }))
        .unwrap();
        let prepared = PreparedQuery::new(q, &resolver).unwrap();
        assert_eq!(prepared.scan_target().unwrap().0.get(), 10007);
        assert_eq!(
            resolver.table_number_by_name("t").map(|n| n.get()),
            Some(10007)
        );
        assert_eq!(
            resolver.table_name_by_number(TableNumber::new(1).unwrap()),
            None
        );
        let c = catalog();
        assert_eq!(
            c.table_name_by_number(TableNumber::new(10001).unwrap()),
            Some("messages".into())
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let fp = 42;
        let after = |key: Vec<u8>, limits: Vec<u64>| Position::After { key, limits };
        for pos in [
            Position::End,
            after(vec![0, 1, 2, 0xFF], vec![]),
            after(vec![7], vec![3, u64::MAX]),
        ] {
            let text = encode_cursor(fp, &pos);
            assert_eq!(decode_cursor(fp, &text).unwrap(), pos);
            assert!(matches!(
                decode_cursor(fp + 1, &text),
                Err(QueryError::CursorFromOtherQuery)
            ));
        }
        assert_ne!(
            encode_cursor(fp, &Position::End),
            encode_cursor(fp, &after(vec![1], vec![]))
        );
        let bad = |bytes: &[u8]| decode_cursor(fp, &URL_SAFE_NO_PAD.encode(bytes)).unwrap_err();
        let mut header = vec![CURSOR_FORMAT];
        header.extend_from_slice(&fp.to_be_bytes());
        assert!(matches!(bad(&header), QueryError::InvalidCursor { .. }));
        let mut wrong_format = header.clone();
        wrong_format[0] = 9;
        wrong_format.push(CURSOR_END);
        assert!(matches!(
            bad(&wrong_format),
            QueryError::InvalidCursor { .. }
        ));
        let mut empty_after = header.clone();
        empty_after.extend_from_slice(&[CURSOR_AFTER, 0, 0]);
        assert!(matches!(
            bad(&empty_after),
            QueryError::InvalidCursor { .. }
        ));
        let mut no_count = header.clone();
        no_count.extend_from_slice(&[CURSOR_AFTER, 0]);
        assert!(matches!(bad(&no_count), QueryError::InvalidCursor { .. }));
        let mut short_counts = header.clone();
        short_counts.extend_from_slice(&[CURSOR_AFTER, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 9]);
        assert!(matches!(
            bad(&short_counts),
            QueryError::InvalidCursor { .. }
        ));
        let mut end_with_key = header.clone();
        end_with_key.extend_from_slice(&[CURSOR_END, 1]);
        assert!(matches!(
            bad(&end_with_key),
            QueryError::InvalidCursor { .. }
        ));
        let mut unknown_kind = header;
        unknown_kind.extend_from_slice(&[7, 1]);
        assert!(matches!(
            bad(&unknown_kind),
            QueryError::InvalidCursor { .. }
        ));
        assert!(matches!(
            decode_cursor(fp, "not base64!"),
            Err(QueryError::InvalidCursor { .. })
        ));
        assert!(matches!(
            decode_cursor(fp, &"A".repeat(10_000)),
            Err(QueryError::InvalidCursor { .. })
        ));
    }

    #[test]
    fn fingerprints_tell_sources_apart() {
        let base = fingerprint("t", "by_x", Order::Asc, &[]);
        assert_eq!(base, fingerprint("t", "by_x", Order::Asc, &[]));
        assert_ne!(base, fingerprint("t", "by_x", Order::Desc, &[]));
        assert_ne!(base, fingerprint("t", "by_y", Order::Asc, &[]));
        assert_ne!(base, fingerprint("tb", "y_x", Order::Asc, &[]));
        let eq = |v: Option<value::Value>| RangeExpr {
            op: RangeOp::Eq,
            field: crate::FieldPath(vec!["x".into()]),
            value: v,
        };
        let one = fingerprint("t", "by_x", Order::Asc, &[eq(Some(1.0.into()))]);
        assert_ne!(one, base);
        assert_ne!(
            one,
            fingerprint("t", "by_x", Order::Asc, &[eq(Some(2.0.into()))])
        );
        assert_ne!(one, fingerprint("t", "by_x", Order::Asc, &[eq(None)]));
    }
}
