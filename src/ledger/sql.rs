//! The ledger's one seam to a database: the [`Sql`] trait, with two implementations — SQLite, embedded,
//! one file beside the daemon (the default), and MariaDB/MySQL, a server two login nodes can share
//! (`behavior.ledger: mysql://…`).
//!
//! Every operation of the ledger (which rows, which guard, which transaction) is written once, in the
//! ledger's own files, against this trait; only the dialect differs, and it differs here: statements are
//! written in the subset both speak (numbered `?N` placeholders; `INSERT OR IGNORE`, rewritten for
//! MariaDB), each backend's schema is its own (`schema.rs`, `maria.rs`). Two implementations of each
//! ledger operation would be two places for the exactly-once rules to drift apart.
//!
//! Must never: keep a transaction open past a failed statement (the caller rolls back), or pass a value
//! into a statement's text (every value is a bound argument).

use std::fmt;

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// SQL NULL.
    Null,
    /// An integer (booleans are 0 and 1).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (directory names: any bytes but `/` and NUL).
    Blob(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int(i64::from(v))
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Arg {
        Arg::Int(i64::from(v))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Int(i64::from(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Blob(v.to_vec())
    }
}
impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Arg {
        v.map_or(Arg::Null, Into::into)
    }
}

/// The arguments of one statement, in placeholder order: `args![id, now]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::ledger::sql::Arg::from($a)),*][..] };
}
pub(crate) use args;

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text or bytes (MariaDB sends both as bytes).
    Bytes(Vec<u8>),
}

/// One row of a result, read whole (the ledger's rows are small).
#[derive(Debug, Clone)]
pub struct Row(pub(super) Vec<Val>);

impl Row {
    /// Column `i` as a `T`.
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T, DbError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| DbError::Type(format!("no column {i}")))?;
        T::from_val(v).ok_or_else(|| DbError::Type(format!("column {i}: unexpected value {v:?}")))
    }
}

/// What a column may be read as.
pub trait FromVal: Sized {
    /// The value as this type, `None` when it is not one.
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<i64> {
        match v {
            Val::Int(n) => Some(*n),
            // MariaDB's text protocol (and DECIMAL sums) send numbers as digits.
            Val::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Val::Null => None,
        }
    }
}
impl FromVal for u32 {
    fn from_val(v: &Val) -> Option<u32> {
        i64::from_val(v).and_then(|n| u32::try_from(n).ok())
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<bool> {
        i64::from_val(v).map(|n| n != 0)
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<String> {
        match v {
            Val::Bytes(b) => String::from_utf8(b.clone()).ok(),
            Val::Int(n) => Some(n.to_string()),
            Val::Null => None,
        }
    }
}
impl FromVal for Vec<u8> {
    fn from_val(v: &Val) -> Option<Vec<u8>> {
        match v {
            Val::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Option<T>> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// Which database a ledger is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file.
    Sqlite,
    /// A MariaDB (or MySQL) server.
    Maria,
}

impl Backend {
    /// The word `status` and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Maria => "mariadb",
        }
    }
}

/// A database's refusal, as its driver gave it.
#[derive(Debug)]
pub enum DbError {
    /// SQLite's.
    Sqlite(rusqlite::Error),
    /// MariaDB's (or the connection's).
    Maria(mysql::Error),
    /// A value of a type the ledger did not write.
    Type(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => e.fmt(f),
            DbError::Maria(e) if maria_timed_out(e) => write!(
                f,
                "the database server did not answer within the ledger's timeout (overloaded, \
                 unreachable or stopped?): {e}"
            ),
            DbError::Maria(e) => e.fmt(f),
            DbError::Type(s) => write!(f, "unexpected value in the ledger: {s}"),
        }
    }
}

/// The connection's read or write timed out (the socket's timeout reads as `EAGAIN` on Linux): the
/// driver's own words ("CodecError { … os error 11 }") would not say so.
fn maria_timed_out(e: &mysql::Error) -> bool {
    let io = match e {
        mysql::Error::IoError(io) => Some(io),
        // The codec's own cause is its `io::Error` (its type is not exported by the driver).
        mysql::Error::CodecError(c) => std::error::Error::source(c).and_then(|s| s.downcast_ref()),
        _ => None,
    };
    io.is_some_and(|io: &std::io::Error| {
        matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    })
}

impl std::error::Error for DbError {
    // The driver's error is this one's text: its own cause comes next (never itself again).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Sqlite(e) => e.source(),
            DbError::Maria(e) => e.source(),
            DbError::Type(_) => None,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Sqlite(e)
    }
}
impl From<mysql::Error> for DbError {
    fn from(e: mysql::Error) -> DbError {
        DbError::Maria(e)
    }
}

impl DbError {
    /// The database refused a second row for one key of the unique index `index` (SQLite names a
    /// column of it, `column`, as `table.column`; MariaDB names the index).
    pub fn is_unique(&self, column: &str, index: &str) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, Some(m))) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation && m.contains(column)
            }
            // ER_DUP_ENTRY: "Duplicate entry '…' for key 'generations_one_intent'".
            DbError::Maria(mysql::Error::MySqlError(e)) => {
                e.code == 1062 && e.message.contains(index)
            }
            _ => false,
        }
    }

    /// The file is not an SQLite database at all.
    pub fn is_not_a_database(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase)
    }

    /// Another writer was in the way and the same transaction may simply run again: SQLite busy, a
    /// MariaDB deadlock or lock wait, a Galera certification conflict (reported as a deadlock).
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DatabaseBusy
            }
            DbError::Maria(mysql::Error::MySqlError(e)) => matches!(e.code, 1205 | 1213),
            _ => false,
        }
    }

    /// The connection to the server is gone (not a refusal of the statement): the next use reconnects.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            DbError::Maria(
                mysql::Error::IoError(_)
                    | mysql::Error::DriverError(_)
                    | mysql::Error::CodecError(_)
            )
        )
    }
}

/// One connection to a ledger's database. Statements use `?1`, `?2`, … (a number may repeat).
pub trait Sql: Send {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Runs a statement; returns the rows it matched (changed or not).
    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError>;
    /// Runs a statement on its own that the other connections need not notice (the lease's renewals):
    /// not counted by [`Sql::data_version`], so a daemon does not read its whole view again for it.
    fn exec_uncounted(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        self.exec(sql, args)
    }
    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError>;
    /// The id the last `INSERT` of this connection gave its row.
    fn last_insert_id(&mut self) -> i64;
    /// Begins a transaction.
    fn begin(&mut self) -> Result<(), DbError>;
    /// Commits it.
    fn commit(&mut self) -> Result<(), DbError>;
    /// Rolls it back (nothing of it stays).
    fn rollback(&mut self) -> Result<(), DbError>;
    /// Runs several statements without arguments (a schema).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// A number that changes when another connection committed a change since the last call (never for
    /// this connection's own commits): the daemon's in-memory view must then be read again.
    fn data_version(&mut self) -> Result<i64, DbError>;
}

/// SQLite through `rusqlite`.
#[derive(Debug)]
pub struct Sqlite(pub rusqlite::Connection);

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null => ValueRef::Null,
            Arg::Int(n) => ValueRef::Integer(*n),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Sql for Sqlite {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        let mut st = self.0.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            (0..n)
                .map(|i| {
                    use rusqlite::types::ValueRef;
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => Val::Null,
                        ValueRef::Integer(n) => Val::Int(n),
                        ValueRef::Real(x) => Val::Int(x as i64),
                        ValueRef::Text(b) | ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
                    })
                })
                .collect::<rusqlite::Result<Vec<Val>>>()
                .map(Row)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<Row>>>()?)
    }

    fn last_insert_id(&mut self) -> i64 {
        self.0.last_insert_rowid()
    }

    fn begin(&mut self) -> Result<(), DbError> {
        Ok(self.0.execute_batch("BEGIN")?)
    }

    fn commit(&mut self) -> Result<(), DbError> {
        Ok(self.0.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        Ok(self.0.execute_batch("ROLLBACK")?)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn data_version(&mut self) -> Result<i64, DbError> {
        Ok(self
            .0
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }
}

/// A statement in the shared dialect, as MariaDB takes it: `?N` becomes `?` with the N-th argument in
/// its place (MariaDB numbers nothing), `INSERT OR IGNORE` becomes `INSERT IGNORE`.
pub fn for_maria(sql: &str, args: &[Arg]) -> Result<(String, Vec<Arg>), DbError> {
    let sql = sql.replace("INSERT OR IGNORE", "INSERT IGNORE");
    let mut out = String::with_capacity(sql.len());
    let mut bound = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut n = 0usize;
        let mut digits = 0;
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            n = n * 10 + d.to_digit(10).expect("a digit") as usize;
            digits += 1;
            chars.next();
        }
        if digits == 0 {
            n = bound.len() + 1;
        }
        let a = args
            .get(n.wrapping_sub(1))
            .ok_or_else(|| DbError::Type(format!("statement names ?{n}, {} given", args.len())))?;
        bound.push(a.clone());
        out.push('?');
    }
    Ok((out, bound))
}

#[cfg(test)]
mod tests {
    /// A timed-out read says so in words, not as the driver's "os error 11".
    #[test]
    fn a_timed_out_maria_read_says_the_server_did_not_answer() {
        let eagain = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        let e = DbError::Maria(mysql::Error::IoError(eagain));
        assert!(
            e.to_string()
                .contains("did not answer within the ledger's timeout"),
            "{e}"
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = DbError::Maria(mysql::Error::IoError(refused));
        assert!(!e.to_string().contains("did not answer"), "{e}");
    }

    use super::*;

    #[test]
    fn numbered_placeholders_become_positional_ones_with_their_arguments_repeated() {
        let (sql, bound) = for_maria(
            "INSERT OR IGNORE INTO t VALUES (?1, ?2, ?1, ?10)",
            &(1..=10).map(Arg::Int).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(sql, "INSERT IGNORE INTO t VALUES (?, ?, ?, ?)");
        assert_eq!(bound, [1, 2, 1, 10].map(Arg::Int));
        assert!(for_maria("SELECT ?3", args![1]).is_err());
    }
}
