//! The ledger: every directory generation and its job, in an SQLite database at `behavior.state_file`.
//!
//! Owns: the schema, and every durable write of the daemon. Each transition is one committed transaction,
//! made *before* the action that depends on it (the submission intent before `sbatch`, the final state before
//! deleting or logging). WAL mode, so `dirwatcher status` can read while the daemon writes. Must never: hold a
//! transaction open across a child process, or decide anything (that is the engine's job).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

pub mod identity;

use crate::engine::notice::{Channel, EventKind};
use crate::engine::{GenState, Generation, JobDetail, ReadyIdentity};
use crate::time::Millis;

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
    /// SQLite said no (disk full, read-only, locked, corrupt).
    #[error("state file `{path}`: {what}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, LedgerError>;

/// Counts by state and the in-flight generations, for `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Intents committed, no job id yet.
    pub submitting: u64,
    /// Jobs in flight.
    pub submitted: u64,
    /// Jobs COMPLETED.
    pub completed: u64,
    /// Jobs failed.
    pub failed: u64,
    /// Jobs lost (no source showed them for longer than `job.lost_after_sec`).
    pub lost: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    -- AUTOINCREMENT: ids (and so submission keys) are never reused, even after `forget` deletes rows.
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    dir                 BLOB    NOT NULL,
    ready_dev           INTEGER NOT NULL,
    ready_ino           INTEGER NOT NULL,
    ready_size          INTEGER NOT NULL,
    ready_mtime_ns      INTEGER NOT NULL,
    dir_dev             INTEGER,
    dir_ino             INTEGER,
    state               TEXT    NOT NULL,
    attempt             INTEGER NOT NULL DEFAULT 1,
    submit_tries        INTEGER NOT NULL DEFAULT 0,
    submit_key          TEXT    NOT NULL UNIQUE,
    job_id              TEXT,
    job_name            TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    submitted_at        INTEGER,
    finished_at         INTEGER,
    next_try_at         INTEGER NOT NULL DEFAULT 0,
    final_state         TEXT,
    exit_code           TEXT,
    last_error          TEXT,
    uncertain           INTEGER NOT NULL DEFAULT 0,
    delete_pending      INTEGER NOT NULL DEFAULT 0,
    failure_log_pending INTEGER NOT NULL DEFAULT 0,
    deleted             INTEGER NOT NULL DEFAULT 0,
    updated_at          INTEGER NOT NULL,
    seen_at             INTEGER,
    reason              TEXT,
    nodes               TEXT,
    elapsed_sec         INTEGER
);
CREATE INDEX IF NOT EXISTS generations_dir ON generations(dir, id);
CREATE INDEX IF NOT EXISTS generations_state ON generations(state);
CREATE INDEX IF NOT EXISTS generations_dir_ident ON generations(dir_ino, dir_dev);
-- The outbox: one row per notice (event × channel × target), committed with its event, delivered at least
-- once by the daemon, retried with back-off, kept after delivery (`sent`) or the last attempt (`given_up`).
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gen_id      INTEGER,
    event       TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
-- Pending effects are few among a million rows: the loop reads them through this partial index.
CREATE INDEX IF NOT EXISTS generations_effects ON generations(id)
    WHERE delete_pending = 1 OR failure_log_pending = 1;
-- `status`' recent failures, newest first, without sorting every failed row.
CREATE INDEX IF NOT EXISTS generations_finished ON generations(state, finished_at);
";

/// The counts by state of the latest record of every directory, kept by triggers in the same transaction
/// as every insert, state change and delete (the daemon's and the CLI's alike), so `counts()` reads a
/// handful of rows instead of walking the whole ledger (0.8 s at a million rows). "Latest" = highest id of
/// its directory; ids only grow (AUTOINCREMENT) and `dir` is never updated.
const COUNTS_SCHEMA: &str = "
CREATE TABLE state_counts (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO state_counts(state, n)
    SELECT state, COUNT(*) FROM generations g
    WHERE id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) GROUP BY state;
CREATE TRIGGER counts_insert AFTER INSERT ON generations BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state =
        (SELECT state FROM generations WHERE dir = NEW.dir AND id < NEW.id ORDER BY id DESC LIMIT 1);
    INSERT INTO state_counts(state, n) VALUES (NEW.state, 1)
        ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_update AFTER UPDATE OF state ON generations
    WHEN OLD.state <> NEW.state AND NOT EXISTS (SELECT 1 FROM generations WHERE dir = NEW.dir AND id > NEW.id)
BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO state_counts(state, n) VALUES (NEW.state, 1)
        ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_delete AFTER DELETE ON generations
    WHEN NOT EXISTS (SELECT 1 FROM generations WHERE dir = OLD.dir AND id > OLD.id)
BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO state_counts(state, n)
        SELECT state, 1 FROM generations WHERE dir = OLD.dir AND id < OLD.id ORDER BY id DESC LIMIT 1
        ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
";

/// The schema this binary writes, kept in `schema_version` (one row per version reached, with its time).
/// 1: every ledger before that table (the columns of [`ADDED_COLUMNS`] may be missing); 2: the version
/// table, the root the ledger serves in `meta`, and one intent per generation and attempt
/// (`generations_one_intent`).
pub const SCHEMA_VERSION: i64 = 2;

/// No generation (directory and ready-file identity) holds two intents for one attempt: a second writer
/// that got past every lock is refused by the database. `{floor}`: rows up to this id (duplicates a
/// ledger of schema 1 may hold from before) are not checked.
const ONE_INTENT: &str = "CREATE UNIQUE INDEX IF NOT EXISTS generations_one_intent
    ON generations(dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, attempt) WHERE id > {floor}";

const COLUMNS: &str = "id, dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev, dir_ino, state, attempt, \
    submit_tries, submit_key, job_id, job_name, created_at, submitted_at, finished_at, next_try_at, final_state, \
    exit_code, last_error, uncertain, delete_pending, failure_log_pending, deleted, updated_at, seen_at, reason, \
    nodes, elapsed_sec";

/// Columns added after the first release, with their definition: a ledger written by an older dirwatcher
/// gets them on open (`ALTER TABLE … ADD COLUMN`; the new values start empty).
const ADDED_COLUMNS: [(&str, &str); 4] = [
    // When a scheduler source last showed the job (for `lost`).
    ("seen_at", "INTEGER"),
    // What explains a job's end (failure log, notices).
    ("reason", "TEXT"),
    ("nodes", "TEXT"),
    ("elapsed_sec", "INTEGER"),
];

/// How long a delivered notice stays in the outbox (for `sqlite3` and a look back), then it is pruned.
pub const DELIVERED_KEPT: Duration = Duration::from_secs(7 * 86400);

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
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    instance: String,
    /// The lock on the ledger file itself, for the daemon and `recover` (not the CLI's short writes).
    held: Option<identity::Held>,
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
        let sql = |what| {
            move |source| LedgerError::Sql {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
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
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            instance,
            held: None,
        })
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
        let mine = root.as_os_str().as_bytes();
        let served: Option<Vec<u8>> = l
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'root'", [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .optional()
            .map_err(l.sql("cannot read"))?
            .map(|v| match v {
                rusqlite::types::Value::Blob(b) => b,
                rusqlite::types::Value::Text(t) => t.into_bytes(),
                _ => Vec::new(),
            });
        match served {
            Some(s) if s != mine => {
                return Err(LedgerError::OtherRoot {
                    path: path.to_path_buf(),
                    served: String::from_utf8_lossy(&s).into_owned(),
                    root: root.display().to_string(),
                });
            }
            Some(_) => {}
            None => {
                l.conn
                    .execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('root', ?1)",
                        [mine],
                    )
                    .map_err(l.sql("cannot record the root"))?;
            }
        }
        Ok(l)
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
        let sql = |what| {
            move |source| LedgerError::Sql {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql("cannot open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql("cannot configure"))?;
        let instance: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get(0)
            })
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
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            instance,
            held: None,
        })
    }

    fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest generation of `dir`, if any.
    pub fn latest_for_dir(&self, dir: &OsStr) -> Result<Option<Generation>> {
        let q =
            format!("SELECT {COLUMNS} FROM generations WHERE dir = ?1 ORDER BY id DESC LIMIT 1");
        let mut st = self
            .conn
            .prepare_cached(&q)
            .map_err(self.sql("cannot read"))?;
        st.query_row([dir.as_bytes()], row_to_gen)
            .optional()
            .map_err(self.sql("cannot read"))
    }

    /// All generations of `dir`, oldest first.
    pub fn history(&self, dir: &OsStr) -> Result<Vec<Generation>> {
        self.select("WHERE dir = ?1 ORDER BY id", [dir.as_bytes()])
    }

    /// The latest generation of whichever directory had the device and inode `dev_ino` when its intent
    /// was recorded (a directory renamed within the root keeps them), if any.
    pub fn latest_for_dir_ident(&self, dev_ino: (u64, u64)) -> Result<Option<Generation>> {
        let q = format!(
            "SELECT {COLUMNS} FROM generations WHERE dir_ino = ?1 AND dir_dev = ?2 ORDER BY id DESC LIMIT 1"
        );
        let mut st = self
            .conn
            .prepare_cached(&q)
            .map_err(self.sql("cannot read"))?;
        st.query_row(params![i(dev_ino.1), i(dev_ino.0)], row_to_gen)
            .optional()
            .map_err(self.sql("cannot read"))
    }

    /// SQLite's `PRAGMA data_version`: changes when another connection (the CLI's `retry` or `forget`)
    /// committed since the last call on this one; never for this connection's own commits. Checked once per
    /// cycle, it tells the daemon when its in-memory view must be read again.
    pub fn data_version(&self) -> Result<i64> {
        let mut st = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .map_err(self.sql("cannot read"))?;
        st.query_row([], |r| r.get(0))
            .map_err(self.sql("cannot read"))
    }

    /// The latest record of every directory that was not deleted by dirwatcher, in one query: what the
    /// daemon keeps in memory so a scan needs no SQL per directory.
    pub fn latest_all(&self) -> Result<Vec<(OsString, DirLatest)>> {
        let what = "cannot read the directories";
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT g.dir, g.id, g.state, g.ready_dev, g.ready_ino, g.ready_size, g.ready_mtime_ns
                 FROM generations g JOIN (SELECT MAX(id) AS id FROM generations GROUP BY dir) m ON g.id = m.id
                 WHERE g.deleted = 0",
            )
            .map_err(self.sql(what))?;
        let rows = st
            .query_map([], |r| {
                let state: String = r.get(2)?;
                Ok((
                    OsString::from_vec(r.get::<_, Vec<u8>>(0)?),
                    r.get::<_, i64>(1)?,
                    state,
                    ReadyIdentity {
                        dev: u(r.get(3)?),
                        ino: u(r.get(4)?),
                        size: u(r.get(5)?),
                        mtime_ns: r.get(6)?,
                    },
                ))
            })
            .map_err(self.sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (dir, id, state, ready) = row.map_err(self.sql(what))?;
            if let Some(state) = GenState::parse(&state) {
                out.push((dir, DirLatest { id, state, ready }));
            }
        }
        Ok(out)
    }

    /// Commits the intents of one scan in one transaction (one fsync for all of them), each before its
    /// `sbatch`. Returns the new records, in order.
    pub fn insert_intents(
        &mut self,
        news: &[NewGeneration<'_>],
        now: Millis,
    ) -> Result<Vec<Generation>> {
        let path = self.path.clone();
        let sql = |what| sqle(&path, what);
        let tx = self
            .conn
            .transaction()
            .map_err(sql("cannot begin a transaction"))?;
        let mut ids = Vec::with_capacity(news.len());
        for new in news {
            ids.push(
                insert_row(&tx, &self.instance, new, now)
                    .map_err(intent_err(&path, "cannot record the intent"))?,
            );
        }
        tx.commit().map_err(sql("cannot commit the intents"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get(id)?);
        }
        Ok(out)
    }

    /// [`Ledger::mark_sbatch_started`] for several records in one transaction: the ones handed to a batch
    /// of concurrent `sbatch` calls. Returns, for each id, whether it was still waiting (an operator may
    /// have cancelled or forgotten it since the cycle read it: then no `sbatch` may run for it).
    pub fn mark_sbatch_started_many(&mut self, ids: &[i64], now: Millis) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (path, what) = (self.path.clone(), "cannot record the submission attempts");
        let tx = self.conn.transaction().map_err(sqle(&path, what))?;
        let mut marked = Vec::with_capacity(ids.len());
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE generations SET uncertain = 1, submit_tries = submit_tries + 1, updated_at = ?2
                     WHERE id = ?1 AND state = 'submitting'",
                )
                .map_err(sqle(&path, what))?;
            for id in ids {
                marked.push(st.execute(params![id, now]).map_err(sqle(&path, what))? == 1);
            }
        }
        tx.commit().map_err(sqle(&path, what))?;
        Ok(marked)
    }

    /// Undoes [`Ledger::mark_sbatch_started_many`] for records whose `sbatch` never started (a stop or a
    /// failure ended the batch first): no job can exist for them, so no key lookup is needed.
    pub fn unmark_sbatch_started(&mut self, ids: &[i64], now: Millis) -> Result<()> {
        self.each_in_one_transaction(
            ids,
            "UPDATE generations SET uncertain = 0, submit_tries = MAX(submit_tries - 1, 0), updated_at = ?2
                 WHERE id = ?1 AND state = 'submitting'",
            now,
            "cannot record the submissions that did not start",
        )
    }

    fn each_in_one_transaction(
        &mut self,
        ids: &[i64],
        stmt: &str,
        now: Millis,
        what: &'static str,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sqle(&path, what))?;
        {
            let mut st = tx.prepare_cached(stmt).map_err(sqle(&path, what))?;
            for id in ids {
                st.execute(params![id, now]).map_err(sqle(&path, what))?;
            }
        }
        tx.commit().map_err(sqle(&path, what))
    }

    /// Commits the intent to submit a new job, before `sbatch` is called. Returns the new record.
    pub fn insert_intent(&mut self, new: &NewGeneration<'_>, now: Millis) -> Result<Generation> {
        let path = self.path.clone();
        let sql = |what| sqle(&path, what);
        let tx = self
            .conn
            .transaction()
            .map_err(sql("cannot begin a transaction"))?;
        let id = insert_row(&tx, &self.instance, new, now)
            .map_err(intent_err(&path, "cannot record the intent"))?;
        tx.commit().map_err(sql("cannot commit the intent"))?;
        self.get(id).map(|g| g.expect("row just inserted"))
    }

    /// Records generations rebuilt from Slurm's accounting (`recover`), in one transaction; a directory
    /// that has a record already keeps it (as does a key the ledger holds). Returns, per row, whether it
    /// was recorded.
    pub fn insert_recovered(&mut self, rows: &[Recovered], now: Millis) -> Result<Vec<bool>> {
        let (path, what) = (self.path.clone(), "cannot record the recovered jobs");
        let tx = self.conn.transaction().map_err(sqle(&path, what))?;
        let mut done = Vec::with_capacity(rows.len());
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev,
                         dir_ino, state, attempt, submit_key, job_id, job_name, created_at, submitted_at,
                         finished_at, final_state, exit_code, updated_at, seen_at, reason, nodes, elapsed_sec)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17,
                         ?17, ?18, ?19, ?20
                     WHERE NOT EXISTS (SELECT 1 FROM generations WHERE dir = ?1)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(sqle(&path, what))?;
            for r in rows {
                let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
                let n = st
                    .execute(params![
                        r.dir.as_bytes(),
                        i(r.ready.dev),
                        i(r.ready.ino),
                        i(r.ready.size),
                        r.ready.mtime_ns,
                        r.dir_dev_ino.map(|d| i(d.0)),
                        r.dir_dev_ino.map(|d| i(d.1)),
                        r.state.as_str(),
                        r.attempt,
                        r.key,
                        r.job_id,
                        r.job_name,
                        r.submitted_at,
                        r.finished_at,
                        r.final_state,
                        text(&r.exit_code),
                        now,
                        text(&r.detail.reason),
                        text(&r.detail.nodes),
                        r.detail.elapsed_sec.map(i),
                    ])
                    .map_err(sqle(&path, what))?;
                done.push(n == 1);
            }
        }
        tx.commit().map_err(sqle(&path, what))?;
        Ok(done)
    }

    /// One generation by id.
    pub fn get(&self, id: i64) -> Result<Option<Generation>> {
        Ok(self.select("WHERE id = ?1", [id])?.into_iter().next())
    }

    /// Marks that `sbatch` is about to run for `id`: until its answer is recorded, the outcome is uncertain.
    /// Returns false when the record is no longer waiting for a job (an operator cancelled or forgot it
    /// since the cycle read it): then `sbatch` must not run.
    pub fn mark_sbatch_started(&self, id: i64, now: Millis) -> Result<bool> {
        let what = "cannot record the submission attempt";
        let mut st = self
            .conn
            .prepare_cached(
                "UPDATE generations SET uncertain = 1, submit_tries = submit_tries + 1, updated_at = ?2
                 WHERE id = ?1 AND state = 'submitting'",
            )
            .map_err(self.sql(what))?;
        Ok(st.execute(params![id, now]).map_err(self.sql(what))? == 1)
    }

    /// Records the job id of a submission (fresh or adopted after a lookup), with its notices.
    pub fn record_submitted(
        &mut self,
        id: i64,
        job_id: &str,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<()> {
        self.transition(
            "UPDATE generations SET state = 'submitted', job_id = ?2, submitted_at = ?3, uncertain = 0,
                 last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'submitting'",
            params![id, job_id, now],
            (id, notices, now),
            "cannot record the job id",
        )
        .map(|_| ())
    }

    /// One guarded transition of record `id` (`update`, which names the state it must be in) and, only
    /// if it took place, the notices of its event — in one transaction. Returns whether it took place.
    fn transition(
        &mut self,
        update: &str,
        p: impl rusqlite::Params,
        (id, notices, now): (i64, &[NewNotice<'_>], Millis),
        what: &'static str,
    ) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sqle(&path, what))?;
        let changed = tx.execute(update, p).map_err(sqle(&path, what))? > 0;
        if changed {
            insert_notices(&tx, Some(id), notices, now)
                .map_err(sqle(&path, "cannot queue a notice"))?;
        }
        tx.commit().map_err(sqle(&path, what))?;
        Ok(changed)
    }

    /// [`Ledger::record_submitted`] for the answers of one batch of `sbatch` calls, each with its notices,
    /// in one transaction.
    pub fn record_submitted_many(
        &mut self,
        done: &[(i64, &str, Vec<NewNotice<'_>>)],
        now: Millis,
    ) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let (path, what) = (self.path.clone(), "cannot record the job ids");
        let tx = self.conn.transaction().map_err(sqle(&path, what))?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE generations SET state = 'submitted', job_id = ?2, submitted_at = ?3, uncertain = 0,
                         last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'submitting'",
                )
                .map_err(sqle(&path, what))?;
            for (id, job, notices) in done {
                if st
                    .execute(params![id, job, now])
                    .map_err(sqle(&path, what))?
                    > 0
                {
                    insert_notices(&tx, Some(*id), notices, now)
                        .map_err(sqle(&path, "cannot queue a notice"))?;
                }
            }
        }
        tx.commit().map_err(sqle(&path, what))
    }

    /// Records a submission that failed. `certain` = the scheduler said no (no job can exist); otherwise
    /// the record stays uncertain and the key is looked up before the next try.
    pub fn record_submit_failed(
        &self,
        id: i64,
        error: &str,
        certain: bool,
        next_try_at: Millis,
        now: Millis,
    ) -> Result<()> {
        self.exec(
            "UPDATE generations SET last_error = ?2, uncertain = CASE WHEN ?3 THEN 0 ELSE 1 END,
                 next_try_at = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, error, certain, next_try_at, now],
            "cannot record the failed submission",
        )
    }

    /// Makes every waiting intent whose last `sbatch` was refused (not an uncertain one) due at `now`: after
    /// a reload that may have fixed the config they need not sit out their back-off. `updated_at` is left
    /// alone (it still says when the last refusal happened). Returns how many records were moved.
    pub fn make_refused_due(&self, now: Millis) -> Result<usize> {
        let what = "cannot make the refused submissions due";
        let mut st = self
            .conn
            .prepare_cached(
                "UPDATE generations SET next_try_at = ?1
                 WHERE state = 'submitting' AND uncertain = 0 AND last_error IS NOT NULL AND next_try_at > ?1",
            )
            .map_err(self.sql(what))?;
        st.execute(params![now]).map_err(self.sql(what))
    }

    /// Records that a key lookup found no job: the next `sbatch` is safe.
    pub fn record_lookup_empty(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE generations SET uncertain = 0, updated_at = ?2 WHERE id = ?1",
            params![id, now],
            "cannot record the lookup",
        )
    }

    /// Records a final state, with the effects still to do flagged, and (when the policy asks for one) the
    /// next attempt as a new generation record, all in one transaction.
    pub fn record_end(
        &mut self,
        g: &Generation,
        end: &EndRecord<'_>,
        now: Millis,
    ) -> Result<Option<i64>> {
        let path = self.path.clone();
        let sql = |what| sqle(&path, what);
        let tx = self
            .conn
            .transaction()
            .map_err(sql("cannot begin a transaction"))?;
        let d = end.detail;
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let changed = tx.execute(
            "UPDATE generations SET state = ?2, final_state = ?3, exit_code = ?4, delete_pending = ?5,
                 failure_log_pending = ?6, finished_at = ?7, updated_at = ?7, reason = ?8, nodes = ?9,
                 elapsed_sec = ?10 WHERE id = ?1 AND state IN ('submitting', 'submitted')",
            params![g.id, end.state.as_str(), end.final_state, end.exit_code, end.delete_pending,
                end.failure_log_pending, now, text(&d.reason), text(&d.nodes), d.elapsed_sec.map(i)],
        )
        .map_err(sql("cannot record the job's end"))?;
        if changed == 0 {
            // Already ended (an operator's `cancel` recorded it first): one outcome, no second retry.
            return Ok(None);
        }
        insert_notices(&tx, Some(g.id), end.notices, now).map_err(sql("cannot queue a notice"))?;
        let retry = match end.retry_at {
            Some(at) => Some(
                insert_row(
                    &tx,
                    &self.instance,
                    &NewGeneration {
                        not_before: at,
                        ..NewGeneration::next_attempt_of(g, at)
                    },
                    now,
                )
                .map_err(intent_err(&path, "cannot record the retry"))?,
            ),
            None => None,
        };
        tx.commit().map_err(sql("cannot commit the job's end"))?;
        Ok(retry)
    }

    /// Records that a scheduler source showed these jobs at `now` (one statement for all of them).
    pub fn record_seen(&self, ids: &[i64], now: Millis) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        self.conn
            .execute(
                &format!(
                    "UPDATE generations SET seen_at = ?1 WHERE state = 'submitted' AND id IN ({})",
                    list.join(",")
                ),
                [now],
            )
            .map_err(self.sql("cannot record which jobs were seen"))?;
        Ok(())
    }

    /// Records that no source has shown the job for too long: it is followed no more. With its notices.
    pub fn record_lost(&mut self, id: i64, notices: &[NewNotice<'_>], now: Millis) -> Result<()> {
        self.transition(
            "UPDATE generations SET state = 'lost', finished_at = ?2, updated_at = ?2
                 WHERE id = ?1 AND state = 'submitted'",
            params![id, now],
            (id, notices, now),
            "cannot record the lost job",
        )
        .map(|_| ())
    }

    /// Queues notices that belong to no single transition (a blocked submission).
    pub fn queue_notices(
        &mut self,
        gen_id: Option<i64>,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<()> {
        let path = self.path.clone();
        let sql = |what| sqle(&path, what);
        let tx = self
            .conn
            .transaction()
            .map_err(sql("cannot begin a transaction"))?;
        insert_notices(&tx, gen_id, notices, now).map_err(sql("cannot queue a notice"))?;
        tx.commit().map_err(sql("cannot commit a notice"))
    }

    /// Notices due for delivery at `now`, oldest first, at most `limit`.
    pub fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>> {
        self.due_notices_on(&Channel::ALL, now, limit)
    }

    /// [`Ledger::due_notices`] of these channels only (the delivery step asks for the channels whose
    /// worker is idle: a stalled channel's backlog must not crowd the others out of the batch).
    pub fn due_notices_on(
        &self,
        channels: &[Channel],
        now: Millis,
        limit: u32,
    ) -> Result<Vec<Notice>> {
        let what = "cannot read the outbox";
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        // The words are this program's own constants, never input.
        let words: Vec<String> = channels
            .iter()
            .map(|c| format!("'{}'", c.as_str()))
            .collect();
        // A channel kept in order ([`Channel::in_order`]) gives nothing while an earlier notice of it waits
        // for its retry.
        let ordered: Vec<String> = channels
            .iter()
            .filter(|c| c.in_order())
            .map(|c| format!("'{}'", c.as_str()))
            .collect();
        let in_order = if ordered.is_empty() {
            String::new()
        } else {
            format!(
                "AND (channel NOT IN ({0}) OR NOT EXISTS (SELECT 1 FROM outbox AS e
                   WHERE e.channel = outbox.channel AND e.state = 'pending' AND e.id < outbox.id
                   AND e.next_at > ?1))",
                ordered.join(", ")
            )
        };
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, gen_id, event, channel, target, payload, attempts FROM outbox
                 WHERE state = 'pending' AND next_at <= ?1 AND channel IN ({}) {in_order}
                 ORDER BY id LIMIT ?2",
                words.join(", ")
            ))
            .map_err(self.sql(what))?;
        let rows = st
            .query_map(params![now, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, u32>(6)?,
                ))
            })
            .map_err(self.sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, gen_id, event, channel, target, payload, attempts) =
                row.map_err(self.sql(what))?;
            // A word written by a later version is left for that version.
            if let (Some(event), Some(channel)) =
                (EventKind::parse(&event), Channel::parse(&channel))
            {
                out.push(Notice {
                    id,
                    gen_id,
                    event,
                    channel,
                    target,
                    payload,
                    attempts,
                    delivery_id: format!("{}-{id}", self.instance),
                });
            }
        }
        Ok(out)
    }

    /// The earliest time a pending notice is due (for the loop's wake-up).
    pub fn next_notice_at(&self) -> Result<Option<Millis>> {
        self.conn
            .query_row(
                "SELECT MIN(next_at) FROM outbox WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql("cannot read the outbox"))
    }

    /// Records a delivered notice.
    pub fn notice_sent(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?2, last_error = NULL
                 WHERE id = ?1",
            params![id, now],
            "cannot record a delivered notice",
        )
    }

    /// Removes notices delivered before `before` (wall ms), at most `limit` of them (the oldest): the
    /// outbox keeps what still waits, what was given up, and a delivered notice for
    /// [`DELIVERED_KEPT`]. Returns how many went.
    pub fn prune_delivered(&self, before: Millis, limit: u32) -> Result<usize> {
        let what = "cannot prune delivered notices";
        self.conn
            .execute(
                "DELETE FROM outbox WHERE id IN (
                     SELECT id FROM outbox WHERE state = 'sent' AND done_at < ?1 ORDER BY id LIMIT ?2)",
                params![before, limit],
            )
            .map_err(self.sql(what))
    }

    /// Records a failed delivery: tried again at `retry_at`, or given up (`None`).
    pub fn notice_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
        now: Millis,
    ) -> Result<()> {
        self.exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                 state = CASE WHEN ?3 IS NULL THEN 'given_up' ELSE 'pending' END,
                 next_at = COALESCE(?3, next_at), done_at = CASE WHEN ?3 IS NULL THEN ?4 END WHERE id = ?1",
            params![id, error, retry_at, now],
            "cannot record a failed delivery",
        )
    }

    /// How many notices wait for delivery, and how many were given up, for `status`.
    pub fn notice_counts(&self) -> Result<NoticeCounts> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE state = 'pending'), COUNT(*) FILTER (WHERE state = 'sent'),
                     COUNT(*) FILTER (WHERE state = 'given_up') FROM outbox",
                [],
                |r| {
                    Ok(NoticeCounts {
                        pending: u(r.get(0)?),
                        sent: u(r.get(1)?),
                        given_up: u(r.get(2)?),
                    })
                },
            )
            .map_err(self.sql("cannot read the outbox"))
    }

    /// What `status` says of the outbox: the notices still waiting (the oldest's age, the latest delivery
    /// error) and those given up. Through the `outbox_due` index: delivered notices are never counted, so
    /// a long-lived outbox costs nothing here.
    pub fn outbox_health(&self) -> Result<OutboxHealth> {
        let what = "cannot read the outbox";
        let count = |state: &str| -> Result<(u64, Option<Millis>)> {
            self.conn
                .query_row(
                    "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = ?1",
                    [state],
                    |r| Ok((u(r.get(0)?), r.get(1)?)),
                )
                .map_err(self.sql(what))
        };
        let (waiting, oldest_waiting_at) = count("pending")?;
        let (given_up, _) = count("given_up")?;
        let last_error = self
            .conn
            .query_row(
                "SELECT channel, target, last_error FROM outbox
                 WHERE state IN ('pending', 'given_up') AND last_error IS NOT NULL
                 ORDER BY COALESCE(done_at, next_at) DESC LIMIT 1",
                [],
                |r| {
                    let (channel, target, error) = (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    );
                    // The database's error names the database; its target is the owner's address.
                    Ok(if channel == Channel::Database.as_str() {
                        error
                    } else {
                        format!("{channel} to {target}: {error}")
                    })
                },
            )
            .optional()
            .map_err(self.sql(what))?;
        Ok(OutboxHealth {
            waiting,
            oldest_waiting_at,
            given_up,
            last_error,
        })
    }

    /// Records that an operator cancelled `id` (`dirwatcher cancel`): its job was `scancel`led, or it had no
    /// job yet and never will. Final like any failure, with `final_state` saying who ended it and the exit
    /// code of a job ended by SIGTERM (`0:15`, as Slurm and the local runner report it); the failure-log
    /// line is due only when a job existed. Returns false when the record was no longer waiting
    /// (the daemon recorded its end first, or an `sbatch` for it is running right now).
    pub fn record_cancelled(
        &mut self,
        id: i64,
        final_state: &str,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<bool> {
        // Told only when this was the end: a job that had ended already was told of its own end.
        self.transition(
            "UPDATE generations SET state = 'failed', final_state = ?2, uncertain = 0,
                 exit_code = CASE WHEN job_id IS NULL THEN NULL ELSE '0:15' END,
                 failure_log_pending = (job_id IS NOT NULL), finished_at = ?3, updated_at = ?3
             WHERE id = ?1 AND (state = 'submitted' OR (state = 'submitting' AND uncertain = 0))",
            params![id, final_state, now],
            (id, notices, now),
            "cannot record the cancellation",
        )
    }

    /// Removes a queued attempt that was never handed to the scheduler (no `sbatch` ever ran for it, none
    /// may be running): an accidental `retry` undone. Returns false when it is no longer such a record.
    pub fn drop_unsubmitted(&self, id: i64) -> Result<bool> {
        let what = "cannot remove the queued attempt";
        let mut st = self
            .conn
            .prepare_cached(
                "DELETE FROM generations WHERE id = ?1 AND state = 'submitting' AND uncertain = 0
                     AND submit_tries = 0 AND attempt > 1",
            )
            .map_err(self.sql(what))?;
        Ok(st.execute([id]).map_err(self.sql(what))? == 1)
    }

    /// Queues a new attempt for a finished generation (operator `retry`). Returns the new record id.
    pub fn requeue(&mut self, g: &Generation, now: Millis) -> Result<i64> {
        self.insert_intent(&NewGeneration::next_attempt_of(g, now), now)
            .map(|g| g.id)
    }

    /// Clears the failure-log flag after the line was appended.
    pub fn record_failure_logged(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE generations SET failure_log_pending = 0, updated_at = ?2 WHERE id = ?1",
            params![id, now],
            "cannot record the failure-log line",
        )
    }

    /// Records the outcome of a cleanup: deleted, or refused/failed with the reason.
    pub fn record_cleanup(
        &self,
        id: i64,
        deleted: bool,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        self.exec(
            "UPDATE generations SET delete_pending = 0, deleted = ?2, last_error = COALESCE(?3, last_error),
                 updated_at = ?4 WHERE id = ?1",
            params![id, deleted, error, now],
            "cannot record the cleanup",
        )
    }

    /// Generations that need the daemon: intents without job id, and jobs in flight.
    pub fn active(&self) -> Result<Vec<Generation>> {
        self.select("WHERE state IN ('submitting', 'submitted') ORDER BY id", [])
    }

    /// Finished generations whose effects (delete, failure-log line) are still due.
    pub fn pending_effects(&self) -> Result<Vec<Generation>> {
        self.select(
            "WHERE delete_pending = 1 OR failure_log_pending = 1 ORDER BY id",
            [],
        )
    }

    /// Counts by state (of the latest generation per directory, so a retried directory counts once), from
    /// the table the triggers keep: a few rows, whatever the size of the ledger.
    pub fn counts(&self) -> Result<Counts> {
        let mut c = Counts::default();
        let mut st = self
            .conn
            .prepare_cached("SELECT state, n FROM state_counts")
            .map_err(self.sql("cannot read"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(self.sql("cannot read"))?;
        for row in rows {
            let (s, n) = row.map_err(self.sql("cannot read"))?;
            let n = n.max(0) as u64;
            match GenState::parse(&s) {
                Some(GenState::Submitting) => c.submitting = n,
                Some(GenState::Submitted) => c.submitted = n,
                Some(GenState::Completed) => c.completed = n,
                Some(GenState::Failed) => c.failed = n,
                Some(GenState::Lost) => c.lost = n,
                None => {}
            }
        }
        Ok(c)
    }

    /// The most recent failed generations, newest first.
    pub fn recent_failures(&self, limit: u32) -> Result<Vec<Generation>> {
        self.select(
            "WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?1",
            [limit],
        )
    }

    /// The directories whose latest job is lost, oldest first.
    pub fn lost(&self) -> Result<Vec<Generation>> {
        self.select(
            "g WHERE state = 'lost' AND id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) ORDER BY id",
            [],
        )
    }

    /// Removes every record of `dir`; returns how many there were. Nothing is removed (0) while a job of it
    /// is in flight or an `sbatch` for it may be running — checked in the same statement, so a daemon
    /// submitting at that moment cannot slip between check and delete. A queued intent that no `sbatch`
    /// has touched yet may go.
    pub fn forget(&self, dir: &OsStr) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM generations WHERE dir = ?1 AND NOT EXISTS (SELECT 1 FROM generations h
                     WHERE h.dir = ?1 AND (h.state = 'submitted' OR (h.state = 'submitting' AND h.uncertain = 1)))",
                [dir.as_bytes()],
            )
            .map_err(self.sql("cannot forget"))
    }

    /// The latest generation of every directory, by directory name.
    pub fn latest_per_dir(&self) -> Result<Vec<Generation>> {
        self.select(
            "g WHERE id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) ORDER BY dir",
            [],
        )
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params, what: &'static str) -> Result<()> {
        let mut st = self.conn.prepare_cached(sql).map_err(self.sql(what))?;
        st.execute(p).map_err(self.sql(what))?;
        Ok(())
    }

    fn select(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<Generation>> {
        let q = format!("SELECT {COLUMNS} FROM generations {tail}");
        let mut st = self
            .conn
            .prepare_cached(&q)
            .map_err(self.sql("cannot read"))?;
        let rows = st
            .query_map(p, row_to_gen)
            .map_err(self.sql("cannot read"))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql("cannot read"))
    }
}

/// A notice to queue with its event: how it goes out, to whom, and the event document.
#[derive(Debug, Clone)]
pub struct NewNotice<'a> {
    /// What happened.
    pub event: EventKind,
    /// How it goes out.
    pub channel: Channel,
    /// Recipients (e-mail) or URL (webhook); empty for the command.
    pub target: &'a str,
    /// The event document (JSON, schema `dirwatcher.event/1`).
    pub payload: &'a str,
}

/// A queued notice, as the delivery step reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Outbox row id.
    pub id: i64,
    /// The generation it is about (none for a blocked submission).
    pub gen_id: Option<i64>,
    /// What happened.
    pub event: EventKind,
    /// How it goes out.
    pub channel: Channel,
    /// Recipients or URL.
    pub target: String,
    /// The event document.
    pub payload: String,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// The same for every attempt of this notice, different for every other (`<ledger id>-<row id>`): a
    /// receiver that was sent a notice twice (a delivery cut short by a stop) can tell.
    pub delivery_id: String,
}

/// The outbox by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoticeCounts {
    /// Waiting for (another) delivery.
    pub pending: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up after the last attempt.
    pub given_up: u64,
}

/// The undelivered part of the outbox, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxHealth {
    /// Notices waiting for (another) delivery.
    pub waiting: u64,
    /// When the oldest waiting notice was queued.
    pub oldest_waiting_at: Option<Millis>,
    /// Notices given up after their last attempt.
    pub given_up: u64,
    /// The latest delivery error of an undelivered notice: `channel to target: error`.
    pub last_error: Option<String>,
}

/// The latest record of one directory, as the daemon keeps it in memory (a few dozen bytes a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirLatest {
    /// Record id.
    pub id: i64,
    /// Its state.
    pub state: GenState,
    /// The ready-file identity that made it.
    pub ready: ReadyIdentity,
}

impl DirLatest {
    /// The in-memory view of a full record.
    pub fn of(g: &Generation) -> DirLatest {
        DirLatest {
            id: g.id,
            state: g.state,
            ready: g.ready,
        }
    }
}

/// The end of a job, as the daemon records it.
#[derive(Debug, Clone)]
pub struct EndRecord<'a> {
    /// Completed or Failed.
    pub state: GenState,
    /// Scheduler state word.
    pub final_state: &'a str,
    /// `code:signal`.
    pub exit_code: &'a str,
    /// The directory must still be deleted.
    pub delete_pending: bool,
    /// The failure-log line must still be appended.
    pub failure_log_pending: bool,
    /// Queue another attempt, not before this time.
    pub retry_at: Option<Millis>,
    /// Reason, nodes, run time.
    pub detail: &'a JobDetail,
    /// Notices of the end, queued in the same transaction.
    pub notices: &'a [NewNotice<'a>],
}

/// What a new generation record holds before it gets an id and a key.
#[derive(Debug, Clone)]
pub struct NewGeneration<'a> {
    /// Directory name (one component of the root).
    pub dir: &'a OsStr,
    /// The ready-file identity that made this generation.
    pub ready: ReadyIdentity,
    /// `(st_dev, st_ino)` of the directory, checked again before deleting it.
    pub dir_dev_ino: Option<(u64, u64)>,
    /// 1 for the first job of a generation.
    pub attempt: u32,
    /// Job name given to the scheduler.
    pub job_name: &'a str,
    /// Not before this time may `sbatch` run.
    pub not_before: Millis,
}

impl<'a> NewGeneration<'a> {
    /// The next attempt for the same directory generation, due at `not_before`.
    pub fn next_attempt_of(g: &'a Generation, not_before: Millis) -> Self {
        NewGeneration {
            dir: &g.dir,
            ready: g.ready,
            dir_dev_ino: g.dir_dev_ino,
            attempt: g.attempt + 1,
            job_name: &g.job_name,
            not_before,
        }
    }
}

/// A generation rebuilt from Slurm's accounting (`recover`): its directory, its ready-file as it is now, and
/// its latest job.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Directory name.
    pub dir: OsString,
    /// The ready-file now (its job was submitted after it was last changed).
    pub ready: ReadyIdentity,
    /// The directory's identity.
    pub dir_dev_ino: Option<(u64, u64)>,
    /// Completed, failed, or submitted (in flight).
    pub state: GenState,
    /// How many jobs accounting shows for the directory.
    pub attempt: u32,
    /// The job's comment when it is one of our keys (else a key made for it).
    pub key: String,
    /// The job's name.
    pub job_name: String,
    /// Job id.
    pub job_id: String,
    /// Submit time (wall ms).
    pub submitted_at: Millis,
    /// End time, for a finished job.
    pub finished_at: Option<Millis>,
    /// Slurm's final state, for a finished job.
    pub final_state: Option<String>,
    /// `code:signal`.
    pub exit_code: String,
    /// What explains the end.
    pub detail: JobDetail,
}

fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    instance: &str,
    new: &NewGeneration<'_>,
    now: Millis,
) -> rusqlite::Result<i64> {
    let NewGeneration {
        dir,
        ready,
        dir_dev_ino,
        attempt,
        job_name,
        not_before,
    } = *new;
    let placeholder = format!("pending-{now}-{}-{}", std::process::id(), attempt);
    tx.execute(
        "INSERT INTO generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev, dir_ino, state,
             attempt, submit_key, job_name, created_at, next_try_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'submitting', ?8, ?9, ?10, ?11, ?12, ?11)",
        params![
            dir.as_bytes(),
            i(ready.dev),
            i(ready.ino),
            i(ready.size),
            ready.mtime_ns,
            dir_dev_ino.map(|d| i(d.0)),
            dir_dev_ino.map(|d| i(d.1)),
            attempt,
            placeholder,
            job_name,
            now,
            not_before,
        ],
    )?;
    let id = tx.last_insert_rowid();
    // The key is unique across ledgers (instance id) and within one (row id).
    tx.execute(
        "UPDATE generations SET submit_key = ?1 WHERE id = ?2",
        params![format!("dw-{instance}-{id}"), id],
    )?;
    Ok(id)
}

fn insert_notices(
    tx: &rusqlite::Transaction<'_>,
    gen_id: Option<i64>,
    notices: &[NewNotice<'_>],
    now: Millis,
) -> rusqlite::Result<()> {
    for n in notices {
        tx.execute(
            "INSERT INTO outbox (gen_id, event, channel, target, payload, next_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                gen_id,
                n.event.as_str(),
                n.channel.as_str(),
                n.target,
                n.payload,
                now
            ],
        )?;
    }
    Ok(())
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
    move |source| match &source {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
            LedgerError::Foreign(path)
        }
        _ => LedgerError::Sql { path, what, source },
    }
}

/// Like [`sqle`], but the one-intent index refusing a row means a second writer got in.
fn intent_err(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| match &source {
        rusqlite::Error::SqliteFailure(e, Some(m))
            if e.code == rusqlite::ErrorCode::ConstraintViolation
                && m.contains("generations.ready_ino") =>
        {
            LedgerError::DoubleIntent(path)
        }
        _ => LedgerError::Sql { path, what, source },
    }
}

fn sqle(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Sql { path, what, source }
}

fn row_to_gen(r: &Row<'_>) -> rusqlite::Result<Generation> {
    let dir_dev: Option<i64> = r.get(6)?;
    let dir_ino: Option<i64> = r.get(7)?;
    let state: String = r.get(8)?;
    Ok(Generation {
        id: r.get(0)?,
        dir: OsString::from_vec(r.get::<_, Vec<u8>>(1)?),
        ready: ReadyIdentity {
            dev: u(r.get(2)?),
            ino: u(r.get(3)?),
            size: u(r.get(4)?),
            mtime_ns: r.get(5)?,
        },
        dir_dev_ino: dir_dev.zip(dir_ino).map(|(d, n)| (u(d), u(n))),
        state: GenState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                format!("unknown state {state:?}").into(),
            )
        })?,
        attempt: r.get(9)?,
        submit_tries: r.get(10)?,
        key: r.get(11)?,
        job_id: r.get(12)?,
        job_name: r.get(13)?,
        created_at: r.get(14)?,
        submitted_at: r.get(15)?,
        finished_at: r.get(16)?,
        next_try_at: r.get(17)?,
        final_state: r.get(18)?,
        exit_code: r.get(19)?,
        last_error: r.get(20)?,
        uncertain: r.get(21)?,
        delete_pending: r.get(22)?,
        failure_log_pending: r.get(23)?,
        deleted: r.get(24)?,
        updated_at: r.get(25)?,
        seen_at: r.get(26)?,
        detail: JobDetail {
            reason: r.get::<_, Option<String>>(27)?.unwrap_or_default(),
            nodes: r.get::<_, Option<String>>(28)?.unwrap_or_default(),
            elapsed_sec: r.get::<_, Option<i64>>(29)?.map(u),
        },
    })
}

/// The newest schema version recorded, `None` when the ledger has no version table (new, or schema 1).
fn stored_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_table: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if has_table == 0 {
        return Ok(None);
    }
    conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
}

/// Brings the ledger to [`SCHEMA_VERSION`] in one immediate transaction (two processes opening one ledger
/// at once upgrade it once), and returns its id — or `Err(version)` (inside `Ok`) for a ledger newer than
/// this binary, which is left untouched.
fn upgrade(conn: &mut Connection) -> rusqlite::Result<std::result::Result<String, i64>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version = match stored_version(&tx)? {
        Some(v) => v,
        None => {
            let has_generations: i64 = tx.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'generations'",
                [],
                |r| r.get(0),
            )?;
            if has_generations > 0 { 1 } else { 0 }
        }
    };
    if version > SCHEMA_VERSION {
        return Ok(Err(version));
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    INTEGER PRIMARY KEY,
                 applied_at INTEGER NOT NULL
             )",
        )?;
        if version == 1 {
            add_columns(&tx)?;
        }
        let has_counts: i64 = tx.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'state_counts'",
            [],
            |r| r.get(0),
        )?;
        if has_counts == 0 {
            tx.execute_batch(COUNTS_SCHEMA)?;
        }
        // Duplicates a schema-1 ledger may hold (two daemons got in before this index existed) stay; every
        // row from now on is checked.
        let floor: i64 = tx.query_row(
            "SELECT COALESCE(MAX(g.id), 0) FROM generations g WHERE EXISTS (
                 SELECT 1 FROM generations h WHERE h.dir = g.dir AND h.id <> g.id AND h.attempt = g.attempt
                   AND h.ready_dev = g.ready_dev AND h.ready_ino = g.ready_ino
                   AND h.ready_size = g.ready_size AND h.ready_mtime_ns = g.ready_mtime_ns)",
            [],
            |r| r.get(0),
        )?;
        tx.execute_batch(&ONE_INTENT.replace("{floor}", &floor.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for v in (version + 1)..=SCHEMA_VERSION {
            tx.execute(
                "INSERT OR IGNORE INTO schema_version(version, applied_at) VALUES (?1, ?2)",
                params![v, now],
            )?;
        }
    }
    tx.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('instance', ?1)",
        [fresh_instance_id()],
    )?;
    let instance: String =
        tx.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
            r.get(0)
        })?;
    tx.commit()?;
    Ok(Ok(instance))
}

/// Adds the columns a schema-1 ledger may lack (the first release had none of them).
fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut have = Vec::new();
    {
        let mut st = conn.prepare("PRAGMA table_info(generations)")?;
        let rows = st.query_map([], |r| r.get::<_, String>(1))?;
        for r in rows {
            have.push(r?);
        }
    }
    for (col, def) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == col) {
            conn.execute_batch(&format!("ALTER TABLE generations ADD COLUMN {col} {def}"))?;
        }
    }
    Ok(())
}

/// A short id that differs between ledgers, so a key never matches a job submitted for an older ledger.
fn fresh_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
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
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn intent_then_submission_then_end() {
        let t = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&t.path().join("state.db")).unwrap();
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
    }

    /// The counts as the first release computed them: a walk over the whole ledger.
    fn counted_by_walking(l: &Ledger) -> Vec<(String, i64)> {
        let mut st = l
            .conn
            .prepare(
                "SELECT state, COUNT(*) FROM generations g
                 WHERE id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) GROUP BY state ORDER BY state",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
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
            let t = tempfile::tempdir().unwrap();
            let mut l = Ledger::open(&t.path().join("s.db")).unwrap();
            for (n, (op, d)) in ops.into_iter().enumerate() {
                let dir = OsString::from(format!("d{d}"));
                let now = n as i64;
                let latest = l.latest_for_dir(&dir).unwrap();
                match (op, latest) {
                    // Each intent is for a new generation (a new ready-file): one generation never has two.
                    (0, _) => { l.insert_intent(&new(&dir, ident(n as u64 * 10 + u64::from(d)), None, now), now).unwrap(); }
                    (1, Some(g)) => l.record_submitted(g.id, "7", &[], now).unwrap(),
                    (2 | 3, Some(g)) if g.state.is_active() => {
                        let end = EndRecord {
                            state: if op == 2 { GenState::Completed } else { GenState::Failed },
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
                    (5, Some(g)) if !g.state.is_active() => { l.requeue(&g, now).unwrap(); }
                    (6, _) => { l.forget(&dir).unwrap(); }
                    _ => {}
                }
                prop_assert_eq!(counted_by_triggers(&l), counted_by_walking(&l));
            }
        }
    }

    #[test]
    fn delivered_notices_are_pruned_after_their_time_and_nothing_else_is() {
        let t = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&t.path().join("s.db")).unwrap();
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

    /// The database's rows are written in the order they happened: while its oldest notice waits for a
    /// retry, the later ones are not due; other channels go on as before.
    #[test]
    fn a_database_notice_waits_behind_an_earlier_one_and_no_other_channel_does() {
        let t = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&t.path().join("s.db")).unwrap();
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
        let kinds: Vec<(Channel, EventKind)> = due.iter().map(|n| (n.channel, n.event)).collect();
        assert_eq!(
            kinds,
            [(Channel::Command, EventKind::Completed)],
            "the database's end waits behind its submission; the hook's end does not"
        );
        let due = l.due_notices(1_000, 10).unwrap();
        let kinds: Vec<(Channel, EventKind)> = due.iter().map(|n| (n.channel, n.event)).collect();
        assert_eq!(
            kinds[..2],
            [
                (Channel::Database, EventKind::Submitted),
                (Channel::Command, EventKind::Submitted)
            ]
        );
        assert!(kinds.contains(&(Channel::Database, EventKind::Completed)));
    }

    #[test]
    fn one_generation_never_holds_two_intents_for_one_attempt() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.db");
        let mut a = Ledger::open(&p).unwrap();
        // A second writer that got past every lock: the database itself refuses the double intent.
        let mut b = Ledger::open(&p).unwrap();
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

    #[test]
    fn a_ledger_newer_than_this_binary_is_refused_untouched() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.db");
        Ledger::open(&p)
            .unwrap()
            .conn
            .execute(
                "INSERT INTO schema_version(version, applied_at) VALUES (?1, 0)",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        let e = Ledger::open(&p).unwrap_err();
        assert!(
            matches!(e, LedgerError::Newer { version, .. } if version == SCHEMA_VERSION + 1),
            "{e}"
        );
        assert!(
            e.to_string().contains("newer than this dirwatcher knows"),
            "{e}"
        );
        assert!(Ledger::open_read_only(&p).is_err());
    }

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
            l.conn
                .execute_batch(
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
            let mut st = l.conn.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
            st.query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
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

    #[test]
    fn processes_creating_the_ledger_at_once_all_open_it_with_one_instance() {
        for _ in 0..20 {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("state.db");
            let opened: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4).map(|_| s.spawn(|| Ledger::open(&p))).collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let ids: Vec<String> = opened
                .into_iter()
                .map(|l| l.expect("concurrent open failed").instance)
                .collect();
            assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        }
    }

    #[test]
    fn state_survives_reopen_and_keys_stay_unique() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.db");
        let k1 = {
            let mut l = Ledger::open(&p).unwrap();
            l.insert_intent(&new("a".as_ref(), ident(1), None, 1), 1)
                .unwrap()
                .key
        };
        let mut l = Ledger::open(&p).unwrap();
        let k2 = l
            .insert_intent(&new("b".as_ref(), ident(2), None, 2), 2)
            .unwrap()
            .key;
        assert_ne!(k1, k2);
        assert_eq!(l.active().unwrap().len(), 2);
        let other = Ledger::open(&t.path().join("other.db")).unwrap();
        assert_ne!(
            other.instance, l.instance,
            "a new ledger must not reuse keys of an old one"
        );
    }

    #[test]
    fn keys_are_never_reused_after_forget() {
        let t = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&t.path().join("s.db")).unwrap();
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
    }

    #[test]
    fn a_ledger_of_the_first_schema_opens_and_gains_the_new_columns() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("old.db");
        {
            let c = Connection::open(&p).unwrap();
            // The first release's table, without `seen_at`, the end's details and the outbox.
            let added = ",\n    seen_at             INTEGER,\n    reason              TEXT,\n    nodes               TEXT,\n    elapsed_sec         INTEGER\n";
            assert!(SCHEMA.contains(added));
            let old = SCHEMA.replace(added, "\n");
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
            let t = tempfile::tempdir().unwrap();
            let mut l = Ledger::open(&t.path().join("s.db")).unwrap();
            let dir = OsString::from_vec(name);
            let id = ReadyIdentity { dev: u64::MAX, ino, size, mtime_ns: mtime };
            let g = l.insert_intent(&new(&dir, id, Some((u64::MAX, ino)), 5), 5).unwrap();
            let back = l.latest_for_dir(&dir).unwrap().unwrap();
            prop_assert_eq!(&back, &g);
            prop_assert_eq!(back.dir, dir);
            prop_assert_eq!(back.ready, id);
        }
    }
}
