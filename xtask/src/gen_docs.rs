//! `cargo xtask gen [--check]`: runs snap-docgen (docgen/), which makes the
//! man pages and completions from every tool's `command()`. Kept out of
//! xtask so that `cargo xtask` does not build every tool before it starts.

use crate::sh::{Result, cargo, exec};

pub fn run(check: bool) -> Result {
    let mut cmd = cargo();
    cmd.args(["run", "-q", "-p", "snap-docgen", "--"]);
    if check {
        cmd.arg("--check");
    }
    exec(&mut cmd)
}
