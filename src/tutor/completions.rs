//! `lab completions bash|zsh|fish`: Tab completion for the shell.
//!
//! clap_complete writes the subcommands and options from the same definitions as
//! `lab --help`. Bash, the classroom's shell, also completes what only lab knows
//! at the moment Tab is pressed: step numbers, lesson names, image names after
//! `--image`, container names after `show` and `exec`. It asks lab for them with
//! `lab names WHAT` (a hidden subcommand, one name per line).

use clap_complete::Shell;

/// The completion script for `shell`.
pub fn script(shell: Shell, cli: &mut clap::Command) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, cli, "lab", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        // clap's function becomes _lab_clap; _lab answers first what changes.
        Shell::Bash => text.replacen("_lab() {", "_lab_clap() {", 1) + BASH,
        _ => text,
    }
}

const BASH: &str = r#"
# lab's own: what is known only when Tab is pressed.
_lab() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local sub="${COMP_WORDS[1]}" names=""
    if [ "$prev" = "--image" ]; then
        names="$(lab names images 2>/dev/null)"
    elif [ "$COMP_CWORD" -eq 2 ]; then
        case "$sub" in
            step|explain|script|verify|check|hint) names="$(lab names steps 2>/dev/null)" ;;
            lesson|quiz) names="$(lab names lessons 2>/dev/null)" ;;
            show|exec) names="$(lab names containers 2>/dev/null)" ;;
        esac
    fi
    if [ -n "$names" ]; then
        COMPREPLY=($(compgen -W "$names" -- "$cur"))
        return 0
    fi
    _lab_clap "$@"
}
"#;

/// `lab names WHAT`: the names Tab completes, one per line.
pub fn names(what: &str) -> Vec<String> {
    match what {
        "steps" => crate::engine::curriculum::built()
            .iter()
            .map(u8::to_string)
            .collect(),
        "lessons" => crate::lesson::LESSONS
            .iter()
            .flat_map(|l| {
                let n = crate::lesson::number(l).to_string();
                if l.key == n {
                    vec![n]
                } else {
                    vec![n, l.key.to_string()]
                }
            })
            .collect(),
        "images" => crate::image::Store::open()
            .list()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect(),
        "containers" => crate::engine::state::live_containers()
            .iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect(),
        _ => vec![],
    }
}
