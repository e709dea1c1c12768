//! Telling people, the loop's side: the notices of an event (decided by `engine::notice`, with the
//! recipient read from the directory's `.dirwatch_meta.json`), committed by the steps in the same
//! transaction as the event; and the delivery step, which takes due notices from the ledger's outbox and
//! hands them to `deliver`.
//!
//! Must never: hold the loop for long (one attempt per target per cycle, a time budget per cycle, each
//! attempt bounded by `notify.timeout_sec`), lose a notice (it leaves the outbox only when delivered or
//! given up after `notify.max_attempts`), or log a secret.

use std::time::Duration;

use super::{Daemon, say};
use crate::deliver::{self, EmailTransport};
use crate::engine::notice::{
    self, AfterFailure, Audience, Event, EventKind, RETRY_CAP, RetryPolicy,
};
use crate::engine::{Generation, JobDetail};
use crate::ledger::NewNotice;
use crate::time::Millis;

/// The notices of one event, ready to be committed with it.
#[derive(Debug, Default)]
pub(super) struct Queued {
    /// What happened.
    event: Option<EventKind>,
    /// One per channel and target.
    notices: Vec<notice::Notice>,
    /// The event document, as every notice carries it.
    payload: String,
}

impl Queued {
    /// The outbox rows to insert.
    pub(super) fn rows(&self) -> Vec<NewNotice<'_>> {
        let Some(event) = self.event else {
            return Vec::new();
        };
        self.notices
            .iter()
            .map(|n| NewNotice {
                event,
                channel: n.channel,
                target: &n.target,
                payload: &self.payload,
            })
            .collect()
    }
}

/// The end of a job as an event carries it.
#[derive(Debug, Clone, Copy)]
pub(super) struct EndFacts<'a> {
    /// State word.
    pub state: &'a str,
    /// `code:signal`.
    pub exit_code: &'a str,
    /// Reason, nodes, run time.
    pub detail: &'a JobDetail,
}

/// How many due notices one cycle reads; the rest wait for the next cycle.
const BATCH: u32 = 64;

fn rfc3339(wall: Millis) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(wall).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Daemon {
    /// The notices `kind` gets for `g` (nothing when `notify.events` does not list it). The directory's
    /// meta file is read only when an e-mail could go to its owner.
    pub(super) fn notices_for(
        &mut self,
        kind: EventKind,
        g: &Generation,
        job_id: Option<&str>,
        end: Option<EndFacts<'_>>,
        reason: Option<&str>,
        wall: Millis,
    ) -> Queued {
        let n = &self.cfg.notify;
        if !n.events.contains(&kind) || !n.any_channel() {
            return Queued::default();
        }
        let email = self.telling.email != EmailTransport::None;
        let owner = if email && n.email_owner && kind != EventKind::Blocked {
            match deliver::read_owner(&self.cfg.watch.root, &g.dir) {
                Ok(o) => o,
                Err(problem) => {
                    say::meta_refused(&self.path_of(g), &problem);
                    None
                }
            }
        } else {
            None
        };
        let audience = Audience {
            events: &n.events,
            email,
            email_to: &n.email_to,
            owner: owner.as_deref(),
            webhooks: &n.webhooks,
            command: !n.command.is_empty(),
        };
        let notices = notice::notices_for(kind, &audience);
        if notices.is_empty() {
            return Queued::default();
        }
        let job_id = job_id.or(g.job_id.as_deref());
        let output = job_id.and_then(|id| {
            crate::scheduler::output_file(
                &self.cfg.job,
                &self.cfg.watch.root,
                &self.cfg.watch.root.join(&g.dir),
                id,
                &g.job_name,
            )
        });
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let event = Event {
            schema: notice::SCHEMA.into(),
            event: kind,
            time: rfc3339(wall),
            dir: self.path_of(g).to_string_lossy().into_owned(),
            job_id: job_id.map(str::to_string),
            job_name: Some(g.job_name.clone()),
            state: end.map(|e| e.state.to_string()),
            exit_code: end.and_then(|e| text(e.exit_code)),
            reason: reason
                .map(str::to_string)
                .or_else(|| end.and_then(|e| text(&e.detail.reason))),
            nodes: end.and_then(|e| text(&e.detail.nodes)),
            elapsed_sec: end.and_then(|e| e.detail.elapsed_sec),
            output: output.map(|p| p.to_string_lossy().into_owned()),
            attempt: g.attempt,
        };
        Queued {
            event: Some(kind),
            notices,
            payload: serde_json::to_string(&event).unwrap_or_default(),
        }
    }

    /// The delivery step, which never waits for a delivery: records what the worker delivered or failed
    /// to deliver since the last cycle, and when it is idle hands it the due notices of the outbox, oldest
    /// first (see [`super::dispatch`]).
    pub(super) fn deliver_notices(&mut self) {
        self.record_deliveries();
        if self.telling.dispatch.busy() {
            return;
        }
        let wall = self.clock.wall();
        let due = match self.ledger.due_notices(wall, BATCH) {
            Ok(d) if d.is_empty() => return,
            Ok(d) => d,
            Err(e) => return self.ledger_failed("reading the outbox", &e),
        };
        let scratch = self
            .cfg
            .behavior
            .state_file
            .parent()
            .unwrap_or(std::path::Path::new("/tmp"))
            .to_path_buf();
        self.telling
            .dispatch
            .hand_over(due, &self.cfg.notify, &self.telling.email, scratch);
        // Inline deliveries (tests) answered already.
        self.record_deliveries();
    }

    pub(super) fn record_deliveries(&mut self) {
        let policy = RetryPolicy {
            base: self.cfg.notify.retry,
            max: RETRY_CAP,
            attempts: self.cfg.notify.max_attempts,
        };
        for a in self.telling.dispatch.answers() {
            let Some(result) = a.result else {
                continue;
            };
            let (n, label) = (&a.notice, &a.label);
            let (now, wall) = (self.clock.mono(), self.clock.wall());
            let latch = self.telling.outages.entry(a.latch_key.clone()).or_default();
            match result {
                Ok(()) => {
                    say::delivery_back(n.channel, label, latch.succeeded(now));
                    say::notice_sent(n, label);
                    self.observers.metrics.notice(n.channel.as_str(), "sent");
                    if let Err(e) = self.ledger.notice_sent(n.id, wall) {
                        return self.ledger_failed("recording a delivered notice", &e);
                    }
                }
                Err(err) => {
                    let edge = latch.failed(now);
                    let after = notice::after_failure(n.attempts + 1, wall, policy);
                    say::delivery_failed(n, label, &err, edge, after, wall);
                    let (retry_at, result) = match after {
                        AfterFailure::RetryAt(at) => (Some(at), "failed"),
                        AfterFailure::GiveUp => (None, "given_up"),
                    };
                    self.observers.metrics.notice(n.channel.as_str(), result);
                    let msg = crate::logging::error_chain(&err);
                    if let Err(e) = self.ledger.notice_failed(n.id, &msg, retry_at, wall) {
                        return self.ledger_failed("recording a failed delivery", &e);
                    }
                }
            }
        }
    }
}
