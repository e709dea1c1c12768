//! Delivery beside the loop: a worker thread per channel (e-mail, webhooks, the hook) takes the due notices
//! the loop hands it and delivers them one by one (each bounded by `notify.timeout_sec`, a hook's leftover
//! children never waited for), so a stalled webhook delays neither the loop nor the other channels; the
//! loop collects what was delivered or failed at its next cycle and records it. So no mail relay, webhook
//! or hook can delay a scan, a submission or SIGTERM: the loop never waits for the worker, and a stop does
//! not wait for a delivery in progress (that notice stays in the outbox and is sent after the restart).
//!
//! Owns: the worker, the notices handed to it and not yet answered. Must never: decide retries or write
//! the ledger (the loop does both), or hand a notice over twice while it is being delivered.

use std::collections::{HashMap, HashSet};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::config::NotifyConfig;
use crate::deliver::{self, Courier, DeliveryError, EmailTransport};
use crate::engine::notice::Channel;
use crate::ledger::Notice;

/// A batch for the worker: the notices, and what it takes to deliver them as the config is now.
struct Batch {
    notices: Vec<Notice>,
    cfg: NotifyConfig,
    email: EmailTransport,
}

/// What became of one notice handed over.
pub(super) struct Answer {
    /// The notice.
    pub notice: Notice,
    /// `channel target`, the key of its outage latch.
    pub latch_key: String,
    /// The target in words, for logs.
    pub label: String,
    /// `None`: not attempted (its target failed earlier in the batch; tried again later).
    pub result: Option<Result<(), DeliveryError>>,
}

/// The loop's handle on the workers.
pub(super) struct Dispatch {
    /// One per channel; empty: deliver inline, within [`Dispatch::hand_over`] (the in-process tests,
    /// which drive the loop with a manual clock and want each cycle's deliveries recorded in that cycle).
    workers: Vec<(Channel, Sender<Batch>)>,
    /// Answers of the worker (or of inline deliveries), with their sender for the inline case.
    answers: Receiver<Answer>,
    inline: Sender<Answer>,
    /// Notices handed over and not answered yet, with their channel.
    in_flight: HashMap<i64, Channel>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl Dispatch {
    /// Delivers within the loop's own call (tests).
    pub(super) fn inline() -> Dispatch {
        let (inline, answers) = crossbeam_channel::unbounded();
        Dispatch {
            workers: Vec::new(),
            answers,
            inline,
            in_flight: HashMap::new(),
        }
    }

    /// Starts the workers. They end when the loop's handle is dropped.
    pub(super) fn start() -> Dispatch {
        let (answer, answers) = crossbeam_channel::unbounded();
        let inline = answer.clone();
        let mut workers = Vec::new();
        for channel in Channel::ALL {
            let (to_worker, batches) = crossbeam_channel::unbounded::<Batch>();
            let (answer, span) = (answer.clone(), tracing::Span::current());
            std::thread::Builder::new()
                .name(format!("deliver-{}", channel.as_str()))
                .spawn(move || {
                    let _in_span = span.entered();
                    for b in batches {
                        if !work(b, &answer) {
                            break;
                        }
                    }
                })
                .expect("cannot start a delivery thread");
            workers.push((channel, to_worker));
        }
        Dispatch {
            workers,
            answers,
            inline,
            in_flight: HashMap::new(),
        }
    }

    /// The channels that may take a new batch (none of their notices is being delivered).
    pub(super) fn idle_channels(&self) -> Vec<Channel> {
        Channel::ALL.into_iter().filter(|c| self.idle(*c)).collect()
    }

    /// True when no notice of `channel` is being delivered: it may take a new batch.
    fn idle(&self, channel: Channel) -> bool {
        !self.in_flight.values().any(|c| *c == channel)
    }

    /// Hands `notices` to the workers of their channels (those still delivering take none of them).
    pub(super) fn hand_over(
        &mut self,
        notices: Vec<Notice>,
        cfg: &NotifyConfig,
        email: &EmailTransport,
    ) {
        let batch = |notices| Batch {
            notices,
            cfg: cfg.clone(),
            email: email.clone(),
        };
        if self.workers.is_empty() {
            self.in_flight
                .extend(notices.iter().map(|n| (n.id, n.channel)));
            work(batch(notices), &self.inline);
            return;
        }
        for (channel, w) in &self.workers {
            // A channel still delivering takes nothing new: its notices stay due for a later cycle.
            if !self.idle(*channel) {
                continue;
            }
            let mine: Vec<Notice> = notices
                .iter()
                .filter(|n| n.channel == *channel)
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let ids: Vec<i64> = mine.iter().map(|n| n.id).collect();
            // A worker that is gone (it panicked) takes nothing: those notices stay due.
            if w.send(batch(mine)).is_ok() {
                self.in_flight
                    .extend(ids.into_iter().map(|id| (id, *channel)));
            }
        }
    }

    /// The answers the worker has given since the last call (never waits).
    pub(super) fn answers(&mut self) -> Vec<Answer> {
        let mut out = Vec::new();
        loop {
            match self.answers.try_recv() {
                Ok(a) => {
                    self.in_flight.remove(&a.notice.id);
                    out.push(a);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.in_flight.clear();
                    break;
                }
            }
        }
        out
    }
}

/// Delivers a batch, one notice at a time; a target that fails is not tried again in this batch. False
/// when the loop is gone.
fn work(b: Batch, answer: &Sender<Answer>) -> bool {
    let mut failing: HashSet<String> = HashSet::new();
    let courier = Courier::new(&b.cfg, &b.email);
    for n in b.notices {
        let label = deliver::target_label(&n, &b.cfg);
        let latch_key = format!("{} {label}", n.channel.as_str());
        let result = if failing.contains(&latch_key) {
            None
        } else {
            let r = courier.deliver(&n);
            if r.is_err() {
                failing.insert(latch_key.clone());
            }
            Some(r)
        };
        let a = Answer {
            notice: n,
            latch_key,
            label,
            result,
        };
        if answer.send(a).is_err() {
            return false;
        }
    }
    true
}
