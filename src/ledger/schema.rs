//! The ledger's schema: its tables, indexes and triggers, the version it is at, and the one upgrade path
//! from any older ledger to [`SCHEMA_VERSION`].
//!
//! Must never: touch a ledger newer than this binary, or change a table in a way an older row cannot
//! follow (columns are only ever added, with empty values).

use rusqlite::{Connection, params};

pub(super) const SCHEMA: &str = "
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
    elapsed_sec         INTEGER,
    array_key           TEXT,
    array_task          INTEGER,
    array_name          TEXT
);
CREATE INDEX IF NOT EXISTS generations_dir ON generations(dir, id);
CREATE INDEX IF NOT EXISTS generations_state ON generations(state);
CREATE INDEX IF NOT EXISTS generations_dir_ident ON generations(dir_ino, dir_dev);
-- An operator's `cancel` in progress: committed before the job is signalled, so whoever sees the end first
-- (the daemon, or the command itself) records it as the operator's cancel. One row per generation, kept.
CREATE TABLE IF NOT EXISTS cancel_requests (
    gen_id      INTEGER PRIMARY KEY,
    operator    TEXT    NOT NULL,
    at          INTEGER NOT NULL
);

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
/// (`generations_one_intent`); 3: `cancel_requests` (an operator's cancel committed before the job is
/// signalled); 4: `array_key`, `array_task` and `array_name` (a directory submitted as one task of a job
/// array).
pub const SCHEMA_VERSION: i64 = 4;

/// No generation (directory and ready-file identity) holds two intents for one attempt: a second writer
/// that got past every lock is refused by the database. `{floor}`: rows up to this id (duplicates a
/// ledger of schema 1 may hold from before) are not checked.
const ONE_INTENT: &str = "CREATE UNIQUE INDEX IF NOT EXISTS generations_one_intent
    ON generations(dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, attempt) WHERE id > {floor}";

/// Columns added after the first release, with their definition: a ledger written by an older dirwatcher
/// gets them on open (`ALTER TABLE … ADD COLUMN`; the new values start empty).
const ADDED_COLUMNS: [(&str, &str); 7] = [
    // When a scheduler source last showed the job (for `lost`).
    ("seen_at", "INTEGER"),
    // What explains a job's end (failure log, notices).
    ("reason", "TEXT"),
    ("nodes", "TEXT"),
    ("elapsed_sec", "INTEGER"),
    // Schema 4: the job array a directory went in (its key and job name) and its task index there.
    ("array_key", "TEXT"),
    ("array_task", "INTEGER"),
    ("array_name", "TEXT"),
];

/// The newest schema version recorded, `None` when the ledger has no version table (new, or schema 1).
pub(super) fn stored_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
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
pub(super) fn upgrade(conn: &mut Connection) -> rusqlite::Result<std::result::Result<String, i64>> {
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
        if (1..SCHEMA_VERSION).contains(&version) {
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

/// Adds the columns an older ledger lacks (the first release had none of them; before 4, no array's).
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
pub(super) fn fresh_instance_id() -> String {
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
