//! The ledger's one way to write several rows at once: [`Ledger::write`] opens a transaction, hands a
//! [`Tx`] to the caller's statements, and commits — every error naming the ledger file and what was being
//! done. A single statement needs none of it ([`Ledger::exec`]: SQLite commits it on its own).
//!
//! Must never: keep a transaction open past the closure (nothing outside it can see a `Tx`), or commit
//! after a statement failed (an error returns early and the dropped transaction rolls back).

use std::cell::RefCell;
use std::path::Path;

use super::sql::{Arg, DbError, Row, Sql};
use super::{Ledger, LedgerError, Result, sqle};

/// What a failed transaction says at its two ends (each statement inside says its own).
#[derive(Debug, Clone, Copy)]
pub(super) struct Said {
    /// When the transaction cannot begin.
    begin: &'static str,
    /// When it cannot commit.
    commit: &'static str,
}

impl Said {
    /// The same words for the whole transaction.
    pub(super) const fn all(what: &'static str) -> Said {
        Said {
            begin: what,
            commit: what,
        }
    }

    /// "cannot begin a transaction", and `commit` when the commit fails.
    pub(super) const fn commit(commit: &'static str) -> Said {
        Said {
            begin: "cannot begin a transaction",
            commit,
        }
    }
}

/// How many times a transaction that met another writer (a MariaDB deadlock, a Galera certification
/// conflict, SQLite busy past its timeout) is run again before its error is returned.
const TRIES: u32 = 5;

/// An open write transaction of the ledger, as the statements of [`Ledger::write`] see it.
pub(super) struct Tx<'l> {
    /// The database, inside its transaction.
    db: &'l RefCell<Box<dyn Sql>>,
    /// The ledger file, for the errors.
    path: &'l Path,
    /// The ledger's id, the middle of every submission key.
    instance: &'l str,
}

impl Tx<'_> {
    /// Maps a database error to the ledger's, saying `what` was being done.
    pub(super) fn sql(&self, what: &'static str) -> impl FnOnce(DbError) -> LedgerError {
        sqle(self.path, what)
    }

    /// The ledger file.
    pub(super) fn path(&self) -> &Path {
        self.path
    }

    /// The ledger's id.
    pub(super) fn instance(&self) -> &str {
        self.instance
    }

    /// Runs one statement; returns how many rows it matched.
    pub(super) fn execute(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<usize> {
        let n = self
            .db
            .borrow_mut()
            .exec(sql, args)
            .map_err(self.sql(what))?;
        Ok(n as usize)
    }

    /// Runs one query; returns its rows.
    pub(super) fn query(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<Vec<Row>> {
        self.db
            .borrow_mut()
            .query(sql, args)
            .map_err(self.sql(what))
    }

    /// The id the last insert gave its row.
    pub(super) fn last_insert_id(&self) -> i64 {
        self.db.borrow_mut().last_insert_id()
    }
}

impl Ledger {
    /// Runs `f` in one transaction and commits it when `f` succeeded; when `f` fails nothing of it stays.
    /// `said` names the failures of the begin and the commit. A transaction that met another writer is
    /// run again from its start (`f` may run more than once; it only issues statements).
    pub(super) fn write<T>(
        &mut self,
        said: Said,
        mut f: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.retrying(said, &mut f)
    }

    /// [`Ledger::write_once`] again while it meets another writer, up to [`TRIES`] times.
    fn retrying<T>(&self, said: Said, f: &mut impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.write_once(said, f) {
                Err(LedgerError::Sql { source, .. }) if source.is_transient() && tries < TRIES => {
                    std::thread::sleep(std::time::Duration::from_millis(10 << tries));
                }
                out => return out,
            }
        }
    }

    fn write_once<T>(&self, said: Said, f: &mut impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db
            .borrow_mut()
            .begin()
            .map_err(sqle(&self.path, said.begin))?;
        let tx = Tx {
            db: &self.db,
            path: &self.path,
            instance: &self.instance,
        };
        let done = self.fence(&tx).and_then(|()| f(&tx)).and_then(|out| {
            self.db
                .borrow_mut()
                .commit()
                .map_err(sqle(&self.path, said.commit))?;
            Ok(out)
        });
        if done.is_err() {
            // Nothing of it stays; a rollback that fails (the connection is gone) has nothing to undo.
            let _ = self.db.borrow_mut().rollback();
        }
        done
    }

    /// Runs one statement, committed on its own.
    pub(super) fn exec(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<()> {
        self.run(sql, args, what).map(|_| ())
    }

    /// Runs one statement, committed on its own (fenced by the lease this process holds, if any);
    /// returns how many rows it matched.
    pub(super) fn run(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<usize> {
        if self.fence.is_none() {
            return self.run_unfenced(sql, args, what);
        }
        self.retrying(Said::all(what), &mut |tx: &Tx<'_>| {
            tx.execute(sql, args, what)
        })
    }

    /// [`Ledger::run`] without the lease's check (no lease held).
    pub(super) fn run_unfenced(
        &self,
        sql: &str,
        args: &[Arg],
        what: &'static str,
    ) -> Result<usize> {
        let n = self
            .db
            .borrow_mut()
            .exec(sql, args)
            .map_err(self.sql(what))?;
        Ok(n as usize)
    }

    /// Runs one query; returns its rows.
    pub(super) fn rows(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<Vec<Row>> {
        self.db
            .borrow_mut()
            .query(sql, args)
            .map_err(self.sql(what))
    }

    /// Runs one query; returns its first row, if any.
    pub(super) fn row(&self, sql: &str, args: &[Arg], what: &'static str) -> Result<Option<Row>> {
        Ok(self.rows(sql, args, what)?.into_iter().next())
    }
}
