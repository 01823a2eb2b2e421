//! End-to-end and interop tests: one binary, one module per concern.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod bad_input;
mod catalog;
mod cli_help;
mod commit_faults;
mod crash;
mod deletes;
mod evolution;
mod faults;
mod hostile;
mod inflight;
mod interleavings;
mod interop;
mod layout;
mod lossy;
mod maintenance;
mod native_scan;
mod operation_faults;
mod operation_interleavings;
mod pg;
mod planning;
mod race;
mod rest;
mod roundtrip;
mod sql;
mod sql_cli;
mod squash;
mod support;
mod sync;
