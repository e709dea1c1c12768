//! Who may act on a shared ledger: one lease row on the server, with an **epoch** that grows at every
//! takeover and an expiry timed by the database's own clock, claimed and renewed by conditional updates.
//! The daemon holding it is *active* (it scans, submits, deletes and tells); the others wait as *standby*
//! and take over once it runs out (or is handed back at a clean stop). Modelled on slurmctld's backup
//! controller; not `GET_LOCK`, which MariaDB refuses under Galera (MDEV-30473).
//!
//! **Fencing**: once a lease is held, every write transaction of this ledger first moves the lease row
//! under the condition that the epoch is still its own and the lease has not run out
//! ([`Ledger::fence`]): a deposed leader (paused, partitioned, its connection gone) cannot record an
//! intent, an end or a notice as sent after another took over. The row is written, not only read, so a
//! takeover on another Galera node conflicts with it at certification.
//!
//! Must never: renew a lease it does not hold, or read a time from this host's clock to decide who holds
//! it. An SQLite ledger has no lease: its file lock keeps it to one daemon.

use std::time::Duration;

use super::sql::{Backend, args};
use super::{Ledger, LedgerError, Result};

/// The lease as the server shows it (for `status`, the standby's words and the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Who holds it (`instance@host`), empty when no one does.
    pub holder: String,
    /// How many takeovers there were.
    pub epoch: i64,
    /// When its holder took it (the server's time, `YYYY-MM-DD HH:MM:SS`, UTC).
    pub since: String,
    /// Milliseconds until it runs out, by the server's clock (≤ 0: it has run out).
    pub left_ms: i64,
}

impl LeaseInfo {
    /// Whether someone holds it now.
    pub fn is_held(&self) -> bool {
        !self.holder.is_empty() && self.left_ms > 0
    }
}

/// The lease this process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// `instance@host`.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
}

const TABLE: &str = r#"CREATE TABLE IF NOT EXISTS lease (
    id         TINYINT PRIMARY KEY,
    holder     VARCHAR(255) NOT NULL,
    epoch      BIGINT NOT NULL,
    since      DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    fenced     BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB"#;

/// The statements that create the lease (run with the rest of the server's schema).
pub(super) const SCHEMA: [&str; 2] = [
    TABLE,
    "INSERT IGNORE INTO lease(id, holder, epoch, since, expires_at)
         VALUES (1, '', 0, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
];

/// Milliseconds as MariaDB's interval (microseconds: the only unit it takes as an integer exactly).
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Ledger {
    /// Whether this ledger needs a lease to be written by a daemon (a shared one, on a server).
    pub fn is_shared(&self) -> bool {
        self.backend() == Backend::Maria
    }

    /// Tries to become the active daemon: takes the lease when no one holds it, when it ran out, or when
    /// `holder` held it (this host's daemon, restarted: the lock file beside the state says no other
    /// runs here). The epoch grows by one. Returns the lease held, or `None` when another holds it.
    pub fn claim_lease(&mut self, holder: &str, lease: Duration) -> Result<Option<Held>> {
        let what = "cannot claim the lease";
        // A lease this process held before is not a fence for its own claim.
        self.fence = None;
        let taken = self.write(super::tx::Said::all(what), |tx| {
            let n = tx.execute(
                "UPDATE lease SET holder = ?1, epoch = epoch + 1, since = UTC_TIMESTAMP(6),
                     expires_at = UTC_TIMESTAMP(6) + INTERVAL ?2 MICROSECOND
                 WHERE id = 1 AND (holder = '' OR holder = ?1 OR expires_at <= UTC_TIMESTAMP(6))",
                args![holder, micros(lease)],
                what,
            )?;
            if n == 0 {
                return Ok(None);
            }
            let rows = tx.query("SELECT epoch FROM lease WHERE id = 1", &[], what)?;
            let epoch = rows
                .first()
                .map(|r| r.get::<i64>(0))
                .transpose()
                .map_err(tx.sql(what))?
                .unwrap_or(0);
            Ok(Some(epoch))
        })?;
        Ok(taken.map(|epoch| {
            let held = Held {
                holder: holder.to_string(),
                epoch,
            };
            self.fence = Some(held.clone());
            held
        }))
    }

    /// Renews the lease this process holds for another `lease`. False: it is not this process's any more
    /// (another took over, or it ran out): the caller must stop acting at once.
    pub fn renew_lease(&mut self, lease: Duration) -> Result<bool> {
        let Some(held) = self.fence.clone() else {
            return Ok(false);
        };
        let n = self.run_uncounted(
            "UPDATE lease SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ?3 MICROSECOND
             WHERE id = 1 AND holder = ?1 AND epoch = ?2 AND expires_at > UTC_TIMESTAMP(6)",
            args![&held.holder, held.epoch, micros(lease)],
            "cannot renew the lease",
        )?;
        if n == 0 {
            self.fence = None;
        }
        Ok(n == 1)
    }

    /// Hands the lease back (a clean stop): the standby takes over at its next look, not after the lease
    /// ran out. Nothing happens when it is not this process's any more.
    pub fn release_lease(&mut self) -> Result<()> {
        let Some(held) = self.fence.take() else {
            return Ok(());
        };
        self.run_uncounted(
            "UPDATE lease SET holder = '', expires_at = UTC_TIMESTAMP(6) WHERE id = 1 AND holder = ?1
                 AND epoch = ?2",
            args![&held.holder, held.epoch],
            "cannot hand the lease back",
        )
        .map(|_| ())
    }

    /// The lease as the server shows it; `None` for a ledger without one (SQLite).
    pub fn lease_info(&self) -> Result<Option<LeaseInfo>> {
        if !self.is_shared() {
            return Ok(None);
        }
        let what = "cannot read the lease";
        let Some(r) = self.row(
            "SELECT holder, epoch, DATE_FORMAT(since, '%Y-%m-%d %H:%i:%s'),
                 TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) DIV 1000
             FROM lease WHERE id = 1",
            &[],
            what,
        )?
        else {
            return Ok(None);
        };
        (|| {
            Ok(Some(LeaseInfo {
                holder: r.get(0)?,
                epoch: r.get(1)?,
                since: r.get(2)?,
                left_ms: r.get(3)?,
            }))
        })()
        .map_err(self.sql::<super::sql::DbError>(what))
    }

    /// Takes a lease claimed on another connection as this one's (the daemon's heart renews on its own).
    pub fn adopt_lease(&mut self, held: Held) {
        self.fence = Some(held);
    }

    /// One lease statement on its own (renewal, hand-back): not counted as a change of the ledger.
    fn run_uncounted(
        &self,
        sql: &str,
        args: &[super::sql::Arg],
        what: &'static str,
    ) -> Result<usize> {
        let n = self
            .db
            .borrow_mut()
            .exec_uncounted(sql, args)
            .map_err(self.sql(what))?;
        Ok(n as usize)
    }

    /// The lease this process holds, if any.
    pub fn held_lease(&self) -> Option<&Held> {
        self.fence.as_ref()
    }

    /// Inside a write transaction: when this process holds a lease, moves the lease row under the
    /// condition that it is still this process's and has not run out; a deposed leader's transaction
    /// fails here, before any of its statements.
    pub(super) fn fence(&self, tx: &super::tx::Tx<'_>) -> Result<()> {
        let Some(held) = &self.fence else {
            return Ok(());
        };
        let n = tx.execute(
            "UPDATE lease SET fenced = fenced + 1 WHERE id = 1 AND holder = ?1 AND epoch = ?2
                 AND expires_at > UTC_TIMESTAMP(6)",
            args![&held.holder, held.epoch],
            "cannot check the lease",
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(LedgerError::Deposed {
                path: self.path.clone(),
                epoch: held.epoch,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::Instant;

    use super::*;
    use crate::engine::ReadyIdentity;
    use crate::ledger::{LedgerAt, NewGeneration, testdb};

    fn intent(l: &mut Ledger, dir: &str, n: u64) -> Result<crate::engine::Generation> {
        l.insert_intent(
            &NewGeneration {
                dir: OsStr::new(dir),
                ready: ReadyIdentity {
                    dev: 1,
                    ino: n,
                    size: 0,
                    mtime_ns: 1,
                },
                dir_dev_ino: None,
                attempt: 1,
                job_name: "j",
                not_before: 0,
            },
            0,
        )
    }

    #[test]
    fn one_holder_at_a_time_and_a_deposed_one_writes_nothing() {
        let Some(t) = testdb::fresh("one_holder_at_a_time") else {
            return;
        };
        let at = LedgerAt::Server(t);
        let mut a = Ledger::open_at(&at).unwrap();
        let mut b = Ledger::open_at(&at).unwrap();
        let short = Duration::from_millis(400);
        let first = a
            .claim_lease("a@host1", short)
            .unwrap()
            .expect("free at first");
        assert_eq!(b.claim_lease("b@host2", short).unwrap(), None, "held by a");
        intent(&mut a, "d1", 1).expect("the holder writes");
        let info = b.lease_info().unwrap().unwrap();
        assert_eq!((info.holder.as_str(), info.epoch), ("a@host1", first.epoch));
        assert!(info.is_held());
        // a stops renewing (paused): once the lease ran out by the server's clock, b takes over.
        let deadline = Instant::now() + Duration::from_secs(30);
        let second = loop {
            if let Some(h) = b.claim_lease("b@host2", Duration::from_secs(30)).unwrap() {
                break h;
            }
            assert!(Instant::now() < deadline, "b never took over");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(second.epoch, first.epoch + 1);
        // a wakes up: every write is refused before it changes anything, and a knows it lost the lease.
        let e = intent(&mut a, "d2", 2).unwrap_err();
        assert!(matches!(e, LedgerError::Deposed { .. }), "{e}");
        assert!(a.latest_for_dir(OsStr::new("d2")).unwrap().is_none());
        assert!(!a.renew_lease(short).unwrap());
        assert!(a.held_lease().is_none());
        intent(&mut b, "d2", 2).expect("the new holder writes");
        // A clean stop hands it over at once.
        assert!(b.renew_lease(Duration::from_secs(30)).unwrap());
        b.release_lease().unwrap();
        let third = a
            .claim_lease("a@host1", short)
            .unwrap()
            .expect("handed back");
        assert_eq!(third.epoch, second.epoch + 1);
    }

    #[test]
    fn a_leader_paused_inside_a_transaction_does_not_keep_the_standby_out() {
        let Some(t) = testdb::fresh("a_leader_paused_inside_a_transaction") else {
            return;
        };
        let at = LedgerAt::Server(t);
        let mut a = Ledger::open_at(&at).unwrap();
        let mut b = Ledger::open_at(&at).unwrap();
        a.claim_lease("a@host1", Duration::from_millis(500))
            .unwrap()
            .expect("free at first");
        // a holds the lease row inside a transaction and stops there (as SIGSTOP or a frozen VM would).
        a.db.borrow_mut().begin().unwrap();
        a.db.borrow_mut()
            .exec("UPDATE lease SET fenced = fenced + 1 WHERE id = 1", &[])
            .unwrap();
        let start = Instant::now();
        let taken = loop {
            if let Some(h) = b.claim_lease("b@host2", Duration::from_secs(30)).unwrap() {
                break h;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "b never took over"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(taken.holder, "b@host2");
        // The server ended a's transaction: nothing of it can be committed any more.
        assert!(a.db.borrow_mut().commit().is_err());
    }

    #[test]
    fn renewals_are_no_change_another_connection_must_read_again_and_a_write_is() {
        let Some(t) = testdb::fresh("renewals_are_no_change") else {
            return;
        };
        let at = LedgerAt::Server(t);
        let (mut heart, mut daemon) =
            (Ledger::open_at(&at).unwrap(), Ledger::open_at(&at).unwrap());
        let held = daemon
            .claim_lease("a@host1", Duration::from_secs(30))
            .unwrap()
            .unwrap();
        heart.adopt_lease(held);
        let v = daemon.data_version().unwrap();
        for _ in 0..3 {
            assert!(heart.renew_lease(Duration::from_secs(30)).unwrap());
        }
        assert_eq!(
            daemon.data_version().unwrap(),
            v,
            "a renewal is not a change of the ledger"
        );
        // The daemon's own writes are not changes for it either; another connection's are.
        intent(&mut daemon, "d1", 1).unwrap();
        assert_eq!(daemon.data_version().unwrap(), v);
        let cli = Ledger::open_at(&at).unwrap();
        cli.forget(OsStr::new("d1")).unwrap();
        assert_ne!(
            daemon.data_version().unwrap(),
            v,
            "the CLI's forget is seen"
        );
    }

    #[test]
    fn an_sqlite_ledger_has_no_lease() {
        let t = tempfile::tempdir().unwrap();
        let l = Ledger::open(&t.path().join("s.db")).unwrap();
        assert!(!l.is_shared());
        assert_eq!(l.lease_info().unwrap(), None);
    }
}
