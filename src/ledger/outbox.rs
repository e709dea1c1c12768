//! The outbox: the notices of an event, queued in the transaction that records the event, then read by the
//! delivery step, marked delivered or failed, and pruned after [`DELIVERED_KEPT`].
//!
//! Must never deliver anything itself (that is `deliver`), or queue a notice outside its event's
//! transaction.

use std::time::Duration;

use super::sql::args;
use super::tx::{Said, Tx};
use super::{Ledger, Result, u};
use crate::engine::notice::{Channel, EventKind};
use crate::time::Millis;

/// How long a delivered notice stays in the outbox (for `sqlite3` and a look back), then it is pruned.
pub const DELIVERED_KEPT: Duration = Duration::from_secs(7 * 86400);

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

impl Tx<'_> {
    /// Queues the notices of an event, in the transaction that records the event.
    pub(super) fn notices(
        &self,
        gen_id: Option<i64>,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<()> {
        for n in notices {
            self.execute(
                "INSERT INTO outbox (gen_id, event, channel, target, payload, next_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                args![
                    gen_id,
                    n.event.as_str(),
                    n.channel.as_str(),
                    n.target,
                    n.payload,
                    now
                ],
                "cannot queue a notice",
            )?;
        }
        Ok(())
    }
}

impl Ledger {
    /// Queues notices that belong to no single transition (a blocked submission).
    pub fn queue_notices(
        &mut self,
        gen_id: Option<i64>,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<()> {
        self.write(Said::commit("cannot commit a notice"), |tx| {
            tx.notices(gen_id, notices, now)
        })
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
        let rows = self.rows(
            &format!(
                "SELECT id, gen_id, event, channel, target, payload, attempts FROM outbox
                 WHERE state = 'pending' AND next_at <= ?1 AND channel IN ({}) {in_order}
                 ORDER BY id LIMIT ?2",
                words.join(", ")
            ),
            args![now, limit],
            what,
        )?;
        let mut out = Vec::new();
        for r in rows {
            let read = || -> std::result::Result<_, super::sql::DbError> {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<Option<i64>>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<String>(5)?,
                    r.get::<u32>(6)?,
                ))
            };
            let (id, gen_id, event, channel, target, payload, attempts) =
                read().map_err(self.sql(what))?;
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
        let what = "cannot read the outbox";
        self.row(
            "SELECT MIN(next_at) FROM outbox WHERE state = 'pending'",
            &[],
            what,
        )?
        .map_or(Ok(None), |r| r.get(0))
        .map_err(self.sql(what))
    }

    /// Records a delivered notice.
    pub fn notice_sent(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?2, last_error = NULL
                 WHERE id = ?1",
            args![id, now],
            "cannot record a delivered notice",
        )
    }

    /// Removes notices delivered before `before` (wall ms), at most `limit` of them (the oldest): the
    /// outbox keeps what still waits, what was given up, and a delivered notice for
    /// [`DELIVERED_KEPT`]. Returns how many went.
    pub fn prune_delivered(&self, before: Millis, limit: u32) -> Result<usize> {
        let what = "cannot prune delivered notices";
        // The ids first, then one delete: MariaDB takes no `LIMIT` in a subquery of the table it deletes
        // from, and SQLite no `LIMIT` on a delete. A row given out between the two is deleted all the same
        // (it was delivered, and old).
        let ids = self
            .rows(
                "SELECT id FROM outbox WHERE state = 'sent' AND done_at < ?1 ORDER BY id LIMIT ?2",
                args![before, limit],
                what,
            )?
            .iter()
            .map(|r| r.get::<i64>(0).map(|id| id.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql(what))?;
        if ids.is_empty() {
            return Ok(0);
        }
        self.run(
            &format!("DELETE FROM outbox WHERE id IN ({})", ids.join(",")),
            &[],
            what,
        )
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
            args![id, error, retry_at, now],
            "cannot record a failed delivery",
        )
    }

    /// How many notices wait for (another) delivery: the metrics' `dirwatcher_notices_waiting`. Through
    /// the `outbox_due` index, so delivered notices cost nothing.
    pub fn notices_waiting(&self) -> Result<u64> {
        let what = "cannot read the outbox";
        let r = self
            .row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                &[],
                what,
            )?
            .expect("an aggregate has one row");
        (|| Ok(u(r.get(0)?)))().map_err(self.sql::<super::sql::DbError>(what))
    }

    /// How many notices wait for delivery, and how many were given up, for `status`.
    pub fn notice_counts(&self) -> Result<NoticeCounts> {
        let what = "cannot read the outbox";
        let mut c = NoticeCounts::default();
        for r in self.rows(
            "SELECT state, COUNT(*) FROM outbox GROUP BY state",
            &[],
            what,
        )? {
            let (state, n) = (|| Ok((r.get::<String>(0)?, u(r.get(1)?))))()
                .map_err(self.sql::<super::sql::DbError>(what))?;
            match state.as_str() {
                "pending" => c.pending = n,
                "sent" => c.sent = n,
                "given_up" => c.given_up = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// What `status` says of the outbox: the notices still waiting (the oldest's age, the latest delivery
    /// error) and those given up. Through the `outbox_due` index: delivered notices are never counted, so
    /// a long-lived outbox costs nothing here.
    pub fn outbox_health(&self) -> Result<OutboxHealth> {
        let what = "cannot read the outbox";
        let count = |state: &str| -> Result<(u64, Option<Millis>)> {
            let r = self
                .row(
                    "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = ?1",
                    args![state],
                    what,
                )?
                .expect("an aggregate has one row");
            (|| Ok((u(r.get(0)?), r.get(1)?)))().map_err(self.sql::<super::sql::DbError>(what))
        };
        let (waiting, oldest_waiting_at) = count("pending")?;
        let (given_up, _) = count("given_up")?;
        let last_error = self
            .row(
                "SELECT channel, target, last_error FROM outbox
                 WHERE state IN ('pending', 'given_up') AND last_error IS NOT NULL
                 ORDER BY COALESCE(done_at, next_at) DESC LIMIT 1",
                &[],
                what,
            )?
            .map(|r| {
                let (channel, target, error) = (
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                );
                // The database's error names the database; its target is the owner's address.
                Ok(if channel == Channel::Database.as_str() {
                    error
                } else {
                    format!("{channel} to {target}: {error}")
                })
            })
            .transpose()
            .map_err(self.sql::<super::sql::DbError>(what))?;
        Ok(OutboxHealth {
            waiting,
            oldest_waiting_at,
            given_up,
            last_error,
        })
    }
}
