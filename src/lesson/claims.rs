//! Claims of the lessons about the kernel that were found wrong (issue #31), as
//! tests (part of lesson/, after mod.rs). Where the lesson's text can be held
//! against lab itself (the curriculum, the commands it prints, the capabilities
//! it keeps), it is; the rest guards against the wrong sentence coming back, and
//! says why it was wrong. Each new sentence was checked against the kernel's
//! documentation or source, or tried: the commit that wrote it says how.

#[cfg(test)]
mod tests {
    use crate::lesson::{find, Lesson};

    fn lesson(key: &str) -> &'static Lesson {
        find(key).unwrap()
    }

    /// Its words, one space between each: a phrase may wrap anywhere.
    fn flat(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn absent(lesson: &Lesson, phrase: &str, why: &str) {
        assert!(
            !flat(lesson.text).contains(phrase),
            "lessons/{} says \"{phrase}\": {why}",
            lesson.file
        );
    }

    /// Lab's command runs under no_new_privs (its last line at step 8), with
    /// which an exec never raises the permitted set above the one it had
    /// (security/commoncap.c, cap_bprm_creds_from_file: with
    /// LSM_UNSAFE_NO_NEW_PRIVS the new permitted set is cut to the old one):
    /// cutting the permitted set alone would last. The bounding set, the
    /// filter and the masks hold without no_new_privs, which Docker leaves off.
    #[test]
    fn lesson_8_says_what_no_new_privs_does() {
        let run = super::super::blocks::run_line(&super::super::tests::classroom_explain(8, None));
        assert!(run.contains("--no-new-privs"), "{run}");
        let eight = lesson("8");
        absent(
            eight,
            "cutting permitted alone would not last",
            "with no_new_privs, which the same line sets, it would",
        );
        absent(
            eight,
            "Without it nothing of the rest would hold",
            "the bounding set, the seccomp filter and the masks hold without it",
        );
        let nnp = flat(eight.text);
        assert!(nnp.contains("never raises the permitted set"), "{nnp}");
    }
}
