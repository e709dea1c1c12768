//! The ledger: every directory generation and its job, in an SQLite database at `behavior.state_file`.
//!
//! Owns: the schema, and every durable write of the daemon. Each transition is one committed transaction,
//! made *before* the action that depends on it (the submission intent before `sbatch`, the final state before
//! deleting or logging). WAL mode, so `dirwatcher status` can read while the daemon writes. Must never: hold a
//! transaction open across a child process, or decide anything (that is the engine's job).
//!
//! Parts: this file opens the ledger (modes, the file's own lock, the root it serves) and names its errors;
//! `schema` holds the tables, triggers and the upgrade; `read` the queries; `write` the generations'
//! writes; `outbox` the notices; `tx` the one transaction helper (`Ledger::write`) every
//! several-row write goes through; `identity` the file's identity and lock.
//!
//! The contract a second backend (the ledger on MariaDB, shared by an active/passive pair) implements is
//! the set of operations the daemon and the operator commands call on [`Ledger`], each atomic, an event's
//! notices committed with the event:
//! - intents: `insert_intents`, `insert_intent`, `requeue`, `insert_recovered`;
//! - submissions: `mark_sbatch_started`, `mark_sbatch_started_many`, `unmark_sbatch_started`,
//!   `record_submitted`, `record_submitted_many`, `record_submit_failed`, `record_lookup_empty`,
//!   `make_refused_due`;
//! - ends: `record_end`, `record_lost`, `record_seen`, `record_cancelled`;
//! - effects and the operator: `record_failure_logged`, `record_cleanup`, `drop_unsubmitted`, `forget`;
//! - outbox: `queue_notices`, `notice_sent`, `notice_failed`, `prune_delivered`;
//! - reads: those of `read` and of `outbox` (`due_notices_on`, `next_notice_at`, `notice_counts`,
//!   `outbox_health`), `data_version` (another writer committed), `id`, `check_file`.
//!
//! It is not a trait yet: every caller names `Ledger`'s own methods, and a trait with one implementation
//! would only add an import to each of them; the second backend is the time to extract it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::cell::RefCell;

use rusqlite::Connection;

use sql::{Backend, DbError, Sql, Sqlite, args};

pub mod copy;
pub mod identity;
pub mod lease;
pub mod maria;
mod outbox;
mod read;
mod schema;
pub mod sql;
mod tx;
mod write;

/// The final state an operator's `cancel` records (`CANCELLED by operator <name>`).
pub const CANCELLED_BY_OPERATOR: &str = "CANCELLED by operator";

pub use outbox::{DELIVERED_KEPT, NewNotice, Notice, NoticeCounts, OutboxHealth};
pub use read::{Counts, DirLatest};
pub use schema::SCHEMA_VERSION;
pub use write::{EndRecord, NewGeneration, Recovered};

use schema::{stored_version, upgrade};
// What the tests below name through `use super::*`.
#[cfg(test)]
use {
    crate::engine::notice::{Channel, EventKind},
    crate::engine::{GenState, JobDetail, ReadyIdentity},
    crate::time::Millis,
    read::COLUMNS,
    schema::SCHEMA,
    std::ffi::{OsStr, OsString},
    std::os::unix::ffi::OsStringExt,
};

/// Why the ledger could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file exists but is the JSON state file of the Python original (or some other non-database).
    #[error(
        "`{0}` is not a dirwatcher ledger (it looks like the JSON state file of the Python dirwatcher); set \
         `behavior.state_file` to a new path such as `/var/lib/dirwatcher/state.db`"
    )]
    Foreign(PathBuf),
    /// Its directory could not be created.
    #[error("cannot create the directory of the state file `{path}`")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A new ledger file could not be created with its mode.
    #[error("cannot create the state file `{path}`")]
    Create {
        /// The database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `behavior.state_file` is a symlink (dangling or not): never opened or created through.
    #[error(
        "`{path}` is a symlink (to `{target}`): dirwatcher never opens or creates its ledger through a link; \
         set `behavior.state_file` to the real file, or move the ledger to its path"
    )]
    Symlink {
        /// The state file.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// `behavior.state_file` is a directory or something else that is not a regular file.
    #[error(
        "`{0}` is not a regular file; set `behavior.state_file` to a file path such as `/var/lib/dirwatcher/state.db`"
    )]
    NotAFile(PathBuf),
    /// Another process holds the ledger file's own lock (a second daemon, through any name of the file).
    #[error(
        "another dirwatcher holds the ledger `{0}` (its lock is on the file itself, so a second daemon is refused \
         through any path or hard link to it); stop the other one first (`systemctl stop dirwatcher`)"
    )]
    InUse(PathBuf),
    /// The ledger serves another root.
    #[error(
        "the ledger `{path}` belongs to the root `{served}`, not `{root}`: its records mean nothing for this root; \
         give this root its own `behavior.state_file` (or point `watch.root` back at `{served}`)"
    )]
    OtherRoot {
        /// The database file.
        path: PathBuf,
        /// The root it was created for.
        served: String,
        /// The root of this config.
        root: String,
    },
    /// Written by a newer dirwatcher.
    #[error(
        "the ledger `{path}` has schema version {version}, newer than this dirwatcher knows ({known}): it was \
         written by a newer release; install that release again (a downgrade cannot read it)"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        version: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// A second intent for a generation and attempt that already has one: a second writer got in.
    #[error(
        "the ledger `{0}` already holds an intent for this directory's generation and attempt: another \
         dirwatcher wrote to this ledger; nothing was submitted twice — stop the other daemon"
    )]
    DoubleIntent(PathBuf),
    /// This process's lease on a shared ledger is gone (another daemon took over, or it ran out): it
    /// may write nothing more.
    #[error(
        "the lease on the ledger `{path}` (epoch {epoch}) is no longer this daemon's: another took over or \
         it ran out; nothing more is written from here"
    )]
    Deposed {
        /// The ledger.
        path: PathBuf,
        /// The epoch this daemon held.
        epoch: i64,
    },
    /// The database said no (disk full, read-only, locked, corrupt; the server gone).
    #[error("ledger `{path}`: {what}")]
    Sql {
        /// The database file (or the server's address).
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// Cause.
        #[source]
        source: DbError,
    },
}

/// Where a ledger is: one SQLite file (`behavior.state_file`), or a database on a MariaDB/MySQL server
/// (`behavior.ledger`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerAt {
    /// An SQLite file.
    File(PathBuf),
    /// A database on a server.
    Server(maria::MariaTarget),
}

impl std::fmt::Display for LedgerAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerAt::File(p) => p.display().fmt(f),
            LedgerAt::Server(t) => f.write_str(&t.describe()),
        }
    }
}

impl LedgerAt {
    /// Where the config puts the ledger: the server of `behavior.ledger`, else the SQLite `state_file`.
    pub fn of(b: &crate::config::BehaviorConfig) -> LedgerAt {
        match &b.ledger {
            Some(t) => LedgerAt::Server(t.clone()),
            None => LedgerAt::File(b.state_file.clone()),
        }
    }

    /// Whether nothing of a ledger is there yet (no file, an empty one, a database without a record):
    /// `Some` with the words for it, checked before the ledger is opened (which creates it).
    pub fn fresh(&self) -> Result<Option<&'static str>> {
        match self {
            LedgerAt::File(path) => {
                let at = identity::look(path).map_err(|source| LedgerError::Create {
                    path: path.clone(),
                    source,
                })?;
                Ok(at.is_fresh().then(|| at.word()))
            }
            LedgerAt::Server(t) => {
                let name = PathBuf::from(t.describe());
                let mut db = maria::Maria::connect(t).map_err(sqle(&name, "cannot connect"))?;
                let fresh = maria::is_fresh(&mut db).map_err(sqle(&name, "cannot read"))?;
                Ok(fresh.then_some("without dirwatcher's tables (a new database)"))
            }
        }
    }

    /// The ledger's name in messages: its file, or its server's address.
    pub fn name(&self) -> PathBuf {
        match self {
            LedgerAt::File(p) => p.clone(),
            LedgerAt::Server(t) => PathBuf::from(t.describe()),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, LedgerError>;

/// Mode of a new ledger file: the service's group may read it (`sqlite3`, backups), no one else.
pub const LEDGER_MODE: u32 = 0o640;
/// Mode of a directory created for the ledger (the umask may cut it further).
pub const LEDGER_DIR_MODE: u32 = 0o750;

/// Creates an empty `path` with mode [`LEDGER_MODE`] exactly, unless something is there already (an
/// existing ledger keeps the mode its operator gave it; a symlink is not followed: `O_EXCL`).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(LEDGER_MODE)
        .open(path)
    {
        // The umask cut the mode at open: set it exactly, on the descriptor.
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(LEDGER_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The open ledger.
pub struct Ledger {
    /// The database, behind the one seam (a cell: reads take `&self`, and a connection to a server
    /// needs `&mut` for every statement).
    db: RefCell<Box<dyn Sql>>,
    path: PathBuf,
    instance: String,
    /// The lock on the ledger file itself, for the daemon and `recover` (not the CLI's short writes).
    held: Option<identity::Held>,
    /// The lease this process holds on a shared ledger: every write transaction is fenced by it.
    fence: Option<lease::Held>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("instance", &self.instance)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

fn u(v: i64) -> u64 {
    v as u64
}
fn i(v: u64) -> i64 {
    v as i64
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`. A new ledger gets mode [`LEDGER_MODE`] exactly
    /// (SQLite gives its `-wal` and `-shm` files the same), whatever the umask; a new directory for it
    /// [`LEDGER_DIR_MODE`] (before the umask).
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(parent) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(LEDGER_DIR_MODE)
                .create(parent)
                .map_err(|source| LedgerError::Dir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        match identity::look(path) {
            Ok(identity::AtPath::Symlink(target)) => {
                return Err(LedgerError::Symlink {
                    path: path.to_path_buf(),
                    target,
                });
            }
            Ok(identity::AtPath::NotAFile) => {
                return Err(LedgerError::NotAFile(path.to_path_buf()));
            }
            _ => {}
        }
        create_private(path).map_err(|source| LedgerError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(head) = read_header(path) {
            let trimmed: Vec<u8> = head
                .iter()
                .copied()
                .skip_while(u8::is_ascii_whitespace)
                .collect();
            if !head.is_empty()
                && !head.starts_with(b"SQLite format 3\0")
                && trimmed.first().is_some_and(|b| *b == b'{' || *b == b'[')
            {
                return Err(LedgerError::Foreign(path.to_path_buf()));
            }
        }
        let sql = |what| sqle::<rusqlite::Error>(path, what);
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sql("cannot open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql("cannot configure"))?;
        // WAL: readers (the CLI) never block the daemon; FULL: a committed intent survives a power cut.
        with_busy_retry(|| conn.pragma_update(None, "journal_mode", "WAL"))
            .map_err(foreign_or(path, "cannot enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("cannot configure"))?;
        let instance = match with_busy_retry(|| upgrade(&mut conn)) {
            Ok(Ok(instance)) => instance,
            Ok(Err(version)) => {
                return Err(LedgerError::Newer {
                    path: path.to_path_buf(),
                    version,
                    known: SCHEMA_VERSION,
                });
            }
            Err(e) => return Err(sql("cannot upgrade the schema")(e)),
        };
        Ok(Ledger::new(Box::new(Sqlite(conn)), path, instance))
    }

    /// Opens (creating if needed) the ledger at `at`.
    pub fn open_at(at: &LedgerAt) -> Result<Ledger> {
        match at {
            LedgerAt::File(p) => Ledger::open(p),
            LedgerAt::Server(t) => Ledger::open_server(t, true),
        }
    }

    /// [`Ledger::open_exclusive`] at `at`. On a server, the database itself is what two daemons share;
    /// which of them may write is the lease's to say, not a lock on a file.
    pub fn open_exclusive_at(at: &LedgerAt, root: &Path) -> Result<Ledger> {
        match at {
            LedgerAt::File(p) => Ledger::open_exclusive(p, root),
            LedgerAt::Server(t) => {
                let l = Ledger::open_server(t, true)?;
                l.serve_root(root)?;
                Ok(l)
            }
        }
    }

    /// [`Ledger::open_read_only`] at `at`: on a server, nothing is created (an account that may only
    /// read is enough).
    pub fn open_read_only_at(at: &LedgerAt) -> Result<Ledger> {
        match at {
            LedgerAt::File(p) => Ledger::open_read_only(p),
            LedgerAt::Server(t) => Ledger::open_server(t, false),
        }
    }

    /// Connects to the ledger's database on a server; with `create`, creates or upgrades its tables.
    fn open_server(t: &maria::MariaTarget, create: bool) -> Result<Ledger> {
        let name = PathBuf::from(t.describe());
        let sql = |what| sqle::<DbError>(&name, what);
        let mut db = maria::Maria::connect(t).map_err(sql("cannot connect"))?;
        let instance = if create {
            match maria::upgrade(&mut db, schema::fresh_instance_id()) {
                Ok(Ok(instance)) => instance,
                Ok(Err(version)) => {
                    return Err(LedgerError::Newer {
                        path: name,
                        version,
                        known: SCHEMA_VERSION,
                    });
                }
                Err(e) => return Err(sql("cannot create or upgrade the tables")(e)),
            }
        } else {
            if let Some(version) = maria::stored_version(&mut db).map_err(sql("cannot read"))?
                && version > SCHEMA_VERSION
            {
                return Err(LedgerError::Newer {
                    path: name,
                    version,
                    known: SCHEMA_VERSION,
                });
            }
            maria::instance(&mut db).map_err(sql("cannot read"))?
        };
        Ok(Ledger::new(Box::new(db), &name, instance))
    }

    fn new(db: Box<dyn Sql>, path: &Path, instance: String) -> Ledger {
        Ledger {
            db: RefCell::new(db),
            path: path.to_path_buf(),
            instance,
            held: None,
            fence: None,
        }
    }

    /// Which database the ledger is in.
    pub fn backend(&self) -> Backend {
        self.db.borrow().backend()
    }

    /// Opens (creating if needed) the ledger for its one writer, the daemon (or `recover`): takes the lock
    /// on the ledger file itself, and checks that the ledger serves `root` (a ledger that has not said yet
    /// which root it serves is given this one).
    pub fn open_exclusive(path: &Path, root: &Path) -> Result<Ledger> {
        let mut l = Ledger::open(path)?;
        l.held = Some(identity::Held::take(path).map_err(|e| match e {
            identity::LockError::Held => LedgerError::InUse(path.to_path_buf()),
            identity::LockError::Io(source) => LedgerError::Create {
                path: path.to_path_buf(),
                source,
            },
        })?);
        l.serve_root(root)?;
        Ok(l)
    }

    /// The root this ledger serves, as recorded when it was first opened for one (none yet: any).
    pub fn served_root(&self) -> Result<Option<PathBuf>> {
        use std::os::unix::ffi::OsStringExt;
        let served: Option<Vec<u8>> = self
            .row(
                r#"SELECT value FROM meta WHERE "key" = 'root'"#,
                &[],
                "cannot read",
            )?
            .map(|r| r.get(0))
            .transpose()
            .map_err(self.sql("cannot read"))?;
        Ok(served.map(|s| PathBuf::from(std::ffi::OsString::from_vec(s))))
    }

    /// Checks that the ledger serves `root` (a ledger that has not said yet which root it serves is given
    /// this one).
    fn serve_root(&self, root: &Path) -> Result<()> {
        let path = &self.path;
        let mine = root.as_os_str().as_bytes();
        let served = self.served_root()?;
        match served.as_deref().map(|p| p.as_os_str().as_bytes()) {
            Some(s) if s != mine => {
                return Err(LedgerError::OtherRoot {
                    path: path.to_path_buf(),
                    served: String::from_utf8_lossy(s).into_owned(),
                    root: root.display().to_string(),
                });
            }
            Some(_) => {}
            None => {
                self.exec(
                    r#"INSERT OR IGNORE INTO meta("key", value) VALUES ('root', ?1)"#,
                    args![mine],
                    "cannot record the root",
                )?;
            }
        }
        Ok(())
    }

    /// Whether the ledger's path still names the file this process holds (always true for a ledger opened
    /// without [`Ledger::open_exclusive`]).
    pub fn check_file(&self) -> std::result::Result<(), identity::Problem> {
        self.held.as_ref().map_or(Ok(()), identity::Held::check)
    }

    /// Lets go of the lock on the ledger file (tests: a restart in one process).
    #[cfg(test)]
    pub fn let_go(&mut self) {
        self.held = None;
    }

    /// The ledger's id (the middle of every submission key, `dw-<id>-<row>`).
    pub fn id(&self) -> &str {
        &self.instance
    }

    /// Opens an existing ledger for reading only (`status`, `explain`, `run --dry-run`): never creates the
    /// file, its directory or its schema, and works for a user who may read but not write it.
    pub fn open_read_only(path: &Path) -> Result<Ledger> {
        use rusqlite::OpenFlags;
        let sql = |what| sqle::<rusqlite::Error>(path, what);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql("cannot open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql("cannot configure"))?;
        let instance: String = conn
            .query_row(
                r#"SELECT value FROM meta WHERE "key" = 'instance'"#,
                [],
                |r| r.get(0),
            )
            .map_err(foreign_or(path, "cannot read"))?;
        if let Some(version) = stored_version(&conn).map_err(sql("cannot read"))?
            && version > SCHEMA_VERSION
        {
            return Err(LedgerError::Newer {
                path: path.to_path_buf(),
                version,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Ledger::new(Box::new(Sqlite(conn)), path, instance))
    }

    fn sql<E: Into<DbError>>(&self, what: &'static str) -> impl FnOnce(E) -> LedgerError + '_ {
        move |source| LedgerError::Sql {
            path: self.path.clone(),
            what,
            source: source.into(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The first 64 bytes of the file at `path` (enough to tell SQLite's header from a JSON file), or `None`
/// when it cannot be read (it does not exist yet). Never the whole file: a ledger may be gigabytes.
fn read_header(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// Like [`sqle`], but "not a database" means the file is something else (the Python original's JSON).
fn foreign_or(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| {
        let source = DbError::from(source);
        if source.is_not_a_database() {
            LedgerError::Foreign(path)
        } else {
            LedgerError::Sql { path, what, source }
        }
    }
}

/// Like [`sqle`], but the one-intent index refusing a row means a second writer got in.
fn intent_err(path: &Path) -> impl FnOnce(LedgerError) -> LedgerError {
    let path = path.to_path_buf();
    move |e| match e {
        LedgerError::Sql { source, .. }
            if source.is_unique("generations.ready_ino", "generations_one_intent") =>
        {
            LedgerError::DoubleIntent(path)
        }
        e => e,
    }
}

fn sqle<E: Into<DbError>>(path: &Path, what: &'static str) -> impl FnOnce(E) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Sql {
        path,
        what,
        source: source.into(),
    }
}

/// Runs `f` again while the database is busy, for up to the busy timeout. Switching a new database to WAL
/// needs a lock that SQLite does not wait for (no busy handler), so two processes creating the ledger at
/// once would otherwise fail one of them.
fn with_busy_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod testdb;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Where a test's ledger lives: each test of the ledger's operations runs on both databases.
    enum Place {
        File(tempfile::TempDir),
        Server(maria::MariaTarget),
    }

    impl Place {
        fn at(&self) -> LedgerAt {
            match self {
                Place::File(t) => LedgerAt::File(t.path().join("s.db")),
                Place::Server(m) => LedgerAt::Server(m.clone()),
            }
        }

        fn open(&self) -> Ledger {
            Ledger::open_at(&self.at()).unwrap()
        }

        /// Another, new ledger of the same kind.
        fn another(&self, test: &str) -> Place {
            match self {
                Place::File(_) => Place::File(tempfile::tempdir().unwrap()),
                Place::Server(_) => Place::Server(testdb::fresh(test).unwrap()),
            }
        }
    }

    /// Runs `f` on a new SQLite ledger, then on a new database of the test MariaDB server.
    fn on_both(test: &str, f: impl Fn(&Place)) {
        eprintln!("{test} on SQLite");
        f(&Place::File(tempfile::tempdir().unwrap()));
        if let Some(t) = testdb::fresh(test) {
            eprintln!("{test} on MariaDB");
            f(&Place::Server(t));
        }
    }

    /// A test of the ledger's operations, on both databases: `both!(name, |p| { … })`.
    macro_rules! both {
        ($name:ident, $body:expr) => {
            #[test]
            fn $name() {
                on_both(stringify!($name), $body);
            }
        };
    }

    fn new(
        dir: &OsStr,
        ready: ReadyIdentity,
        dir_dev_ino: Option<(u64, u64)>,
        at: Millis,
    ) -> NewGeneration<'_> {
        NewGeneration {
            dir,
            ready,
            dir_dev_ino,
            attempt: 1,
            job_name: "dw-job",
            not_before: at,
        }
    }

    fn ident(n: u64) -> ReadyIdentity {
        ReadyIdentity {
            dev: 1,
            ino: n,
            size: 0,
            mtime_ns: 1_700_000_000_000_000_000,
        }
    }

    both!(intent_then_submission_then_end, |p| {
        let mut l = p.open();
        let g = l
            .insert_intent(&new("case1".as_ref(), ident(1), Some((1, 2)), 10), 10)
            .unwrap();
        assert_eq!(g.state, GenState::Submitting);
        assert!(g.key.starts_with("dw-") && g.key.ends_with(&format!("-{}", g.id)));
        l.mark_sbatch_started(g.id, 11).unwrap();
        assert!(l.get(g.id).unwrap().unwrap().uncertain);
        l.record_submitted(g.id, "42", &[], 12).unwrap();
        let s = l.get(g.id).unwrap().unwrap();
        assert_eq!(
            (s.state, s.job_id.as_deref(), s.uncertain),
            (GenState::Submitted, Some("42"), false)
        );
        assert_eq!(l.active().unwrap().len(), 1);
        let g = l.get(g.id).unwrap().unwrap();
        let end = EndRecord {
            state: GenState::Failed,
            final_state: "FAILED",
            exit_code: "3:0",
            delete_pending: false,
            failure_log_pending: true,
            retry_at: None,
            detail: &JobDetail {
                reason: "NonZeroExitCode".into(),
                nodes: "vm".into(),
                elapsed_sec: Some(7),
            },
            notices: &[],
        };
        assert_eq!(l.record_end(&g, &end, 20).unwrap(), None);
        assert_eq!(
            l.get(g.id).unwrap().unwrap().detail.reason,
            "NonZeroExitCode"
        );
        assert!(l.active().unwrap().is_empty());
        assert_eq!(l.pending_effects().unwrap().len(), 1);
        l.record_failure_logged(g.id, 21).unwrap();
        assert!(l.pending_effects().unwrap().is_empty());
        assert_eq!(l.counts().unwrap().failed, 1);
        let again = l.requeue(&l.get(g.id).unwrap().unwrap(), 30).unwrap();
        let r = l.get(again).unwrap().unwrap();
        assert_eq!(
            (r.state, r.attempt, r.dir.as_os_str()),
            (GenState::Submitting, 2, OsStr::new("case1"))
        );
        assert_eq!(
            l.counts().unwrap().failed,
            0,
            "the directory counts once, by its latest record"
        );
    });

    /// The counts as the first release computed them: a walk over the whole ledger.
    fn counted_by_walking(l: &Ledger) -> Vec<(String, i64)> {
        l.db.borrow_mut()
            .query(
                "SELECT state, COUNT(*) FROM generations g
                 WHERE id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) GROUP BY state ORDER BY state",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
            .collect()
    }

    fn counted_by_triggers(l: &Ledger) -> Vec<(String, i64)> {
        let c = l.counts().unwrap();
        let mut v: Vec<(String, i64)> = [
            ("completed", c.completed),
            ("failed", c.failed),
            ("lost", c.lost),
            ("submitted", c.submitted),
            ("submitting", c.submitting),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.to_string(), n as i64))
        .collect();
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the daemon and the CLI do (intents, submissions, ends with and without a retry, lost
        /// jobs, `retry`, `forget`), the trigger-kept counts equal a walk over the whole ledger.
        #[test]
        fn kept_counts_equal_a_full_count(ops in proptest::collection::vec((0u8..7, 0u8..4), 1..40)) {
            let file = Place::File(tempfile::tempdir().unwrap());
            kept_counts_on(&file, &ops)?;
            if let Some(t) = testdb::fresh("kept_counts_equal_a_full_count") {
                kept_counts_on(&Place::Server(t), &ops)?;
            }
        }
    }

    fn kept_counts_on(p: &Place, ops: &[(u8, u8)]) -> std::result::Result<(), TestCaseError> {
        let mut l = p.open();
        for (n, &(op, d)) in ops.iter().enumerate() {
            let dir = OsString::from(format!("d{d}"));
            let now = n as i64;
            let latest = l.latest_for_dir(&dir).unwrap();
            match (op, latest) {
                // Each intent is for a new generation (a new ready-file): one generation never has two.
                (0, _) => {
                    l.insert_intent(
                        &new(&dir, ident(n as u64 * 10 + u64::from(d)), None, now),
                        now,
                    )
                    .unwrap();
                }
                (1, Some(g)) => l.record_submitted(g.id, "7", &[], now).unwrap(),
                (2 | 3, Some(g)) if g.state.is_active() => {
                    let end = EndRecord {
                        state: if op == 2 {
                            GenState::Completed
                        } else {
                            GenState::Failed
                        },
                        final_state: "X",
                        exit_code: "0:0",
                        delete_pending: false,
                        failure_log_pending: false,
                        retry_at: (op == 3).then_some(now),
                        detail: &JobDetail::default(),
                        notices: &[],
                    };
                    l.record_end(&g, &end, now).unwrap();
                }
                (4, Some(g)) => l.record_lost(g.id, &[], now).unwrap(),
                (5, Some(g)) if !g.state.is_active() => {
                    l.requeue(&g, now).unwrap();
                }
                (6, _) => {
                    l.forget(&dir).unwrap();
                }
                _ => {}
            }
            prop_assert_eq!(counted_by_triggers(&l), counted_by_walking(&l));
        }
        Ok(())
    }

    both!(
        delivered_notices_are_pruned_after_their_time_and_nothing_else_is,
        |p| {
            let mut l = p.open();
            let n = NewNotice {
                event: EventKind::Completed,
                channel: Channel::Command,
                target: "",
                payload: "{}",
            };
            let n2 = n.clone();
            l.queue_notices(None, &[n.clone(), n.clone(), n], 1)
                .unwrap();
            let due = l.due_notices(10, 10).unwrap();
            l.notice_sent(due[0].id, 100).unwrap();
            l.notice_failed(due[1].id, "down", None, 100).unwrap();
            assert_eq!(
                l.prune_delivered(100, 10).unwrap(),
                0,
                "delivered at 100, not before"
            );
            assert_eq!(l.prune_delivered(101, 10).unwrap(), 1);
            let c = l.notice_counts().unwrap();
            assert_eq!((c.pending, c.sent, c.given_up), (1, 0, 1), "{c:?}");
            // The delivery step reads the channels it can hand over now, only.
            let hook = NewNotice {
                channel: Channel::Webhook,
                target: "http://h/",
                ..n2
            };
            l.queue_notices(None, &[hook], 2).unwrap();
            let only = l.due_notices_on(&[Channel::Webhook], 10, 10).unwrap();
            assert_eq!(only.len(), 1);
            assert_eq!(only[0].channel, Channel::Webhook);
            assert!(l.due_notices_on(&[], 10, 10).unwrap().is_empty());
        }
    );

    // The database's rows are written in the order they happened: while its oldest notice waits for a
    // retry, the later ones are not due; other channels go on as before.
    both!(
        a_database_notice_waits_behind_an_earlier_one_and_no_other_channel_does,
        |p| {
            let mut l = p.open();
            let db = |event| NewNotice {
                event,
                channel: Channel::Database,
                target: "",
                payload: "{}",
            };
            let hook = |event| NewNotice {
                channel: Channel::Command,
                ..db(event)
            };
            let batch = [
                db(EventKind::Submitted),
                hook(EventKind::Submitted),
                db(EventKind::Completed),
                hook(EventKind::Completed),
            ];
            l.queue_notices(None, &batch, 1).unwrap();
            let due = l.due_notices(10, 10).unwrap();
            assert_eq!(due.len(), 4, "all due at first, oldest first");
            let (first_db, first_hook) = (due[0].id, due[1].id);
            l.notice_failed(first_db, "down", Some(1_000), 10).unwrap();
            l.notice_failed(first_hook, "down", Some(1_000), 10)
                .unwrap();
            let due = l.due_notices(20, 10).unwrap();
            let kinds: Vec<(Channel, EventKind)> =
                due.iter().map(|n| (n.channel, n.event)).collect();
            assert_eq!(
                kinds,
                [(Channel::Command, EventKind::Completed)],
                "the database's end waits behind its submission; the hook's end does not"
            );
            let due = l.due_notices(1_000, 10).unwrap();
            let kinds: Vec<(Channel, EventKind)> =
                due.iter().map(|n| (n.channel, n.event)).collect();
            assert_eq!(
                kinds[..2],
                [
                    (Channel::Database, EventKind::Submitted),
                    (Channel::Command, EventKind::Submitted)
                ]
            );
            assert!(kinds.contains(&(Channel::Database, EventKind::Completed)));
        }
    );

    both!(
        one_generation_never_holds_two_intents_for_one_attempt,
        |p| {
            let mut a = p.open();
            // A second writer that got past every lock: the database itself refuses the double intent.
            let mut b = p.open();
            let dir = OsStr::new("d");
            a.insert_intent(&new(dir, ident(1), None, 1), 1).unwrap();
            let e = b
                .insert_intent(&new(dir, ident(1), None, 2), 2)
                .unwrap_err();
            assert!(matches!(e, LedgerError::DoubleIntent(_)), "{e}");
            assert!(
                e.to_string()
                    .contains("another dirwatcher wrote to this ledger"),
                "{e}"
            );
            // A new generation (another ready-file) and the next attempt of the first are fine.
            b.insert_intent(&new(dir, ident(2), None, 3), 3).unwrap();
            let g = a.latest_for_dir(dir).unwrap().unwrap();
            let first = a.history(dir).unwrap().remove(0);
            assert_ne!(g.id, first.id);
            a.requeue(&first, 4).unwrap();
            assert!(b.requeue(&first, 5).is_err(), "the same retry twice");
        }
    );

    both!(a_ledger_newer_than_this_binary_is_refused_untouched, |p| {
        p.open()
            .db
            .borrow_mut()
            .exec(
                "INSERT INTO schema_version(version, applied_at) VALUES (?1, 0)",
                args![SCHEMA_VERSION + 1],
            )
            .unwrap();
        let e = Ledger::open_at(&p.at()).unwrap_err();
        assert!(
            matches!(e, LedgerError::Newer { version, .. } if version == SCHEMA_VERSION + 1),
            "{e}"
        );
        assert!(
            e.to_string().contains("newer than this dirwatcher knows"),
            "{e}"
        );
        assert!(Ledger::open_read_only_at(&p.at()).is_err());
    });

    #[test]
    fn a_ledger_serves_one_root_and_one_daemon() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.db");
        let l = Ledger::open_exclusive(&p, Path::new("/data/a")).unwrap();
        let e = Ledger::open_exclusive(&p, Path::new("/data/a")).unwrap_err();
        assert!(matches!(e, LedgerError::InUse(_)), "{e}");
        drop(l);
        let e = Ledger::open_exclusive(&p, Path::new("/data/b")).unwrap_err();
        assert!(matches!(e, LedgerError::OtherRoot { .. }), "{e}");
        assert!(
            e.to_string().contains("belongs to the root `/data/a`"),
            "{e}"
        );
        Ledger::open_exclusive(&p, Path::new("/data/a")).unwrap();
    }

    #[test]
    fn an_older_ledger_gets_its_counts_filled_once_on_open() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.db");
        {
            let mut l = Ledger::open(&p).unwrap();
            for n in 0..5 {
                l.insert_intent(&new(OsStr::new(&format!("d{n}")), ident(n), None, 1), 1)
                    .unwrap();
            }
            // A ledger of the release before the kept counts (schema 1: no version table either).
            l.db.borrow_mut()
                .batch(
                    "DROP TRIGGER counts_insert; DROP TRIGGER counts_update; DROP TRIGGER counts_delete;
                     DROP TABLE state_counts; DROP TABLE schema_version;",
                )
                .unwrap();
        }
        let l = Ledger::open(&p).unwrap();
        assert_eq!(l.counts().unwrap().submitting, 5);
        assert_eq!(counted_by_triggers(&l), counted_by_walking(&l));
    }

    #[test]
    fn the_loop_s_queries_use_their_indexes() {
        let t = tempfile::tempdir().unwrap();
        let l = Ledger::open(&t.path().join("s.db")).unwrap();
        let plan = |q: &str| -> String {
            l.db.borrow_mut()
                .query(&format!("EXPLAIN QUERY PLAN {q}"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get::<String>(3).unwrap())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let effects = plan(&format!(
            "SELECT {COLUMNS} FROM generations WHERE delete_pending = 1 OR failure_log_pending = 1 ORDER BY id"
        ));
        assert!(effects.contains("generations_effects"), "{effects}");
        let failures = plan(&format!(
            "SELECT {COLUMNS} FROM generations WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT 5"
        ));
        assert!(
            failures.contains("generations_finished") && !failures.contains("TEMP B-TREE"),
            "{failures}"
        );
    }

    both!(
        processes_creating_the_ledger_at_once_all_open_it_with_one_instance,
        |p| {
            for _ in 0..20 {
                let p = p
                    .another("processes_creating_the_ledger_at_once_all_open_it_with_one_instance");
                let at = p.at();
                let opened: Vec<_> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..4).map(|_| s.spawn(|| Ledger::open_at(&at))).collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let ids: Vec<String> = opened
                    .into_iter()
                    .map(|l| l.expect("concurrent open failed").instance)
                    .collect();
                assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
            }
        }
    );

    both!(state_survives_reopen_and_keys_stay_unique, |p| {
        let k1 = {
            let mut l = p.open();
            l.insert_intent(&new("a".as_ref(), ident(1), None, 1), 1)
                .unwrap()
                .key
        };
        let mut l = p.open();
        let k2 = l
            .insert_intent(&new("b".as_ref(), ident(2), None, 2), 2)
            .unwrap()
            .key;
        assert_ne!(k1, k2);
        assert_eq!(l.active().unwrap().len(), 2);
        let other = p
            .another("state_survives_reopen_and_keys_stay_unique")
            .open();
        assert_ne!(
            other.instance, l.instance,
            "a new ledger must not reuse keys of an old one"
        );
    });

    both!(keys_are_never_reused_after_forget, |p| {
        let mut l = p.open();
        let k1 = l
            .insert_intent(&new("a".as_ref(), ident(1), None, 1), 1)
            .unwrap()
            .key;
        l.forget("a".as_ref()).unwrap();
        let k2 = l
            .insert_intent(&new("a".as_ref(), ident(1), None, 2), 2)
            .unwrap()
            .key;
        assert_ne!(
            k1, k2,
            "a reused key could adopt the job of a forgotten generation"
        );
    });

    #[test]
    fn a_ledger_of_the_first_schema_opens_and_gains_the_new_columns() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("old.db");
        {
            let c = Connection::open(&p).unwrap();
            // The first release's table, without `seen_at`, the end's details and the outbox.
            let arrays = ",\n    array_key           TEXT,\n    array_task          INTEGER,\n    array_name          TEXT\n";
            assert!(SCHEMA.contains(arrays));
            let added = ",\n    seen_at             INTEGER,\n    reason              TEXT,\n    nodes               TEXT,\n    elapsed_sec         INTEGER\n";
            let old = SCHEMA.replace(arrays, "\n");
            assert!(old.contains(added));
            let old = old.replace(added, "\n");
            let old = old.split("-- The outbox").next().unwrap();
            assert!(!old.contains("seen_at") && !old.contains("outbox"));
            c.execute_batch(old).unwrap();
            c.execute(
                "INSERT INTO generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, state, submit_key,
                     job_id, job_name, created_at, updated_at)
                 VALUES (x'61', 1, 2, 0, 5, 'submitted', 'dw-old-1', '42', 'dw-a', 10, 10)",
                [],
            )
            .unwrap();
        }
        let l = Ledger::open(&p).unwrap();
        let g = l.active().unwrap().pop().unwrap();
        assert_eq!((g.job_id.as_deref(), g.seen_at), (Some("42"), None));
        l.record_seen(&[g.id], 99).unwrap();
        assert_eq!(l.get(g.id).unwrap().unwrap().seen_at, Some(99));
        drop(l);
        Ledger::open(&p).expect("opens again after the upgrade");
        l_lost_roundtrip(&p);
    }

    /// A ledger of schema 3 (before job arrays) is brought to schema 4 when opened: the array columns are
    /// added, its records read as before (in no array), and an array can be recorded in it.
    #[test]
    fn a_ledger_of_schema_3_gains_the_array_columns() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("v3.db");
        let id = {
            let mut l = Ledger::open(&p).unwrap();
            l.insert_intent(&new("a".as_ref(), ident(1), Some((1, 2)), 10), 10)
                .unwrap()
                .id
        };
        {
            // Back to schema 3 as that release wrote it: no array columns, versions 1 to 3.
            let c = Connection::open(&p).unwrap();
            for col in ["array_key", "array_task", "array_name"] {
                c.execute_batch(&format!("ALTER TABLE generations DROP COLUMN {col}"))
                    .unwrap();
            }
            c.execute("DELETE FROM schema_version WHERE version > 3", [])
                .unwrap();
        }
        let mut l = Ledger::open(&p).unwrap();
        let c = Connection::open(&p).unwrap();
        let v: i64 = c
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::SCHEMA_VERSION);
        let g = l.get(id).unwrap().unwrap();
        assert_eq!(g.array, None);
        let id2 = l
            .insert_intent(&new("b".as_ref(), ident(2), Some((1, 3)), 11), 11)
            .unwrap()
            .id;
        l.mark_sbatch_started_many(&[id, id2], 12).unwrap();
        let made = l.assign_arrays(&[vec![id, id2]], "dw", 12).unwrap();
        let (key, name) = &made[0];
        let (a, b) = (l.get(id).unwrap().unwrap(), l.get(id2).unwrap().unwrap());
        assert_eq!(a.array.as_ref().map(|x| (&x.key, x.task)), Some((key, 0)));
        assert_eq!(b.array.as_ref().map(|x| (&x.name, x.task)), Some((name, 1)));
        assert_eq!(a.scheduler_key(), key.as_str());
        assert_eq!(a.job_name, "dw-job", "the directory's own name stays");
    }

    /// Two processes opening a new MariaDB ledger at once (a daemon starting while an operator's command
    /// runs, or both daemons of a pair): the second may find the schema version recorded while the first
    /// has not yet recorded the ledger's id. It records the id itself instead of failing ("the ledger has
    /// no id"), and both then read the one id recorded first.
    #[test]
    fn an_opener_racing_the_creator_of_a_mariadb_ledger_gets_its_one_id() {
        let Some(t) =
            testdb::fresh("an_opener_racing_the_creator_of_a_mariadb_ledger_gets_its_one_id")
        else {
            return;
        };
        let at = LedgerAt::Server(t.clone());
        Ledger::open_at(&at).unwrap();
        {
            use sql::Sql;
            let mut db = maria::Maria::connect(&t).unwrap();
            // What the racing opener sees: the creator's version row, not yet its id.
            db.batch(r#"DELETE FROM meta WHERE "key" = 'instance'"#)
                .unwrap();
        }
        let first = Ledger::open_at(&at).unwrap().id().to_string();
        assert!(!first.is_empty());
        assert_eq!(Ledger::open_at(&at).unwrap().id(), first, "one id, kept");
    }

    /// The same upgrade on a MariaDB ledger of schema 3: its DDL adds the array columns once.
    #[test]
    fn a_mariadb_ledger_of_schema_3_gains_the_array_columns() {
        let Some(t) = testdb::fresh("a_mariadb_ledger_of_schema_3_gains_the_array_columns") else {
            return;
        };
        let at = LedgerAt::Server(t.clone());
        let id = {
            let mut l = Ledger::open_at(&at).unwrap();
            l.insert_intent(&new("a".as_ref(), ident(1), Some((1, 2)), 10), 10)
                .unwrap()
                .id
        };
        {
            use sql::Sql;
            let mut db = maria::Maria::connect(&t).unwrap();
            for col in ["array_key", "array_task", "array_name"] {
                db.batch(&format!("ALTER TABLE generations DROP COLUMN {col}"))
                    .unwrap();
            }
            db.batch("DELETE FROM schema_version WHERE version > 3")
                .unwrap();
        }
        let mut l = Ledger::open_at(&at).unwrap();
        assert_eq!(l.get(id).unwrap().unwrap().array, None);
        let id2 = l
            .insert_intent(&new("b".as_ref(), ident(2), Some((1, 3)), 11), 11)
            .unwrap()
            .id;
        l.mark_sbatch_started_many(&[id, id2], 12).unwrap();
        let made = l.assign_arrays(&[vec![id, id2]], "dw", 12).unwrap();
        let b = l.get(id2).unwrap().unwrap();
        assert_eq!(
            b.array.map(|a| (a.key, a.task)),
            Some((made[0].0.clone(), 1))
        );
        drop(l);
        Ledger::open_at(&at).expect("opens again after the upgrade");
    }

    both!(
        a_new_try_alone_leaves_the_array_and_an_array_key_is_never_reused,
        |p| {
            let mut l = p.open();
            let a = l
                .insert_intent(&new("a".as_ref(), ident(1), Some((1, 2)), 10), 10)
                .unwrap()
                .id;
            let b = l
                .insert_intent(&new("b".as_ref(), ident(2), Some((1, 3)), 10), 10)
                .unwrap()
                .id;
            l.mark_sbatch_started_many(&[a, b], 11).unwrap();
            let first = l.assign_arrays(&[vec![a, b]], "dw", 11).unwrap();
            assert!(first[0].0.starts_with("dw-") && first[0].0.contains(&format!("-a{a}-")));
            assert_eq!(first[0].1, format!("dw-array-{a}-1"));
            // Never answered, cleared by a lookup, marked again: a new array gets a new key.
            l.mark_sbatch_started_many(&[a, b], 12).unwrap();
            assert_eq!(
                l.get(a).unwrap().unwrap().array,
                None,
                "marked alone: out of the array"
            );
            let second = l.assign_arrays(&[vec![a, b]], "dw", 12).unwrap();
            assert_ne!(first[0].0, second[0].0);
            l.record_submitted(a, "77_0", &[], 13).unwrap();
            let g = l.get(a).unwrap().unwrap();
            assert_eq!(g.job_id.as_deref(), Some("77_0"));
            assert_eq!(g.scheduler_key(), second[0].0);
        }
    );

    fn l_lost_roundtrip(p: &Path) {
        let mut l = Ledger::open(p).unwrap();
        let g = l.active().unwrap().pop().unwrap();
        let notice = NewNotice {
            event: EventKind::Lost,
            channel: Channel::Command,
            target: "",
            payload: "{}",
        };
        l.record_lost(g.id, &[notice], 100).unwrap();
        assert_eq!(
            l.due_notices(100, 10).unwrap().len(),
            1,
            "the old ledger gained the outbox"
        );
        let lost = l.get(g.id).unwrap().unwrap();
        assert_eq!(lost.state, GenState::Lost);
        assert!(
            l.active().unwrap().is_empty(),
            "a lost job is followed no more"
        );
        assert_eq!((l.counts().unwrap().lost, l.lost().unwrap().len()), (1, 1));
        let again = l.requeue(&lost, 200).unwrap();
        assert_eq!(l.get(again).unwrap().unwrap().attempt, 2);
        assert_eq!(l.counts().unwrap().lost, 0);
    }

    #[test]
    fn json_state_of_the_python_original_is_refused_with_advice() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.json");
        std::fs::write(&p, "{\"processed\": {}}").unwrap();
        let e = Ledger::open(&p).err().unwrap().to_string();
        assert!(e.contains("state.db"), "{e}");
    }

    proptest! {
        // Each case opens a fresh database with fsync'd commits: fewer cases keep the suite quick.
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any directory name (non-UTF-8 too) and identity survive the round trip through the ledger.
        #[test]
        fn ledger_round_trip(name in proptest::collection::vec(1u8..=255, 1..40), ino in any::<u64>(), size in any::<u64>(), mtime in any::<i64>()) {
            let file = Place::File(tempfile::tempdir().unwrap());
            round_trip_on(&file, name.clone(), ino, size, mtime)?;
            if let Some(t) = testdb::fresh("ledger_round_trip") {
                round_trip_on(&Place::Server(t), name, ino, size, mtime)?;
            }
        }
    }

    fn round_trip_on(
        p: &Place,
        name: Vec<u8>,
        ino: u64,
        size: u64,
        mtime: i64,
    ) -> std::result::Result<(), TestCaseError> {
        let mut l = p.open();
        let dir = OsString::from_vec(name);
        let id = ReadyIdentity {
            dev: u64::MAX,
            ino,
            size,
            mtime_ns: mtime,
        };
        let g = l
            .insert_intent(&new(&dir, id, Some((u64::MAX, ino)), 5), 5)
            .unwrap();
        let back = l.latest_for_dir(&dir).unwrap().unwrap();
        prop_assert_eq!(&back, &g);
        prop_assert_eq!(back.dir, dir);
        prop_assert_eq!(back.ready, id);
        Ok(())
    }
}
