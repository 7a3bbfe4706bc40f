//! The single integration-test binary. Add one `mod` line per module; each
//! module lives in tests/<name>/mod.rs (a top-level tests/<name>.rs would be
//! built as a separate test binary). See tests/README.md.

#![allow(clippy::print_stdout, clippy::print_stderr)] // tests may report tables and logs

mod common;

mod alarm;
mod harness_smoke;
mod iam_role;
mod log_group;

mod alb;
mod audit;
mod ci_example;
mod cli_flags;
mod crash;
mod demo;
mod deploy_rules;
mod ecs;
mod faults;
mod features;
mod first_contact;
mod foundation;
mod migrations_engine;
mod moved;
mod outputs;
mod properties;
mod rds_e2e;
mod rds_provider;
mod refresh_batching;
mod s3_backend;
mod s3_ssm_provider;
mod safety;
mod security_group;
