//! The small adapter a database backend implements so that the store's SQL is written once
//! ([`crate::sql::SqlStore`]): connections for reading, transactions for writing, statements with
//! `?` placeholders and rows read by column index.
//!
//! Placeholders are written `?` in the shared SQL; PostgreSQL numbers them (`$1`, `$2`, …). A
//! parameter is a [`Val`]; a row is read through [`Row`], whose typed access ([`Col`]) is shared,
//! so a row decoder exists once for both backends.

use crate::{Result, StoreError, SyncCommit};
use async_trait::async_trait;
use std::borrow::Cow;

/// A statement parameter.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Bytes(&'a [u8]),
}

impl Val<'static> {
    /// An owned text parameter.
    pub fn text(s: impl Into<String>) -> Self {
        Val::Text(Cow::Owned(s.into()))
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<&i64> for Val<'_> {
    fn from(v: &i64) -> Self {
        Val::Int(*v)
    }
}
impl From<u32> for Val<'_> {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<&u32> for Val<'_> {
    fn from(v: &u32) -> Self {
        Val::Int(i64::from(*v))
    }
}
impl From<bool> for Val<'_> {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(v: &'a String) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&&'a str> for Val<'a> {
    fn from(v: &&'a str) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(Cow::Owned(v))
    }
}
impl<'a> From<&'a [u8]> for Val<'a> {
    fn from(v: &'a [u8]) -> Self {
        Val::Bytes(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Val<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Val::Bytes(v)
    }
}
impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}
impl<'a> From<&'a Option<String>> for Val<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}
impl<'a> From<&'a Option<i64>> for Val<'a> {
    fn from(v: &'a Option<i64>) -> Self {
        (*v).into()
    }
}

/// The parameters of a statement: `params![a, b, c]`.
#[macro_export]
#[doc(hidden)]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::backend::Val::from($v)),*][..] };
}

/// One row of a result, read by column index.
pub trait Row {
    fn int(&self, i: usize) -> Result<Option<i64>>;
    fn text(&self, i: usize) -> Result<Option<&str>>;
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>>;
}

/// A column value read from a [`Row`].
pub trait Col: Sized {
    fn read(r: &dyn Row, i: usize) -> Result<Self>;
}

fn null(i: usize) -> StoreError {
    StoreError::Corrupt(format!("column {i} is NULL where a value is required"))
}

impl Col for Option<i64> {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        r.int(i)
    }
}
impl Col for i64 {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        r.int(i)?.ok_or_else(|| null(i))
    }
}
impl Col for bool {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        Ok(r.int(i)?.ok_or_else(|| null(i))? != 0)
    }
}
impl Col for Option<u32> {
    /// Out-of-range values read as absent, as uid and gid numbers always did.
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        Ok(r.int(i)?.and_then(|v| u32::try_from(v).ok()))
    }
}
impl Col for Option<String> {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        Ok(r.text(i)?.map(str::to_string))
    }
}
impl Col for String {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        Ok(r.text(i)?.ok_or_else(|| null(i))?.to_string())
    }
}
impl Col for Vec<u8> {
    fn read(r: &dyn Row, i: usize) -> Result<Self> {
        Ok(r.bytes(i)?.ok_or_else(|| null(i))?.to_vec())
    }
}

impl dyn Row + '_ {
    /// Column `i` as `T`.
    pub fn get<T: Col>(&self, i: usize) -> Result<T> {
        T::read(self, i)
    }
    /// Column `i`, required text, borrowed.
    pub fn str(&self, i: usize) -> Result<&str> {
        self.text(i)?.ok_or_else(|| null(i))
    }
}

/// Called once per row of a query.
pub type EachRow<'f> = dyn FnMut(&dyn Row) -> Result<()> + Send + 'f;

/// A connection, inside a transaction when it came from [`Backend::begin`].
#[async_trait]
pub trait Conn: Send {
    /// Runs a statement; the number of rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64>;
    /// Runs one statement once per parameter row (one prepared statement; pipelined on
    /// PostgreSQL); the rows changed in all.
    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Val<'_>>]) -> Result<u64>;
    /// Runs a query, calling `f` with each row.
    async fn each(&mut self, sql: &str, params: &[Val<'_>], f: &mut EachRow<'_>) -> Result<()>;
    /// Takes a lock that serialises writers of `table` until the transaction ends (SQLite's
    /// transactions are serialised already).
    async fn lock_table(&mut self, table: &str) -> Result<()>;
    /// Commits the transaction (a no-op outside one). Dropped without it, a transaction rolls back.
    async fn commit(self: Box<Self>) -> Result<()>;
}

impl dyn Conn + '_ {
    /// Every row, decoded.
    pub async fn query<T: Send>(
        &mut self,
        sql: &str,
        params: &[Val<'_>],
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(decode(r)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The first row, decoded, if any.
    pub async fn query_opt<T: Send>(
        &mut self,
        sql: &str,
        params: &[Val<'_>],
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<Option<T>> {
        let mut out = None;
        self.each(sql, params, &mut |r| {
            if out.is_none() {
                out = Some(decode(r)?);
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The first row, decoded; an error when there is none.
    pub async fn query_one<T: Send>(
        &mut self,
        sql: &str,
        params: &[Val<'_>],
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<T> {
        self.query_opt(sql, params, decode).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no row where one was expected: {}",
                sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
            ))
        })
    }
}

/// A database the store runs on.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// The migrations this build applies to such a database.
    const MIGRATIONS: &'static [crate::migrate::Migration];
    /// The condition that finds the decisions whose names, UPNs, mail or SIDs (either side)
    /// hold a term of [`crate::query::INDEXED_TERM_CHARS`] characters or more through the
    /// backend's substring index (PostgreSQL: migration 0029's, over its stored text), with one
    /// parameter: [`Backend::search_param`]. None where the backend keeps no such index (SQLite, migration 0022): searches scan.
    const DECISION_SEARCH: Option<&'static str>;
    /// A column holding each decision's searched values folded and joined by line feeds
    /// (PostgreSQL: `search_text`, migration 0029), which a search matches instead of folding the
    /// eight values of every row it reads (`lower` of multibyte text costs PostgreSQL about 6 µs a
    /// row), by position (`INSTR`), not `LIKE`, which pg_trgm would offer its index for. None where
    /// there is none (SQLite, whose index is its own, migration 0024): a search
    /// matches each value, `FOLD(column) LIKE FOLD_TERM`.
    const SEARCH_TEXT: Option<&'static str> = None;
    /// A function of the term folded (Rust's lower case) and the eight searched values, true
    /// when a value folded as [`Backend::FOLD`] folds it holds the term: SQLite's `ferry_holds`,
    /// one call a row instead of eight `FOLD(column) LIKE FOLD_TERM` (each allocated and copied
    /// the folded value). None: the `LIKE`s, or [`Backend::SEARCH_TEXT`].
    const HOLDS: Option<&'static str> = None;
    /// The function that folds a value's case for a substring search, Unicode-wide
    /// (`lower` folds only ASCII on SQLite).
    const FOLD: &'static str;
    /// What follows a text expression a list sorts on so that it compares by code point, the
    /// same on both backends (migration 0023 indexes the expressions with it): nothing on SQLite,
    /// whose default collation is binary; ` COLLATE "C"` on PostgreSQL, whose database may
    /// default to a language's collation.
    const BINARY: &'static str;
    /// What precedes a column in an equality the planner should filter by but not range an
    /// index by: SQLite's unary `+`. Given `o_kind = ?` on an index (value, kind, source id), SQLite
    /// takes the index's order to no longer serve the ORDER BY and sorts every row of each value
    /// for a page (all of a rule's, all of the decisions without a SID); with `+o_kind` it walks
    /// the index in order and filters. Nothing on PostgreSQL, whose planner keeps the index's
    /// order whatever column a constant is on, and checks the kind inside the index.
    const FILTER_ONLY: &'static str;
    /// `decisions_order` joined to `decisions` (migration 0027): by key on PostgreSQL, whose view
    /// has no rid; on SQLite by rid as well, the table's primary key, so that a searched page can
    /// start from the search index's candidates (each decision's row found by its rid) rather
    /// than walk every row of the order's index looking each decision up (at 200,000 decisions,
    /// 0.2 s for a rare term and 1.7 s for one in 2% of them, against 1 ms sorted by source
    /// name). The trigger of 0027 deletes a row with its decision, so a rid is never another
    /// decision's.
    const ORDER_JOIN: &'static str = "decisions_order JOIN decisions ON profile = o_profile AND kind = o_kind AND source_id = o_source_id";
    /// A batch's agents as a join of its computers (`bc`) with the agents of each (their
    /// columns unqualified), for a page sorted by host name: the batch's `(batch, computer)` index
    /// walked in key order and each computer's agents looked up by `(host_key, id)` (migration
    /// 0025), so that a page reads its own rows. PostgreSQL's planner, left to itself, merged the
    /// two indexes and walked every agent from the end of the list down to the batch's (60,000 at
    /// 100,000 agents); a lateral subquery it cannot flatten (`OFFSET 0`) makes it walk the
    /// batch's computers instead.
    const BATCH_AGENTS: &'static str;
    /// The pattern a search binds for a term (in [`Backend::DECISION_SEARCH`] and each searched
    /// column's `FOLD(column) LIKE FOLD_TERM`): `%term%` with `LIKE`'s wildcards escaped, folded
    /// where [`Backend::FOLD_TERM`] does not fold it in SQL.
    fn search_param(term: &str) -> String;
    /// The SQL a search's pattern parameter goes through, so that it is folded exactly as the
    /// values are: `?` on SQLite (the pattern is folded in Rust, as `ferry_fold` folds the values),
    /// `lower(?)` on PostgreSQL (whose `lower` folds `İ` and a final `Σ` otherwise than Rust: a
    /// name searched as it is written must find itself).
    const FOLD_TERM: &'static str;
    /// Whether the backend keeps SQLite's search index filled outside the cycle (migration 0024,
    /// [`crate::search_index`]): searches and the object report read it when it is whole for the
    /// profiles searched, and scan until then.
    const DEFERRED_SEARCH: bool = false;
    /// Whether a text value may hold a NUL (SQLite stores one a directory value carries;
    /// PostgreSQL refuses it, so no value it holds has one, and a parameter with one is an error).
    const TEXT_HOLDS_NUL: bool = false;
    /// Whether the cycle records the trigrams of the searched text with the decisions (migration
    /// 0028, PostgreSQL): a term of one or two characters is looked for through the ones that
    /// contain it ([`crate::query::SearchBy::AnyOf`]).
    const TERMS_IN_CYCLE: bool = false;
    /// The function giving the position of its second argument in its first (0: absent).
    const INSTR: &'static str;
    /// A condition true of every profile a decision belongs to, for a listing across profiles
    /// that scans: SQLite's `profile IN (SELECT profile FROM plans)` (a profile's decisions are
    /// committed with its plan, and neither is deleted). Given the profiles, SQLite's planner
    /// ranges a `(profile, status, …)` index profile by profile, in order; without them it walked
    /// the primary key and read every row of another status: a first page of `an` among the
    /// matched read the 527,500 unmatched devices listed before the users (55 ms at a million
    /// decisions; 0.4 ms so), a count up to 1,001 took 37 ms (14 ms). None on PostgreSQL, whose
    /// short terms read their candidates first.
    const EACH_PROFILE: Option<&'static str> = None;
    /// A connection whose reads all see one snapshot (a read-only transaction, ended by
    /// [`Conn::commit`] or drop): a search that checks the deferred index is whole, then reads it.
    async fn snapshot(&self) -> Result<Box<dyn Conn + '_>> {
        self.read().await
    }
    /// One chunk of the deferred search index's indexer (one short write transaction); whether
    /// more work may remain. Nothing to do where there is no such index.
    async fn index_search(&self) -> Result<bool> {
        Ok(false)
    }
    /// A connection for reading (no transaction).
    async fn read(&self) -> Result<Box<dyn Conn + '_>>;
    /// A connection for one write, committed as it runs (no transaction).
    async fn write(&self) -> Result<Box<dyn Conn + '_>>;
    /// A connection inside a new transaction, the only writer of the rows it touches until it
    /// commits or is dropped.
    async fn begin(&self) -> Result<Box<dyn Conn + '_>>;
    /// A cycle's bulk write, the one place where the backends differ for speed (SQLite: sorted
    /// prepared inserts with the decisions' indexes rebuilt; PostgreSQL: `UNNEST` arrays).
    async fn commit_sync(&self, s: &SyncCommit<'_>) -> Result<()>;
}
