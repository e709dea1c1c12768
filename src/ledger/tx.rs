//! The ledger's one way to write several rows at once: [`Ledger::write`] opens a transaction, hands a
//! [`Tx`] to the caller's statements, and commits — every error naming the ledger file and what was being
//! done. A single statement needs none of it ([`Ledger::exec`]: SQLite commits it on its own).
//!
//! Must never: keep a transaction open past the closure (nothing outside it can see a `Tx`), or commit
//! after a statement failed (an error returns early and the dropped transaction rolls back).

use std::path::Path;

use rusqlite::{CachedStatement, Params, Transaction};

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

/// An open write transaction of the ledger, as the statements of [`Ledger::write`] see it.
pub(super) struct Tx<'l> {
    /// The SQLite transaction (deferred, as `Connection::transaction` opens it).
    tx: Transaction<'l>,
    /// The ledger file, for the errors.
    path: &'l Path,
    /// The ledger's id, the middle of every submission key.
    instance: &'l str,
}

impl Tx<'_> {
    /// Maps an SQLite error to the ledger's, saying `what` was being done.
    pub(super) fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError {
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

    /// The transaction itself, for statements that map their own errors.
    pub(super) fn raw(&self) -> &Transaction<'_> {
        &self.tx
    }

    /// Runs one statement; returns how many rows it changed.
    pub(super) fn execute(&self, sql: &str, p: impl Params, what: &'static str) -> Result<usize> {
        self.tx.execute(sql, p).map_err(self.sql(what))
    }

    /// A statement to run for many rows.
    pub(super) fn prepare(&self, sql: &str, what: &'static str) -> Result<CachedStatement<'_>> {
        self.tx.prepare_cached(sql).map_err(self.sql(what))
    }
}

impl Ledger {
    /// Runs `f` in one transaction and commits it when `f` succeeded; when `f` fails nothing of it stays.
    /// `said` names the failures of the begin and the commit.
    pub(super) fn write<T>(
        &mut self,
        said: Said,
        f: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tx = Tx {
            tx: self
                .conn
                .transaction()
                .map_err(sqle(&self.path, said.begin))?,
            path: &self.path,
            instance: &self.instance,
        };
        let out = f(&tx)?;
        tx.tx.commit().map_err(sqle(tx.path, said.commit))?;
        Ok(out)
    }

    /// Runs one statement, committed on its own.
    pub(super) fn exec(&self, sql: &str, p: impl Params, what: &'static str) -> Result<()> {
        let mut st = self.conn.prepare_cached(sql).map_err(self.sql(what))?;
        st.execute(p).map_err(self.sql(what))?;
        Ok(())
    }
}
