//! `snap-push --profile NAME --dest D`: publishes this machine's profile
//! (snap_dest::profile_sync). It lives in snap-push because publishing is
//! writing to destinations, snap-push's role; taking one is reading from a
//! destination into this machine, snap-restore's (`profile take`).

use snap_cli::Reporter;
use snap_dest::profile_sync::{Request, publish as publish_one};
use snap_dest::{Dest, Reach, settings};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::profile::merge::Side;

use crate::cli::{Cli, TOOL};

/// Publishes profile `name` to every `--dest`; destinations it took that
/// have no place here are the error (64), after every publish.
pub fn publish(cli: &Cli, name: &str, report: &Reporter) -> Result<Exit> {
    snap_dest::profiles::check_name(name)?;
    let Some(loaded) = LoadedConfig::load_optional(cli.config.as_deref())? else {
        return Err(Error::new(
            Exit::Config,
            format!("profile {name}"),
            "no config: a profile is the shareable part of one",
        )
        .with_hint("give -c FILE, or write ~/.config/snap/config.json"));
    };
    let configured = settings::from_config(Some(&loaded))?;
    let rt = snap_dest::runtime()?;
    let state = cli
        .state_dir
        .clone()
        .unwrap_or_else(snap_dest::default_state_dir);
    let prefer = Side::chosen(cli.mine, cli.theirs);
    let host = snap_shared::hostname();
    let tool = format!("{TOOL} {}", env!("CARGO_PKG_VERSION"));
    let mut missing = Vec::new();
    for arg in &cli.dests {
        let spec = settings::resolve_arg(arg, &configured)?;
        let dest = Dest::open(&spec, &rt, &Reach::default(), true)?;
        let out = publish_one(&Request {
            name,
            dest: &dest,
            dest_name: &spec.name,
            config: &loaded.path,
            state_dir: &state,
            prefer,
            sets: None,
            host: &host,
            tool: &tool,
        })?;
        let what = match out.published {
            true => format!(
                "published profile {name} version {} to {}",
                out.version, spec.name
            ),
            false => format!(
                "profile {name} at {} is up to date (version {})",
                spec.name, out.version
            ),
        };
        report.note(&what);
        if !out.taken.is_empty() {
            report.note(&format!(
                "took what changed at {} only: {}; the old config is {}",
                spec.name,
                out.taken.join(", "),
                out.kept_as
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
        missing.extend(out.missing);
    }
    if !missing.is_empty() {
        return Err(snap_dest::profile_sync::left_out(name, &missing));
    }
    Ok(Exit::Ok)
}
