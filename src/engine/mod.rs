//! The decision core: given what was observed and the time, say what to do. Pure: no clock, no I/O.
//!
//! Owns: the model of a directory generation ([`model`]), ready-file stability ([`stability`]), what a
//! scheduler answer means and what follows a job's end ([`verdict`]), whether a scheduler's row is about our
//! job, final, or the job lost ([`judge`]), refusals that are configuration errors ([`rejection`]), who is
//! told of which event and what follows a failed delivery ([`notice`]), outages and back-off ([`outage`]),
//! the pace of submissions and rechecks ([`pace`]), and the agenda of a cycle with the loop's schedule
//! ([`agenda`]). Must never: read the
//! clock, touch the file
//! system, run a process or import a module that does; time always comes in as a parameter, so tests never
//! sleep (a test in `lib.rs` checks the imports).

pub mod agenda;
pub mod judge;
pub mod markers;
pub mod model;
pub mod mounts;
pub mod notice;
pub mod outage;
pub mod pace;
pub mod patterns;
pub mod presets;
pub mod readiness;
pub mod rejection;
pub mod stability;
pub mod verdict;

pub use agenda::{
    Agenda, BackoffPolicy, Cadence, LookupStep, Schedule, Timing, after_lookup, lookup_grace,
    submit_backoff,
};
pub use judge::{
    Identity, JobRow, JudgePolicy, Judgement, Sightings, Source, TrackedJob, Verdict, identify,
    judge,
};
pub use model::{
    ArrayTask, GenState, Generation, GenerationVerdict, LockProbe, ReadyIdentity,
    generation_verdict, job_name,
};
pub use outage::{OutageEdge, OutageLatch, backoff};
pub use pace::{PaceSignal, SubmitPace, TokenBucket, first_recheck, pace_signal, unready_next};
pub use presets::Preset;
pub use readiness::{
    ContentCheck, ContentLook, DirLook, EntryLook, NotReady, QuietScope, ReadyDecision, ReadyRules,
};
pub use rejection::{Rejection, RejectionEdge, RejectionLatch, classify_rejection};
pub use stability::{Readiness, ReadyObservation, StabilityPolicy, StabilityTracker};
pub use verdict::{
    JobDetail, JobPhase, JobReport, OutcomePlan, OutcomePolicy, classify_state, plan_outcome,
    state_word,
};
