//! `snap-docgen [--check]`: man pages (`man/`) and bash, zsh and fish
//! completions (`completions/`), generated from every tool's `command()`
//! so they never drift from the flags. It lives apart from xtask, as
//! uutils' uudoc does, because it is the one thing that needs every tool
//! built: `cargo xtask` itself then compiles in seconds. `cargo xtask gen`
//! runs it; `--check` fails naming the stale files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

type Result<T = ()> = std::result::Result<T, String>;

/// Every tool's clap definition. A new tool adds one line here.
fn tools() -> Vec<clap::Command> {
    vec![
        snap_collect::command(),
        snap_pack::command(),
        snap_push::command(),
        snap_prune::command(),
        snap_disk::command(),
        snap_restore::command(),
        snap_backup::command(),
    ]
}

/// The files `gen` owns, by path relative to the workspace root.
fn render_all() -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for cmd in tools() {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .map_err(|e| format!("man page of {name}: {e}"))?;
        files.insert(PathBuf::from(format!("man/{name}.1")), page);
        // A page per subcommand (snap-disk-create.1), so every flag is in a man page.
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            let mut page = Vec::new();
            clap_mangen::Man::new(
                sub.clone()
                    .name(&*Box::leak(sub_name.clone().into_boxed_str())),
            )
            .render(&mut page)
            .map_err(|e| format!("man page of {sub_name}: {e}"))?;
            files.insert(PathBuf::from(format!("man/{sub_name}.1")), page);
        }
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            files.insert(PathBuf::from("completions").join(file), out);
        }
    }
    Ok(files)
}

fn main() {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("snap-docgen: unknown argument {other} (it takes --check)");
            std::process::exit(64);
        }
    };
    if let Err(e) = run(check) {
        eprintln!("snap-docgen: {e}");
        std::process::exit(1);
    }
}

/// The workspace root, where `man/` and `completions/` live.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("snap-docgen lives in the workspace")
        .to_path_buf()
}

fn run(check: bool) -> Result {
    let files = render_all()?;
    let root = root();
    let stale: Vec<String> = files
        .iter()
        .filter(|(path, content)| std::fs::read(root.join(path)).ok().as_ref() != Some(*content))
        .map(|(path, _)| path.display().to_string())
        .collect();
    if check {
        if stale.is_empty() {
            eprintln!("snap-docgen: man pages and completions are up to date");
            return Ok(());
        }
        return Err(format!(
            "generated files are stale: {}\nrun `cargo xtask gen` and commit the result",
            stale.join(", ")
        ));
    }
    for (path, content) in &files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().expect("generated files live in folders"))
            .map_err(|e| format!("{}: {e}", full.display()))?;
        std::fs::write(&full, content).map_err(|e| format!("{}: {e}", full.display()))?;
    }
    eprintln!(
        "snap-docgen: wrote {} files ({} changed)",
        files.len(),
        stale.len()
    );
    Ok(())
}
