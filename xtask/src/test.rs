//! `cargo xtask test`: everything CI runs, from a fresh machine.

use crate::sh::{Result, cargo, ensure_apt, exec};

/// Programs the tests call, with the Debian package that has each.
pub const TEST_PROGRAMS: &[(&str, &str)] = &[
    ("zstd", "zstd"),
    ("jq", "jq"),
    ("setpriv", "util-linux"),
    ("diff", "diffutils"),
    ("mkfifo", "coreutils"),
];

pub fn run() -> Result {
    ensure_apt(TEST_PROGRAMS)?;
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(cargo().args(["build", "--workspace", "--bins"]))?;
    exec(cargo().args(["test", "--workspace"]))?;
    crate::gen_docs::run(true)
}
