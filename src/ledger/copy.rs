//! `dirwatcher ledger copy`: moves a ledger between its two homes (an SQLite file, a MariaDB database),
//! every record with its own id, the ledger's id (the middle of every submission key, so jobs in flight
//! are still recognised) and the next id to give (so a forgotten record's key is never given again).
//!
//! Owns: the copy, in one transaction on the destination (all of it or nothing). Must never: copy from or
//! into a ledger a daemon is using (the file's lock, the server's lease say so), or into one that holds a
//! record already.

use std::path::{Path, PathBuf};

use super::sql::{Arg, Backend, Val};
use super::tx::Said;
use super::{Ledger, LedgerAt, LedgerError, Result, identity};

/// The tables copied, with their columns (in the order both schemas know them) and which of those hold
/// bytes rather than text.
const TABLES: [(&str, &str, &[&str]); 3] = [
    ("generations", super::read::COLUMNS, &["dir"]),
    (
        "outbox",
        "id, gen_id, event, channel, target, payload, state, attempts, next_at, created_at, done_at, last_error",
        &[],
    ),
    ("cancel_requests", "gen_id, operator, at", &[]),
];

/// Rows read and written per statement round.
const BATCH: i64 = 1000;

/// What was copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// Records of directories (generations).
    pub generations: u64,
    /// Notices (sent, waiting, given up).
    pub notices: u64,
    /// Operators' cancel requests.
    pub cancels: u64,
}

/// Why a copy was refused.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A daemon uses one of the two.
    #[error(
        "a daemon is using the ledger `{0}`{1}: stop it first (`systemctl stop dirwatcher`, on every login node \
         of a shared ledger)"
    )]
    InUse(PathBuf, String),
    /// There is nothing to copy.
    #[error("the ledger `{0}` holds no record: there is nothing to copy")]
    Empty(PathBuf),
    /// The destination holds records.
    #[error(
        "the ledger `{0}` already holds records: a copy goes only into a new, empty ledger (a new database, or a \
         path where no file is)"
    )]
    NotEmpty(PathBuf),
    /// The ledger said no.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Opens `at` for the copy: a file with its lock taken (a daemon holding it is refused), a server whose
/// lease no daemon holds.
fn open_quiet(at: &LedgerAt) -> std::result::Result<(Ledger, Option<identity::Held>), CopyError> {
    let l = Ledger::open_at(at)?;
    let held = match at {
        LedgerAt::File(p) => Some(identity::Held::take(p).map_err(|e| match e {
            identity::LockError::Held => CopyError::InUse(p.clone(), String::new()),
            identity::LockError::Io(source) => CopyError::Ledger(LedgerError::Create {
                path: p.clone(),
                source,
            }),
        })?),
        LedgerAt::Server(_) => None,
    };
    if let Some(lease) = l.lease_info()?
        && lease.is_held()
    {
        return Err(CopyError::InUse(
            at.name(),
            format!(" ({} is active, lease epoch {})", lease.holder, lease.epoch),
        ));
    }
    Ok((l, held))
}

/// Copies every record of `from` into the new ledger `to`; `progress(done, total)` is told after each
/// batch of directories' records.
pub fn copy(
    from: &LedgerAt,
    to: &LedgerAt,
    progress: &mut dyn FnMut(u64, u64),
) -> std::result::Result<Copied, CopyError> {
    if from.fresh()?.is_some() {
        return Err(CopyError::Empty(from.name()));
    }
    let (src, _src_lock) = open_quiet(from)?;
    if count(&src, "generations")? == 0 {
        return Err(CopyError::Empty(from.name()));
    }
    let fresh = to.fresh()?.is_some();
    let (mut dst, _dst_lock) = open_quiet(to)?;
    // A database whose tables a daemon made before its first record is as good as a new one.
    if !fresh && count(&dst, "generations")? > 0 {
        return Err(CopyError::NotEmpty(to.name()));
    }
    let total = count(&src, "generations")?;
    let next_id = next_id(&src)?;
    let meta = src.rows(r#"SELECT "key", value FROM meta"#, &[], "cannot read")?;
    let mut copied = Copied::default();
    dst.write(Said::commit("cannot commit the copy"), |tx| {
        copied = Copied::default();
        for r in &meta {
            let (k, v): (String, Vec<u8>) =
                (|| Ok((r.get(0)?, r.get(1)?)))().map_err(tx.sql("cannot read"))?;
            // The root is bytes (any path); the ledger's id is text.
            let v = if k == "root" {
                Arg::Blob(v)
            } else {
                Arg::Text(String::from_utf8_lossy(&v).into_owned())
            };
            tx.execute(
                r#"REPLACE INTO meta("key", value) VALUES (?1, ?2)"#,
                &[Arg::Text(k), v],
                "cannot write the ledger's id and root",
            )?;
        }
        for (table, columns, blobs) in TABLES {
            let n = copy_table(&src, tx, table, columns, blobs, &mut |done| {
                if table == "generations" {
                    progress(done, total);
                }
            })?;
            match table {
                "generations" => copied.generations = n,
                "outbox" => copied.notices = n,
                _ => copied.cancels = n,
            }
        }
        Ok(())
    })?;
    set_next_id(&dst, next_id)?;
    Ok(copied)
}

fn count(l: &Ledger, table: &str) -> Result<u64> {
    let r = l.row(&format!("SELECT COUNT(*) FROM {table}"), &[], "cannot read")?;
    Ok(r.map(|r| r.get::<i64>(0))
        .transpose()
        .map_err(l.sql("cannot read"))?
        .unwrap_or(0) as u64)
}

/// Copies one table in batches (by its first column, an id), values as they are: numbers as numbers,
/// the `blobs` columns as bytes, the others as text.
fn copy_table(
    src: &Ledger,
    tx: &super::tx::Tx<'_>,
    table: &str,
    columns: &str,
    blobs: &[&str],
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let names: Vec<&str> = columns.split(',').map(str::trim).collect();
    let key = names[0];
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        marks.join(", ")
    );
    let mut after = i64::MIN;
    let mut n = 0;
    loop {
        let rows = src.rows(
            &format!("SELECT {columns} FROM {table} WHERE {key} > ?1 ORDER BY {key} LIMIT ?2"),
            &[Arg::Int(after), Arg::Int(BATCH)],
            "cannot read",
        )?;
        if rows.is_empty() {
            return Ok(n);
        }
        for r in &rows {
            let args: Vec<Arg> =
                r.0.iter()
                    .zip(&names)
                    .map(|(v, col)| match v {
                        Val::Null => Arg::Null,
                        Val::Int(i) => Arg::Int(*i),
                        Val::Bytes(b) if blobs.contains(col) => Arg::Blob(b.clone()),
                        Val::Bytes(b) => Arg::Text(String::from_utf8_lossy(b).into_owned()),
                    })
                    .collect();
            tx.execute(&insert, &args, "cannot copy a record")?;
            after = r.get(0).map_err(tx.sql("cannot read"))?;
            n += 1;
        }
        progress(n);
    }
}

/// The next id the ledger gives a directory's record (never one a forgotten record had).
fn next_id(l: &Ledger) -> Result<i64> {
    let sql = match l.backend() {
        Backend::Sqlite => {
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'generations'), 0) + 1"
        }
        Backend::Maria => {
            "SELECT COALESCE(AUTO_INCREMENT, 1) FROM information_schema.tables
                 WHERE table_schema = DATABASE() AND table_name = 'generations'"
        }
    };
    let r = l.row(sql, &[], "cannot read the next id")?;
    Ok(r.map(|r| r.get::<i64>(0))
        .transpose()
        .map_err(l.sql("cannot read the next id"))?
        .unwrap_or(1))
}

fn set_next_id(l: &Ledger, next: i64) -> Result<()> {
    match l.backend() {
        Backend::Sqlite => {
            l.exec(
                "UPDATE sqlite_sequence SET seq = MAX(seq, ?1) WHERE name = 'generations'",
                &[Arg::Int(next - 1)],
                "cannot set the next id",
            )?;
            l.exec(
                "INSERT INTO sqlite_sequence(name, seq) SELECT 'generations', ?1
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'generations')",
                &[Arg::Int(next - 1)],
                "cannot set the next id",
            )
        }
        // DDL takes no placeholder; the number is this program's own.
        Backend::Maria => l.exec(
            &format!("ALTER TABLE generations AUTO_INCREMENT = {next}"),
            &[],
            "cannot set the next id",
        ),
    }
}

/// Where a ledger named on the command line is: a `mysql://` URL (its password from `password_file`),
/// else a file path.
pub fn at_of(arg: &str, password_file: Option<&Path>) -> std::result::Result<LedgerAt, String> {
    if arg.starts_with("mysql://") || arg.starts_with("mariadb://") {
        let mut t = super::maria::MariaTarget::parse(arg)?;
        if let Some(f) = password_file {
            let p = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the password file `{}`: {e}", f.display()))?;
            t.password = Some(p.trim_end_matches(['\n', '\r']).to_string());
        }
        Ok(LedgerAt::Server(t))
    } else {
        Ok(LedgerAt::File(PathBuf::from(arg)))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::engine::ReadyIdentity;
    use crate::ledger::{NewGeneration, NewNotice, testdb};

    fn fill(l: &mut Ledger) {
        for n in 0..5u64 {
            let dir = format!("d{n}");
            let g = l
                .insert_intent(
                    &NewGeneration {
                        dir: OsStr::new(&dir),
                        ready: ReadyIdentity {
                            dev: 1,
                            ino: n,
                            size: 2,
                            mtime_ns: 3,
                        },
                        dir_dev_ino: Some((4, n)),
                        attempt: 1,
                        job_name: "j",
                        not_before: 0,
                    },
                    10,
                )
                .unwrap();
            let notice = NewNotice {
                event: crate::engine::notice::EventKind::Submitted,
                channel: crate::engine::notice::Channel::Command,
                target: "",
                payload: "{}",
            };
            if n < 4 {
                l.record_submitted(g.id, &format!("{}", 100 + n), &[notice], 11)
                    .unwrap();
            }
        }
        l.request_cancel(2, "root", 12).unwrap();
        // The newest record (an intent no sbatch touched) forgotten: its id must never be given again.
        l.forget(OsStr::new("d4")).unwrap();
    }

    #[test]
    fn a_ledger_moves_to_a_server_and_back_with_its_ids_keys_and_next_id() {
        let Some(server) = testdb::fresh("ledger_copy") else {
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let file = LedgerAt::File(t.path().join("state.db"));
        let (id, before, next) = {
            let mut l = Ledger::open_at(&file).unwrap();
            fill(&mut l);
            (
                l.id().to_string(),
                l.latest_per_dir().unwrap(),
                next_id(&l).unwrap(),
            )
        };
        assert_eq!(next, 6, "ids 1-5 were given");
        let there = LedgerAt::Server(server);
        let mut seen = Vec::new();
        let c = copy(&file, &there, &mut |d, n| seen.push((d, n))).unwrap();
        assert_eq!((c.generations, c.notices, c.cancels), (4, 4, 1));
        assert_eq!(seen.last(), Some(&(4, 4)));
        let back = LedgerAt::File(t.path().join("back.db"));
        copy(&there, &back, &mut |_, _| {}).unwrap();
        for at in [&there, &back] {
            let mut l = Ledger::open_at(at).unwrap();
            assert_eq!(l.id(), id, "{at}: the keys of jobs in flight still match");
            assert_eq!(l.latest_per_dir().unwrap(), before, "{at}");
            assert_eq!(l.cancel_requested(2).unwrap().as_deref(), Some("root"));
            assert_eq!(l.notice_counts().unwrap().pending, 4);
            assert_eq!(
                l.counts().unwrap().submitted,
                4,
                "{at}: the kept counts follow"
            );
            let g = l
                .insert_intent(
                    &NewGeneration {
                        dir: OsStr::new("new"),
                        ready: ReadyIdentity {
                            dev: 9,
                            ino: 9,
                            size: 9,
                            mtime_ns: 9,
                        },
                        dir_dev_ino: None,
                        attempt: 1,
                        job_name: "j",
                        not_before: 0,
                    },
                    20,
                )
                .unwrap();
            assert_eq!(
                g.id, 6,
                "{at}: the forgotten record's id is not given again"
            );
        }
        // Into a ledger with records, from an empty one: refused, nothing written.
        let e = copy(&file, &there, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, CopyError::NotEmpty(_)), "{e}");
        let empty = LedgerAt::File(t.path().join("none.db"));
        let e = copy(
            &empty,
            &LedgerAt::File(t.path().join("x.db")),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e, CopyError::Empty(_)), "{e}");
    }

    #[test]
    fn a_ledger_a_daemon_holds_is_not_copied() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.db");
        let mut l = Ledger::open_exclusive(&p, Path::new("/data")).unwrap();
        fill(&mut l);
        let e = copy(
            &LedgerAt::File(p),
            &LedgerAt::File(t.path().join("b.db")),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e, CopyError::InUse(..)), "{e}");
        assert!(e.to_string().contains("stop it first"), "{e}");
    }
}
