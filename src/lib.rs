//! Stackwright: an infrastructure-as-code provisioner for AWS.
//!
//! The crate is laid out one concern per module:
//! - [`stack`]: the TOML stack format, parsed and validated into a [`stack::Stack`] with spans for errors;
//! - [`eval`]: stack expressions → desired values, shared by plan and apply;
//! - [`graph`]: the dependency graph between resources (references and `depends_on`);
//! - [`refresh`]: reads of live resources, adoption of what an interrupted apply created;
//! - [`rules`]: deploy rules of an environment (windows, confirmation) and their clock;
//! - [`state`]: the state file model, its write-ahead journal and its storage backends;
//! - [`plan`]: diff, the plan model, its renderers and the saved plan file;
//! - [`apply`]: the executor that walks a plan, recording intents and outcomes;
//! - [`events`]: typed progress events every layer emits;
//! - [`providers`]: one file per AWS resource kind behind the [`providers::Provider`] trait;
//! - [`operations`]: long-running work inside apply (migrations; canaries next), checkpointed;
//! - [`migrations`]: database migrations (SQL files or the user's tool), lint, history;
//! - [`cli`]: argument parsing, commands and terminal output.

pub mod apply;
pub mod cli;
pub mod error;
pub mod eval;
pub mod events;
pub mod graph;
pub mod migrations;
pub mod operations;
pub mod plan;
pub mod providers;
pub mod refresh;
pub mod rules;
pub mod secret;
pub mod stack;
pub mod state;
pub mod value;
