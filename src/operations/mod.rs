//! Long-running work of an apply that is not a resource's create/update/delete: database
//! migrations now, the canary next. An operation has its own plan section, runs as a step
//! slotted into the apply graph, and checkpoints each completed step in state (through the
//! apply's journal, as `Event::Checkpoint`), so an interrupted run is reported by the next
//! plan and resumed by the next apply.

pub mod migrations;
