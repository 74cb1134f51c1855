//! The engine: what a layer is, and how a step runs, whatever the layers are.
//!
//! It turns the description of layers 1..N into output (`lab explain`, `lab
//! script`), into a running container (`lab step`, `lab verify`), or into a
//! verdict on someone else's container (`lab check`). It runs the curriculum
//! `main` hands it (curriculum.rs) and names no layer: the layers, in
//! `src/layers/`, are above it and plug into it (layer.rs); below it are the
//! kernel's interfaces (sys/, netlink.rs, mountinfo.rs) and lab's files (dirs.rs,
//! image/, rootfs.rs).
//!
//! - `layer.rs`: what a layer is (its description, its hooks, a step);
//! - `curriculum.rs`: the steps handed over, and the layers of a step;
//! - `spec.rs`: what the student asked for (`Spec`);
//! - `context.rs`: what a run learns as its lines apply, for the lines after;
//! - `plan.rs`: a layer's lines as data (`Command`, `Action`), and the plan of
//!   a step;
//! - `namespace.rs`: the one table of namespaces;
//! - `container.rs`: one run, phase by phase; `apply.rs`: one line applied;
//!   `init.rs`: the container's first process; `walk.rs` and `prompt.rs`: `--walk`'s question at each line;
//! - `check/`: what a check is, how a step's checks run, the probe;
//! - `message.rs`: what lab, its init and the probe say to each other;
//! - `state/`: what lab leaves on the host, and how it is found and cleaned;
//! - `render.rs`: plans and reports as text and JSON;
//! - `error.rs`: an error with a hint for the student.

pub mod apply;
pub mod check;
pub mod container;
pub mod context;
pub mod curriculum;
pub mod error;
pub mod init;
pub mod layer;
pub mod message;
pub mod namespace;
pub mod plan;
pub mod prompt;
pub mod render;
pub mod screen;
pub mod spec;
pub mod state;
pub mod walk;

/// For the unit tests that run printed commands: `bash FLAGS SCRIPT`, which
/// must succeed (its stderr is the failure's message).
#[cfg(test)]
pub fn run_bash(flags: &str, script: &str) {
    let out = std::process::Command::new("bash")
        .args([flags, script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
