//! Stackwright: an infrastructure-as-code provisioner for AWS.
//!
//! The crate is laid out one concern per module:
//! - [`stack`]: the TOML stack format, parsed and validated into a [`stack::Stack`] with spans for errors;
//! - [`graph`]: the dependency graph between resources (references and `depends_on`);
//! - [`state`]: the state file model and its storage backends;
//! - [`plan`]: refresh, diff, the plan model, its renderers and the saved plan file;
//! - [`apply`]: the executor that walks a plan, and the events it emits;
//! - [`providers`]: one file per AWS resource kind behind the [`providers::Provider`] trait;
//! - [`migrations`]: database migrations (SQL files or the user's tool), lint, history;
//! - [`cli`]: argument parsing, commands and terminal output.

pub mod apply;
pub mod cli;
pub mod error;
pub mod graph;
pub mod migrations;
pub mod plan;
pub mod providers;
pub mod secret;
pub mod stack;
pub mod state;
pub mod value;
