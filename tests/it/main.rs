//! End-to-end and interop tests: one binary, one module per concern.

mod bad_input;
mod commit_faults;
mod faults;
mod interop;
mod race;
mod roundtrip;
mod support;
