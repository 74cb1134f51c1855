//! `lab inspect`'s screen and its JSON.

use super::Inspected;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// One screen: a line or two for each layer, the calls, the escapes.
pub fn text(i: &Inspected) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Process {} · made by {}", i.pid, i.maker);
    let _ = writeln!(o, "its root: {}", i.root);
    let _ = writeln!(
        o,
        "\nLayer                                      on?   what the kernel shows"
    );
    for l in &i.layers {
        let title = format!("{} {}", l.layer, l.title);
        for (n, f) in l.facts.iter().enumerate() {
            match n {
                0 => {
                    let _ = writeln!(o, "  {title:<40} {:<5} {f}", l.on.word());
                }
                _ => {
                    let _ = writeln!(o, "  {:<40} {:<5} {f}", "", "");
                }
            }
        }
    }
    if !i.calls.is_empty() {
        let _ = writeln!(
            o,
            "\nSystem calls inside (harmless arguments; under its capabilities and seccomp filter, not its AppArmor or SELinux profile)"
        );
        for c in &i.calls {
            let _ = writeln!(o, "  {:<24} {}", c.name, c.answer);
        }
    }
    let _ = writeln!(
        o,
        "\nEscapes of the arc (tried harmlessly, as lab check does)"
    );
    for e in &i.escapes {
        let name = e.name.trim_start_matches("escape: ");
        let _ = writeln!(o, "  {:<10} {name}", e.state);
    }
    let _ = writeln!(
        o,
        "\nEach layer's checks prove more, and say why: sudo lab check 9 --pid {}",
        i.pid
    );
    o
}

pub fn json(i: &Inspected) -> String {
    let v: Value = json!({
        "pid": i.pid,
        "made_by": i.maker,
        "root": i.root,
        "layers": i.layers.iter().map(|l| json!({
            "layer": l.layer,
            "title": l.title,
            "on": l.on.word(),
            "summary": l.summary,
            "facts": l.facts,
        })).collect::<Vec<_>>(),
        "system_calls": i.calls.iter().map(|c| json!({"call": c.name, "answer": c.answer})).collect::<Vec<_>>(),
        "escapes": i.escapes.iter().map(|e| json!({"escape": e.name, "state": e.state, "detail": e.detail})).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}
