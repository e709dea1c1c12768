//! The ledger on a MariaDB (or MySQL) server: `behavior.ledger: mysql://USER@HOST:PORT/DATABASE`, for a
//! ledger that outlives one login node and that two of them can share.
//!
//! Owns: the connection behind the ledger's seam ([`Maria`]:
//! reconnects when the server went away, never inside a transaction), and the schema in MariaDB's own
//! words (the same tables, columns and guards as SQLite's `schema.rs`; the counts kept by triggers; one
//! intent per generation and attempt by a unique index). Must never: put the password in a message, a
//! log or the process list, or create anything but its own tables in the database it is given.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Params, Value};

use super::sql::{Arg, Backend, DbError, Row, Sql, Val, for_maria};

pub use crate::config::MariaTarget;

/// How the driver connects to `t`.
fn opts(t: &MariaTarget, timeout: Duration) -> Opts {
    let mut b = OptsBuilder::new()
        .ip_or_hostname(Some(t.host.clone()))
        .tcp_port(t.port)
        .user(Some(t.user.clone()))
        .pass(t.password.clone())
        .db_name(Some(t.database.clone()))
        .tcp_connect_timeout(Some(timeout))
        .read_timeout(Some(timeout))
        .write_timeout(Some(timeout))
        // TCP to the host as configured, never the server's socket file.
        .prefer_socket(false)
        // An UPDATE counts the rows it matched, as SQLite does (the guards compare with 1).
        .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS)
        .init(vec![
            // The dialect both databases speak: `||`, "quoted" names; no silent truncation.
            "SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
            // Each statement sees what was committed before it (the guards are in the statements).
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            // A table lock (a schema change waiting for transactions) is an error after 20 s, not a
            // year's wait: well within the statement timeout, so the error says what it was.
            "SET SESSION lock_wait_timeout = 20",
        ]);
    if t.tls {
        b = b.ssl_opts(Some(mysql::SslOpts::default()));
    }
    b.into()
}

/// How long the server lets a transaction of the ledger sit idle before it ends the connection.
pub const IDLE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one statement may take before the server counts as gone.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the server behind the ledger's seam.
#[derive(Debug)]
pub struct Maria {
    target: MariaTarget,
    conn: Option<Conn>,
    /// Inside a transaction: a lost connection is an error, never a silent reconnect.
    in_tx: bool,
    last_id: i64,
    /// The changes this connection made itself (see [`Sql::data_version`]).
    own_changes: i64,
}

impl Maria {
    /// Connects to `target`.
    pub fn connect(target: &MariaTarget) -> Result<Maria, DbError> {
        let mut m = Maria {
            target: target.clone(),
            conn: None,
            in_tx: false,
            last_id: 0,
            own_changes: 0,
        };
        m.conn()?;
        Ok(m)
    }

    fn conn(&mut self) -> Result<&mut Conn, DbError> {
        if self.conn.is_none() {
            if self.in_tx {
                return Err(DbError::Type(
                    "the connection to the server was lost inside a transaction".into(),
                ));
            }
            let mut c = Conn::new(opts(&self.target, STATEMENT_TIMEOUT))?;
            // A transaction left open by a process that stopped mid-way (SIGSTOP, a frozen VM) would hold
            // the lease's row until the connection times out (hours): the server ends it after a few
            // seconds instead, so a standby can take over. No transaction of the ledger waits between
            // its statements (none spans a child process). MySQL has no such setting: there a paused
            // leader delays a takeover until it runs again or its connection is gone.
            let _ = c.query_drop(format!(
                "SET SESSION idle_transaction_timeout = {}",
                IDLE_TRANSACTION_TIMEOUT.as_secs()
            ));
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs `f` on the connection; an error that means the connection is gone drops it.
    fn with<T>(&mut self, f: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> Result<T, DbError> {
        let r = f(self.conn()?).map_err(DbError::from);
        if let Err(e) = &r
            && e.is_connection()
        {
            self.conn = None;
        }
        r
    }
}

fn value(a: &Arg) -> Value {
    match a {
        Arg::Null => Value::NULL,
        Arg::Int(n) => Value::Int(*n),
        Arg::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
        Arg::Blob(b) => Value::Bytes(b.clone()),
    }
}

fn val(v: Value) -> Val {
    match v {
        Value::NULL => Val::Null,
        Value::Int(n) => Val::Int(n),
        Value::UInt(n) => Val::Int(n as i64),
        Value::Float(x) => Val::Int(x as i64),
        Value::Double(x) => Val::Int(x as i64),
        Value::Bytes(b) => Val::Bytes(b),
        other => Val::Bytes(other.as_sql(true).into_bytes()),
    }
}

fn params(args: Vec<Arg>) -> Params {
    if args.is_empty() {
        Params::Empty
    } else {
        Params::Positional(args.iter().map(value).collect())
    }
}

impl Sql for Maria {
    fn backend(&self) -> Backend {
        Backend::Maria
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        if !self.in_tx {
            // A write on its own gets its own transaction, so it moves the change counter with it.
            self.begin()?;
            let r = self.exec(sql, args).and_then(|n| self.commit().map(|()| n));
            if r.is_err() {
                let _ = self.rollback();
            }
            return r;
        }
        let (sql, args) = for_maria(sql, args)?;
        let (n, id) = self.with(|c| {
            c.exec_drop(&sql, params(args))?;
            Ok((c.affected_rows(), c.last_insert_id()))
        })?;
        if id != 0 {
            self.last_id = id as i64;
        }
        Ok(n)
    }

    fn exec_uncounted(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        if self.in_tx {
            return self.exec(sql, args);
        }
        // Autocommit: one statement, committed by the server, the change counter left alone.
        let (sql, args) = for_maria(sql, args)?;
        self.with(|c| {
            c.exec_drop(&sql, params(args))?;
            Ok(c.affected_rows())
        })
    }

    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        let (sql, args) = for_maria(sql, args)?;
        let rows: Vec<mysql::Row> = self.with(|c| c.exec(&sql, params(args)))?;
        Ok(rows
            .into_iter()
            .map(|r| Row(r.unwrap().into_iter().map(val).collect()))
            .collect())
    }

    fn last_insert_id(&mut self) -> i64 {
        self.last_id
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.with(|c| c.query_drop("START TRANSACTION"))?;
        self.in_tx = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        // Every committed write of this connection moves the change counter by one: a transaction that
        // changed nothing moves it too (cheap, and the count stays exact).
        let r = self
            .with(|c| c.query_drop("UPDATE changes SET n = n + 1 WHERE id = 1"))
            .and_then(|()| self.with(|c| c.query_drop("COMMIT")));
        self.in_tx = false;
        if r.is_ok() {
            self.own_changes += 1;
        }
        r
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.in_tx = false;
        match self.conn.as_mut() {
            Some(c) => c.query_drop("ROLLBACK").map_err(DbError::from),
            // The server rolls back a transaction whose connection is gone.
            None => Ok(()),
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.with(|c| c.query_drop(sql))
    }

    fn data_version(&mut self) -> Result<i64, DbError> {
        // Every write runs in a transaction that moves the counter ([`Maria::commit`]): what it moved
        // beyond this connection's own commits, others did.
        let n: Option<i64> = self.with(|c| c.query_first("SELECT n FROM changes WHERE id = 1"))?;
        Ok(n.unwrap_or(0) - self.own_changes)
    }
}

/// The tables, in MariaDB's words: the same columns and meanings as SQLite's (`schema.rs`). Directory
/// names are bytes (`VARBINARY(255)`: one component, as the kernel allows); times are milliseconds.
const SCHEMA: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS meta (
        "key"  VARCHAR(64) PRIMARY KEY,
        value  VARBINARY(4096) NOT NULL
    ) ENGINE=InnoDB"#,
    r#"CREATE TABLE IF NOT EXISTS generations (
        id                  BIGINT PRIMARY KEY AUTO_INCREMENT,
        dir                 VARBINARY(255) NOT NULL,
        ready_dev           BIGINT NOT NULL,
        ready_ino           BIGINT NOT NULL,
        ready_size          BIGINT NOT NULL,
        ready_mtime_ns      BIGINT NOT NULL,
        dir_dev             BIGINT,
        dir_ino             BIGINT,
        state               VARCHAR(16) NOT NULL,
        attempt             INT NOT NULL DEFAULT 1,
        submit_tries        INT NOT NULL DEFAULT 0,
        submit_key          VARCHAR(190) NOT NULL,
        job_id              VARCHAR(190),
        job_name            TEXT NOT NULL,
        created_at          BIGINT NOT NULL,
        submitted_at        BIGINT,
        finished_at         BIGINT,
        next_try_at         BIGINT NOT NULL DEFAULT 0,
        final_state         TEXT,
        exit_code           VARCHAR(64),
        last_error          TEXT,
        uncertain           TINYINT NOT NULL DEFAULT 0,
        delete_pending      TINYINT NOT NULL DEFAULT 0,
        failure_log_pending TINYINT NOT NULL DEFAULT 0,
        deleted             TINYINT NOT NULL DEFAULT 0,
        updated_at          BIGINT NOT NULL,
        seen_at             BIGINT,
        reason              TEXT,
        nodes               TEXT,
        elapsed_sec         BIGINT,
        array_key           VARCHAR(190),
        array_task          BIGINT,
        array_name          TEXT,
        UNIQUE KEY generations_key (submit_key),
        KEY generations_dir (dir, id),
        KEY generations_state (state),
        KEY generations_dir_ident (dir_ino, dir_dev),
        KEY generations_effects (delete_pending, failure_log_pending),
        KEY generations_finished (state, finished_at),
        UNIQUE KEY generations_one_intent (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, attempt)
    ) ENGINE=InnoDB"#,
    // Schema 4 on a ledger created before it (a no-op on one created with the columns above).
    "ALTER TABLE generations ADD COLUMN IF NOT EXISTS array_key VARCHAR(190)",
    "ALTER TABLE generations ADD COLUMN IF NOT EXISTS array_task BIGINT",
    "ALTER TABLE generations ADD COLUMN IF NOT EXISTS array_name TEXT",
    r#"CREATE TABLE IF NOT EXISTS cancel_requests (
        gen_id   BIGINT PRIMARY KEY,
        operator VARCHAR(255) NOT NULL,
        at       BIGINT NOT NULL
    ) ENGINE=InnoDB"#,
    r#"CREATE TABLE IF NOT EXISTS outbox (
        id          BIGINT PRIMARY KEY AUTO_INCREMENT,
        gen_id      BIGINT,
        event       VARCHAR(32) NOT NULL,
        channel     VARCHAR(32) NOT NULL,
        target      TEXT NOT NULL,
        payload     MEDIUMTEXT NOT NULL,
        state       VARCHAR(16) NOT NULL DEFAULT 'pending',
        attempts    INT NOT NULL DEFAULT 0,
        next_at     BIGINT NOT NULL,
        created_at  BIGINT NOT NULL,
        done_at     BIGINT,
        last_error  TEXT,
        KEY outbox_due (state, next_at),
        KEY outbox_channel (channel, state, id)
    ) ENGINE=InnoDB"#,
    r#"CREATE TABLE IF NOT EXISTS state_counts (
        state VARCHAR(16) PRIMARY KEY,
        n     BIGINT NOT NULL
    ) ENGINE=InnoDB"#,
    // Moved by every committed write (`Maria::commit`): how another writer's change is noticed.
    r#"CREATE TABLE IF NOT EXISTS changes (
        id TINYINT PRIMARY KEY,
        n  BIGINT NOT NULL
    ) ENGINE=InnoDB"#,
    "INSERT IGNORE INTO changes(id, n) VALUES (1, 0)",
    r#"CREATE TABLE IF NOT EXISTS schema_version (
        version    INT PRIMARY KEY,
        applied_at BIGINT NOT NULL
    ) ENGINE=InnoDB"#,
    // The counts of the latest record of every directory, kept in the transaction of every change, as
    // SQLite's triggers keep them.
    r#"CREATE TRIGGER IF NOT EXISTS counts_insert AFTER INSERT ON generations FOR EACH ROW BEGIN
        UPDATE state_counts SET n = n - 1 WHERE state =
            (SELECT state FROM generations WHERE dir = NEW.dir AND id < NEW.id ORDER BY id DESC LIMIT 1);
        INSERT INTO state_counts(state, n) VALUES (NEW.state, 1) ON DUPLICATE KEY UPDATE n = n + 1;
    END"#,
    r#"CREATE TRIGGER IF NOT EXISTS counts_update AFTER UPDATE ON generations FOR EACH ROW BEGIN
        IF OLD.state <> NEW.state AND NOT EXISTS (SELECT 1 FROM generations WHERE dir = NEW.dir AND id > NEW.id)
        THEN
            UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO state_counts(state, n) VALUES (NEW.state, 1) ON DUPLICATE KEY UPDATE n = n + 1;
        END IF;
    END"#,
    r#"CREATE TRIGGER IF NOT EXISTS counts_delete AFTER DELETE ON generations FOR EACH ROW BEGIN
        IF NOT EXISTS (SELECT 1 FROM generations WHERE dir = OLD.dir AND id > OLD.id) THEN
            UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO state_counts(state, n)
                SELECT state, 1 FROM generations WHERE dir = OLD.dir AND id < OLD.id ORDER BY id DESC LIMIT 1
                ON DUPLICATE KEY UPDATE n = n + 1;
        END IF;
    END"#,
];

/// Whether the database holds no ledger yet (dirwatcher never created its tables there): what the start's
/// check of a fresh ledger over a populated root asks, before anything is created. A ledger whose tables
/// exist is one, records or not — as an SQLite file that exists is (a daemon that started and stopped
/// before its first intent left a ledger, not a loss).
pub fn is_fresh(db: &mut Maria) -> Result<bool, DbError> {
    Ok(!has_table(db, "generations")?)
}

/// Whether the ledger's database has the table `name`.
fn has_table(db: &mut Maria, name: &str) -> Result<bool, DbError> {
    let tables = db.query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()
             AND table_name = ?1",
        &[Arg::Text(name.into())],
    )?;
    Ok(tables.first().map(|r| r.get::<i64>(0)).transpose()? == Some(1))
}

/// The newest schema version recorded, `None` when the database has no version table.
pub fn stored_version(db: &mut Maria) -> Result<Option<i64>, DbError> {
    if !has_table(db, "schema_version")? {
        return Ok(None);
    }
    let v = db.query("SELECT MAX(version) FROM schema_version", &[])?;
    Ok(v.first()
        .map(|r| r.get::<Option<i64>>(0))
        .transpose()?
        .flatten())
}

/// Creates the tables that are missing (each statement can run twice: two daemons starting at once both
/// get the same schema) and records [`super::SCHEMA_VERSION`]; returns the ledger's id — or
/// `Err(version)` (inside `Ok`) for a ledger newer than this binary, left untouched.
pub fn upgrade(db: &mut Maria, fresh_id: String) -> Result<Result<String, i64>, DbError> {
    let stored = stored_version(db)?;
    if let Some(v) = stored
        && v > super::SCHEMA_VERSION
    {
        return Ok(Err(v));
    }
    if stored == Some(super::SCHEMA_VERSION) {
        // Nothing to create. No DDL either: `CREATE TRIGGER` waits for every transaction on the table to
        // end while the statements of the active daemon queue behind it — a standby taking over, or an
        // operator's command, must not stall the active daemon.
        if let Some(id) = recorded_instance(db)? {
            return Ok(Ok(id));
        }
        // Another process creating this ledger right now has recorded the version but not yet the id:
        // the first id recorded is the ledger's, for both (below).
    } else {
        for s in SCHEMA.iter().chain(&super::lease::SCHEMA) {
            db.batch(s)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        db.exec(
            "INSERT OR IGNORE INTO schema_version(version, applied_at) VALUES (?1, ?2)",
            &[Arg::Int(super::SCHEMA_VERSION), Arg::Int(now)],
        )?;
    }
    db.exec(
        r#"INSERT OR IGNORE INTO meta("key", value) VALUES ('instance', ?1)"#,
        &[Arg::Text(fresh_id)],
    )?;
    instance(db).map(Ok)
}

/// The ledger's id, as recorded.
pub fn instance(db: &mut Maria) -> Result<String, DbError> {
    recorded_instance(db)?.ok_or_else(|| DbError::Type("the ledger has no id".into()))
}

/// The ledger's id, `None` while none is recorded.
fn recorded_instance(db: &mut Maria) -> Result<Option<String>, DbError> {
    db.query(r#"SELECT value FROM meta WHERE "key" = 'instance'"#, &[])?
        .first()
        .map(|r| r.get(0))
        .transpose()
}
