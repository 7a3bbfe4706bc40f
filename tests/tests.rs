//! The single integration-test binary. Add one `mod` line per module; each
//! module lives in tests/<name>/mod.rs (a top-level tests/<name>.rs would be
//! built as a separate test binary). See tests/README.md.

mod common;

mod harness_smoke;

mod foundation;
mod migrations_engine;
mod rds_e2e;
mod rds_provider;
mod s3_ssm_provider;
