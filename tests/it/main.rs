//! Every integration test, in one binary: `support` is compiled once, and each
//! module holds the tests of one layer or one concern (see ARCHITECTURE.md,
//! "Where the tests are"). Select a part by its module: `cargo test --test it
//! cli::`.

#[macro_use]
mod support;

mod cgroup2_vm;
mod cli;
mod faults;
mod images;
mod network;
mod privileged;
mod provision;
mod render;
mod show;
mod tutor;
