//! The Python original's web-app database bridge (`db:`): every submission and end of a job is upserted
//! into the web application's `jobs` table exactly as the original did — the same columns, the same
//! `games`/`users` look-ups, the same status words — and, at start, the table's active rows are read once
//! so that any the ledger does not know can be reported.
//!
//! The rows are written through the outbox (channel `database`): in the order they were queued, each
//! retried until the database takes it, so a database that is down delays them and loses none. An upsert
//! finds the row by job id first and by directory second, so delivering a notice twice (a stop during a
//! delivery) updates the row it wrote the first time.
//!
//! Owns: the connection (one, kept by the delivery thread between notices, dropped on any error) and the
//! SQL. Must never: build SQL from a value (every value is a parameter), show the password, or wait longer
//! than `notify.timeout_sec` for one round trip.

use std::cell::RefCell;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, TxOpts};

use crate::config::DbConfig;
use crate::engine::notice::{Event, EventKind};

/// Why a row could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("database {target}: {error}")]
pub struct BridgeError {
    /// `user@host:port/name`.
    target: String,
    /// The client's or the server's words.
    error: String,
}

thread_local! {
    /// The delivery thread's connection, with the config it was opened for.
    static CONN: RefCell<Option<(DbConfig, Conn)>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's connection to `db` (opened when there is none, or the config changed); any
/// error drops the connection, so the next notice opens a new one.
fn with_conn<T>(
    db: &DbConfig,
    timeout: Duration,
    f: impl FnOnce(&mut Conn) -> Result<T, mysql::Error>,
) -> Result<T, BridgeError> {
    let fail = |e: mysql::Error| BridgeError {
        target: db.describe(),
        error: e.to_string(),
    };
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(c, _)| c != db) {
            *slot = None;
            let opts = OptsBuilder::new()
                .ip_or_hostname(Some(db.host.clone()))
                .tcp_port(db.port)
                .user(Some(db.user.clone()))
                .pass(db.pass.as_ref().map(|p| p.expose().to_string()))
                .db_name(Some(db.name.clone()))
                .tcp_connect_timeout(Some(timeout))
                .read_timeout(Some(timeout))
                .write_timeout(Some(timeout))
                // TCP to the host as configured (the crate would move to the server's socket file when
                // the host is local, a file the service may not be allowed to reach).
                .prefer_socket(false);
            let conn = Conn::new(opts).map_err(fail)?;
            *slot = Some((db.clone(), conn));
        }
        let (_, conn) = slot.as_mut().expect("opened above");
        let r = f(conn);
        if r.is_err() {
            *slot = None;
        }
        r.map_err(fail)
    })
}

/// The status word the original writes for `event`, and whether the job has ended (`finished_at`).
pub fn status_of(event: &Event) -> (String, bool) {
    match event.event {
        EventKind::Submitted => ("SUBMITTED".into(), false),
        EventKind::Lost => ("LOST".into(), true),
        kind => {
            let word = event
                .state
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| kind.as_str().to_ascii_uppercase());
            (word, true)
        }
    }
}

/// `rfc3339` (UTC, as the event carries it) as the original writes times: `%Y-%m-%d %H:%M:%S` in the
/// daemon's local time zone.
pub fn local_time(rfc3339: &str) -> String {
    let secs = humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: `localtime_r` writes only into `tm`, which lives on this stack frame.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return rfc3339.replace('T', " ").trim_end_matches('Z').to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Upserts `event` into `jobs` as the original's `upsert_job_db` did; `owner` is the address of the
/// directory's `.dirwatch_meta.json` (empty: none), looked up in `users` when `games` does not name the
/// directory.
pub fn upsert(
    db: &DbConfig,
    event: &Event,
    owner: &str,
    timeout: Duration,
) -> Result<(), BridgeError> {
    let (status, finished) = status_of(event);
    let when = local_time(&event.time);
    let dir = event.dir.as_str();
    let job_id = event.job_id.as_deref();
    let owner = (!owner.is_empty()).then_some(owner);
    with_conn(db, timeout, |conn| {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        // The original's `_lookup_ids_by_dir`: a missing table or column is no match (it caught every
        // error of these look-ups), a lost connection is a failed delivery.
        let mut user_id: Option<i64> = None;
        let mut game_id: Option<i64> = None;
        let mut email: Option<&str> = None;
        match tx.exec_first::<(i64, Option<i64>), _, _>(
            "SELECT id, user_id FROM games WHERE dir_path=? ORDER BY id DESC LIMIT 1",
            (dir,),
        ) {
            Ok(Some((g, u))) => {
                game_id = Some(g);
                user_id = u;
            }
            Ok(None) | Err(mysql::Error::MySqlError(_)) => {}
            Err(e) => return Err(e),
        }
        if user_id.is_none() {
            email = owner;
            if let Some(e) = owner {
                match tx.exec_first::<i64, _, _>("SELECT id FROM users WHERE email=?", (e,)) {
                    Ok(u) => user_id = u,
                    Err(mysql::Error::MySqlError(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut row: Option<i64> = None;
        if let Some(j) = job_id {
            row = tx.exec_first("SELECT id FROM jobs WHERE slurm_job_id=?", (j,))?;
        }
        if row.is_none() {
            row = tx.exec_first(
                "SELECT id FROM jobs WHERE dir_path=? ORDER BY id DESC LIMIT 1",
                (dir,),
            )?;
        }
        match row {
            None => tx.exec_drop(
                "INSERT INTO jobs(user_id, game_id, dir_path, slurm_job_id, status, created_at, updated_at, \
                 user_email) VALUES(?,?,?,?,?,?,?,?)",
                (user_id, game_id, dir, job_id, &status, &when, &when, email),
            )?,
            Some(id) if finished => tx.exec_drop(
                "UPDATE jobs SET status=?, updated_at=?, slurm_job_id=COALESCE(?, slurm_job_id), \
                 finished_at=? WHERE id=?",
                (&status, &when, job_id, &when, id),
            )?,
            Some(id) => tx.exec_drop(
                "UPDATE jobs SET status=?, updated_at=?, slurm_job_id=COALESCE(?, slurm_job_id) WHERE id=?",
                (&status, &when, job_id, id),
            )?,
        }
        tx.commit()
    })
}

/// A row of `jobs` the web application shows as active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRow {
    /// `slurm_job_id` (may be empty).
    pub job_id: Option<String>,
    /// `dir_path`.
    pub dir: String,
    /// `status`.
    pub status: String,
}

/// What [`active_rows`] read: the rows, or why not.
pub type ActiveRead = Result<Vec<ActiveRow>, BridgeError>;

/// The original's `sync_active_from_db`: the rows whose status is `SUBMITTED`, `RUNNING` or `PENDING`.
pub fn active_rows(db: &DbConfig, timeout: Duration) -> Result<Vec<ActiveRow>, BridgeError> {
    with_conn(db, timeout, |conn| {
        conn.query_map(
            "SELECT slurm_job_id, dir_path, status FROM jobs \
             WHERE status IN ('SUBMITTED','RUNNING','PENDING') ORDER BY id LIMIT 10000",
            |(job_id, dir, status): (Option<String>, Option<String>, Option<String>)| ActiveRow {
                job_id: job_id.filter(|j| !j.is_empty()),
                dir: dir.unwrap_or_default(),
                status: status.unwrap_or_default(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, state: Option<&str>) -> Event {
        Event {
            schema: crate::engine::notice::SCHEMA.into(),
            event: kind,
            time: "2026-12-07T01:02:03Z".into(),
            dir: "/data/in/run1".into(),
            job_id: Some("42".into()),
            job_name: None,
            state: state.map(str::to_string),
            exit_code: None,
            reason: None,
            nodes: None,
            elapsed_sec: None,
            output: None,
            attempt: 1,
            by: None,
            next: None,
            output_tail: None,
            host: None,
            instance: None,
        }
    }

    /// The original's words: `SUBMITTED` at submission, Slurm's final state at the end (with
    /// `finished_at`); a job no source shows any more is `LOST`.
    #[test]
    fn status_words_are_the_originals() {
        let cases = [
            (EventKind::Submitted, None, "SUBMITTED", false),
            (EventKind::Completed, Some("COMPLETED"), "COMPLETED", true),
            (EventKind::Failed, Some("TIMEOUT"), "TIMEOUT", true),
            (
                EventKind::Failed,
                Some("OUT_OF_MEMORY"),
                "OUT_OF_MEMORY",
                true,
            ),
            (EventKind::Cancelled, None, "CANCELLED", true),
            (EventKind::Lost, None, "LOST", true),
        ];
        for (kind, state, word, finished) in cases {
            assert_eq!(
                status_of(&event(kind, state)),
                (word.to_string(), finished),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn times_are_written_as_the_original_writes_them() {
        let t = local_time("2026-12-07T01:02:03Z");
        assert_eq!(t.len(), "2026-12-07 01:02:03".len(), "{t}");
        assert!(t.ends_with(":03"), "{t}");
        assert_eq!(&t[4..5], "-");
    }
}
