//! The installer's refusal before anything changed: wrong flags or a missing watch root.
//!
//! Owns: its words (`problem`, then `fix:`). Must never: be used once something was changed.

/// A refusal before anything changed: wrong flags or a missing watch root (exit status 2, see
/// `app::AppError::kind`).
#[derive(Debug, thiserror::Error)]
#[error("{problem}\n  fix: {fix}")]
pub struct UsageError {
    /// What is wrong.
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}
