//! Why one action of an apply failed, typed at the seam between the executor and its
//! readers (the summary, `--json`, the journal): the resource, the step that failed, and
//! the cause — an [`AwsError`] with its kind when AWS said no, a sentence otherwise.

use crate::providers::{AwsError, ErrorKind};

/// The step of an action that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Working out the inputs (references, secrets) before any AWS call.
    Prepare,
    Create,
    /// The create half of a replacement.
    CreateForReplacement,
    Update,
    Delete,
    /// The delete half of a delete-then-create replacement.
    DeleteForReplacement,
    /// The delete of the old object after a create-then-delete replacement.
    DeleteOld,
    /// A long-running operation (migrations).
    Operation,
    /// Writing the journal (nothing of the action is lost: it was not started).
    Journal,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Create => "create",
            Step::CreateForReplacement => "create (for replacement)",
            Step::Update => "update",
            Step::Delete => "delete",
            Step::DeleteForReplacement => "delete (for replacement)",
            Step::DeleteOld => "delete of the old object",
            Step::Operation => "operation",
            Step::Journal => "journal",
        }
    }
}

/// The cause of an [`ApplyError`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum Cause {
    #[error("{0}")]
    Aws(AwsError),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{}{source}", step_prefix(*operation))]
pub struct ApplyError {
    pub address: String,
    pub operation: Step,
    pub source: Cause,
}

/// "create failed: …" for AWS-facing steps; preparation and operations speak for themselves.
fn step_prefix(step: Step) -> String {
    match step {
        // Their messages say what failed already ("cannot write the journal …").
        Step::Prepare | Step::Operation | Step::Journal => String::new(),
        s => format!("{} failed: ", s.as_str()),
    }
}

impl ApplyError {
    pub fn aws(address: &str, operation: Step, e: AwsError) -> Self {
        ApplyError {
            address: address.to_owned(),
            operation,
            source: Cause::Aws(e),
        }
    }

    pub fn other(address: &str, operation: Step, message: impl Into<String>) -> Self {
        ApplyError {
            address: address.to_owned(),
            operation,
            source: Cause::Other(message.into()),
        }
    }

    /// The AWS error kind, for CI (`"access_denied"`, `"transient"`); `None` when the
    /// cause was not an AWS reply.
    pub fn kind(&self) -> Option<ErrorKind> {
        match &self.source {
            Cause::Aws(e) => Some(e.kind()),
            Cause::Other(_) => None,
        }
    }
}
