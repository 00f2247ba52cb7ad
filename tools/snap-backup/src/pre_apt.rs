//! apt's hook (`DPkg::Pre-Install-Pkgs`): a rollback point before dpkg runs.
//!
//! apt gives its package list on stdin (version 2 of the hook protocol: a
//! header, its config, a blank line, then `NAME OLD COMPARE NEW ACTION` per
//! package; version 1: bare .deb paths). Every configured set (snap-collect)
//! and disk (snap-disk create --all) is snapshotted, tagged `pre-apt`, with
//! the packages in the description. It never fails: apt must go on whatever
//! happens, so a failure is a warning and the exit is 0.

use std::io::Read;
use std::process::Stdio;

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Exit, Result};

use crate::tools::{Tools, code};

/// Takes the rollback point; always `Ok(Exit::Ok)`.
pub fn run(tools: &Tools, loaded: Option<&LoadedConfig>, report: &Reporter) -> Result<Exit> {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let changes = changes(&input);
    let description = match changes.is_empty() {
        true => "before apt: (no package list from apt)".to_string(),
        false => format!("before apt: {changes}"),
    };
    let mut failed = 0;
    // A config of disks alone is not a failure to warn of at every apt run;
    // a missing config is, by snap-collect.
    if loaded.is_none_or(|c| !c.config.backup_sets.is_empty()) {
        failed = failed.max(quietly(
            tools,
            "snap-collect",
            &["--tag", "pre-apt", "--description", &description],
        ));
    }
    failed = failed.max(quietly(
        tools,
        "snap-disk",
        &[
            "create",
            "--all",
            "--tag",
            "pre-apt",
            "--description",
            &description,
        ],
    ));
    if failed != 0 {
        report.warn(&format!(
            "no complete pre-apt rollback point (exit {failed}, see above); apt goes on"
        ));
    }
    Ok(Exit::Ok)
}

/// Runs a tool with `--quiet`, its records dropped; its exit code (127 when it cannot start).
fn quietly(tools: &Tools, tool: &str, args: &[&str]) -> i32 {
    let status = tools
        .command(tool)
        .arg("--quiet")
        .args(args)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) => code(s),
        Err(e) => {
            eprintln!("snap-backup: cannot run {tool}: {e}");
            127
        }
    }
}

/// apt's list as one line: "install a 1.0, upgrade b 1 -> 2, remove c",
/// the first 10 and how many more.
pub fn changes(input: &str) -> String {
    let mut lines = input.lines().peekable();
    let v2 = lines.peek() == Some(&"VERSION 2");
    if v2 {
        // The header and apt's config, up to the blank line.
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for line in lines {
        let what = if !v2 {
            let file = line.rsplit('/').next().unwrap_or(line);
            let name = file.split('_').next().unwrap_or(file);
            if name.is_empty() {
                continue;
            }
            format!("install {name}")
        } else {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[4] == "**CONFIGURE**" {
                continue;
            }
            match f {
                _ if f[4] == "**REMOVE**" => format!("remove {}", f[0]),
                _ if f[1] == "-" => format!("install {} {}", f[0], f[3]),
                _ if f[1] == f[3] => format!("reinstall {} {}", f[0], f[3]),
                _ if f[2] == ">" => format!("downgrade {} {} -> {}", f[0], f[1], f[3]),
                _ => format!("upgrade {} {} -> {}", f[0], f[1], f[3]),
            }
        };
        if !seen.contains(&what) {
            seen.push(what);
        }
    }
    let mut out = seen.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if seen.len() > 10 {
        out.push_str(&format!(", and {} more", seen.len() - 10));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apt's version-2 list reads as install, upgrade, downgrade, reinstall
    /// and remove; configure lines and repeats are left out; version 1's
    /// paths are installs.
    #[test]
    fn apt_lists() {
        let v2 = "VERSION 2\nAPT::Architecture=amd64\n\n\
                  hello - < 2.10-3 **CONFIGURE**\n\
                  hello - < 2.10-3 /var/cache/apt/archives/hello_2.10-3_amd64.deb\n\
                  jq 1.6 < 1.7 /x/jq_1.7_amd64.deb\n\
                  jq 1.6 < 1.7 /x/jq_1.7_amd64.deb\n\
                  zsh 5.9 > 5.8 /x/zsh.deb\n\
                  tar 1.34 = 1.34 /x/tar.deb\n\
                  nano 7.2 > - **REMOVE**\n";
        assert_eq!(
            changes(v2),
            "install hello 2.10-3, upgrade jq 1.6 -> 1.7, downgrade zsh 5.9 -> 5.8, reinstall tar 1.34, remove nano"
        );
        assert_eq!(
            changes("/var/cache/apt/archives/hello_2.10-3_amd64.deb\n"),
            "install hello"
        );
        let many: String = (0..12).map(|i| format!("/x/p{i}_1_all.deb\n")).collect();
        assert!(changes(&many).ends_with("install p9, and 2 more"));
        assert_eq!(changes(""), "");
    }
}
