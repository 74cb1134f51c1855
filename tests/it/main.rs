//! Every integration test, in one binary: `support` is compiled once, and each
//! module holds the tests of one layer or one concern (ARCHITECTURE.md, "Where
//! the tests are", says which goes where). Run a part by its module: `cargo test
//! --test it cli::`.

#[macro_use]
mod support;

// Without root: what lab prints, the lessons and slides, the tutor's terminal.
mod cli;
mod render;
mod tutor;

// A step as a whole, every step of the curriculum (root).
mod steps;

// One layer each (root); the step it belongs to after each.
mod cgroup2_vm; // 6 to 9 on pure cgroup v2, in qemu (no root)
mod cgroups; // 6
mod images; // 7: importing images
mod network; // 5
mod overlay; // 7: the writable layer
mod pid; // 3
mod privileges; // 8
mod rootfs; // 1-2: the root filesystem
mod userns; // 9

// Across the layers (root).
mod apparmor; // lab's AppArmor profile, parsed by AppArmor 4
mod clean; // what a killed lab leaves
mod doctor;
mod exec; // lab ps, lab exec
mod faults; // killed, failing or panicking at every host point
mod lifecycle; // exit status, signals, Ctrl-C, names, several at once
mod peers; // Docker, Podman, runc, bwrap, nspawn, unshare graded by lab
mod provision; // the classroom VM's provisioning
mod show;
