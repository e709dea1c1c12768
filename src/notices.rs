//! What an event tells whom: the event document and one notice per channel and target, ready to be
//! committed to the outbox in the same transaction as the event itself — by the daemon (a job's end, a
//! lost job, a refused submission) and by the operator's commands (`cancel`).
//!
//! Owns: building the event document from a generation and what happened to it, reading the directory's
//! owner from its meta file when an e-mail could go to them, and the tail of a failed job's output. Must
//! never: write anything, or read more of a job's output than the tail's bound.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::config::Config;
use crate::deliver::{self, EmailTransport, MetaProblem};
use crate::engine::notice::{self, Audience, Event, EventKind};
use crate::engine::{Generation, JobDetail};
use crate::ledger::NewNotice;
use crate::time::Millis;

/// The notices of one event, ready to be committed with it.
#[derive(Debug, Default)]
pub struct Queued {
    /// What happened.
    event: Option<EventKind>,
    /// One per channel and target.
    notices: Vec<notice::Notice>,
    /// The event document, as every notice carries it.
    payload: String,
}

impl Queued {
    /// The outbox rows to insert.
    pub fn rows(&self) -> Vec<NewNotice<'_>> {
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
pub struct EndFacts<'a> {
    /// State word.
    pub state: &'a str,
    /// `code:signal`.
    pub exit_code: &'a str,
    /// Reason, nodes, run time.
    pub detail: &'a JobDetail,
}

/// What happened to a generation, as far as telling people goes.
#[derive(Debug, Clone, Copy)]
pub struct Fact<'a> {
    /// The kind of event.
    pub kind: EventKind,
    /// The generation (`None`: a directory never submitted, held back by a readiness rule).
    pub g: Option<&'a Generation>,
    /// The directory's name in the root.
    pub dir: &'a std::ffi::OsStr,
    /// Its job id, when the generation's record does not have it yet.
    pub job_id: Option<&'a str>,
    /// How its job ended.
    pub end: Option<EndFacts<'a>>,
    /// Why (a refusal's reason), when the end's reason does not say.
    pub reason: Option<&'a str>,
    /// Who did it (an operator's cancel).
    pub by: Option<&'a str>,
    /// What happens next, in words.
    pub next: Option<&'a str>,
    /// Attach the tail of the job's output.
    pub with_tail: bool,
    /// When (wall ms).
    pub wall: Millis,
}

impl<'a> Fact<'a> {
    /// `kind` happened to `g` at `wall`; nothing else known.
    pub fn of(kind: EventKind, g: &'a Generation, wall: Millis) -> Fact<'a> {
        Fact {
            kind,
            g: Some(g),
            dir: &g.dir,
            job_id: None,
            end: None,
            reason: None,
            by: None,
            next: None,
            with_tail: false,
            wall,
        }
    }

    /// `dir` (never submitted) is held back by a readiness rule, for `reason`.
    pub fn held(dir: &'a std::ffi::OsStr, reason: &'a str, wall: Millis) -> Fact<'a> {
        Fact {
            kind: EventKind::Held,
            g: None,
            dir,
            job_id: None,
            end: None,
            reason: Some(reason),
            by: None,
            next: Some(
                "it is not submitted while its status file says so; a new ready-file (after the run is \
                 repeated) is picked up as usual",
            ),
            with_tail: false,
            wall,
        }
    }
}

/// `wall` as RFC 3339 in UTC, to the second.
pub fn rfc3339(wall: Millis) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(wall).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The notices `f` gets (nothing when `notify.events` does not list its kind), and what was wrong with
/// the directory's meta file, if anything (its owner then gets no e-mail). The meta file is read only
/// when an e-mail could go to the directory's owner.
pub fn queue(cfg: &Config, email: &EmailTransport, f: Fact<'_>) -> (Queued, Option<MetaProblem>) {
    let n = &cfg.notify;
    let job_id = f.job_id.or(f.g.and_then(|g| g.job_id.as_deref()));
    // The database has a row per job: an event without one (a cancelled submission) is not written.
    let database = n.db.is_some() && f.kind.reaches_database() && job_id.is_some();
    let listed = n.events.contains(&f.kind) && n.any_channel();
    if !listed && !database {
        return (Queued::default(), None);
    }
    let can_email = *email != EmailTransport::None;
    let mail_owner = listed && can_email && n.email_owner && f.kind != EventKind::Blocked;
    let mut problem = None;
    let owner = if mail_owner || database {
        match deliver::read_owner(&cfg.watch.root, f.dir) {
            Ok(o) => o,
            Err(p) => {
                // Said when it costs the owner a mail; the database then has no `users` match, as with
                // the original.
                problem = mail_owner.then_some(p);
                None
            }
        }
    } else {
        None
    };
    let address = owner
        .as_deref()
        .filter(|_| database)
        .and_then(notice::mailbox)
        .map(|(_, a)| a);
    let audience = Audience {
        events: if listed { &n.events } else { &[] },
        email: can_email,
        email_to: &n.email_to,
        owner: owner.as_deref().filter(|_| mail_owner),
        webhooks: &n.webhooks,
        command: !n.command.is_empty(),
        owner_address: address,
        database,
    };
    let notices = notice::notices_for(f.kind, &audience);
    if notices.is_empty() {
        return (Queued::default(), problem);
    }
    let dir_path = cfg.watch.root.join(f.dir);
    let job_name = f.g.map_or_else(
        || crate::engine::job_name(&cfg.job.job_name_prefix, f.dir),
        |g| g.scheduler_name().to_string(),
    );
    let output = job_id.and_then(|id| {
        crate::scheduler::output_file(&cfg.job, &cfg.watch.root, &dir_path, id, &job_name)
    });
    let tail = output
        .as_deref()
        .filter(|_| f.with_tail)
        .and_then(read_tail)
        .and_then(|(bytes, cut)| notice::output_tail(&bytes, cut));
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let end = f.end;
    let event = Event {
        schema: notice::SCHEMA.into(),
        event: f.kind,
        time: rfc3339(f.wall),
        dir: dir_path.to_string_lossy().into_owned(),
        job_id: job_id.map(str::to_string),
        job_name: f.g.map(|g| g.scheduler_name().to_string()),
        state: end.map(|e| e.state.to_string()),
        exit_code: end.and_then(|e| text(e.exit_code)),
        reason: f
            .reason
            .map(str::to_string)
            .or_else(|| end.and_then(|e| text(&e.detail.reason))),
        nodes: end.and_then(|e| text(&e.detail.nodes)),
        elapsed_sec: end.and_then(|e| e.detail.elapsed_sec),
        output: output.map(|p| p.to_string_lossy().into_owned()),
        attempt: f.g.map_or(0, |g| g.attempt),
        by: f.by.map(str::to_string),
        next: f.next.map(str::to_string),
        output_tail: tail,
        host: crate::deliver::host_name(),
        instance: cfg
            .behavior
            .instance
            .as_ref()
            .map(|i| i.as_str().to_string()),
    };
    let q = Queued {
        event: Some(f.kind),
        notices,
        payload: serde_json::to_string(&event).unwrap_or_default(),
    };
    (q, problem)
}

/// The last [`notice::TAIL_BYTES`] bytes of a job's output file, and whether it began before them: never
/// through a symlink at the file itself (`job.output: ""` puts it in the data directory, which its owner
/// controls), only a regular file.
fn read_tail(path: &std::path::Path) -> Option<(Vec<u8>, bool)> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() {
        return None;
    }
    let len = m.len();
    let from = len.saturating_sub(notice::TAIL_BYTES as u64);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::with_capacity(notice::TAIL_BYTES);
    f.take(notice::TAIL_BYTES as u64)
        .read_to_end(&mut buf)
        .ok()?;
    Some((buf, from > 0))
}
