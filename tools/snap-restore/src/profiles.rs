//! `snap-restore profiles [WHERE]` and `snap-restore profile take NAME
//! --from WHERE`: the profiles kept at a destination, and taking one into
//! this machine's config (snap_dest::profile_sync). Taking is reading from
//! a destination into this machine, snap-restore's role; publishing is
//! snap-push's (`--profile`).

use snap_cli::Reporter;
use snap_dest::profile_sync::{Request, take as take_one};
use snap_dest::{Dest, Reach, settings};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::profile::merge::{Side, units};

/// The destination `place` names, opened to read and write its profiles.
fn open(place: Option<&str>, loaded: Option<&LoadedConfig>) -> Result<(Dest, String)> {
    let Some(place) = place else {
        return Err(Error::usage(
            "profiles",
            "give WHERE (or --from WHERE): a configured destination, a URL or a folder",
        ));
    };
    let configured = settings::from_config(loaded)?;
    let spec = settings::resolve_arg(place, &configured)?;
    let dest = Dest::open(&spec, &snap_dest::runtime()?, &Reach::default(), false)?;
    Ok((dest, spec.name))
}

/// Lists the profiles at `place`: name, version, who published it and
/// when, and its sets.
pub fn list(place: Option<&str>, loaded: Option<&LoadedConfig>, report: &Reporter) -> Result<Exit> {
    let (dest, shown) = open(place, loaded)?;
    let mut out = std::io::stdout().lock();
    let names = dest.profiles()?;
    for (name, newest) in &names {
        let stored = dest.profile_version(name, *newest)?;
        let what = format!("profile {name} at {shown} (version {})", stored.version);
        let p = snap_shared::profile::parse(&stored.text, &what)?;
        let sets: Vec<String> = units(&p.config)
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix("backup_sets.").map(str::to_string))
            .collect();
        let machines: Vec<&str> = p.machines.keys().map(String::as_str).collect();
        let line = format!(
            "{name}  version {}  published by {} at {}  sets: {}{}\n",
            stored.version,
            p.published.host,
            p.published.at.format("%Y-%m-%d %H:%M:%S UTC"),
            if sets.is_empty() {
                "none".to_string()
            } else {
                sets.join(", ")
            },
            match machines.is_empty() {
                true => String::new(),
                false => format!("  machines: {}", machines.join(", ")),
            }
        );
        std::io::Write::write_all(&mut out, line.as_bytes())
            .map_err(|e| Error::io_ctx("stdout", e))?;
    }
    if names.is_empty() {
        report.note(&format!("no profiles at {shown}"));
    }
    Ok(Exit::Ok)
}

/// Takes profile `name` from `from` into the config.
pub fn take(
    name: &str,
    from: Option<&str>,
    (sets, mine, theirs): (&[String], bool, bool),
    loaded: Option<&LoadedConfig>,
    report: &Reporter,
) -> Result<Exit> {
    snap_dest::profiles::check_name(name)?;
    let Some(config) = loaded else {
        return Err(Error::new(
            Exit::Config,
            format!("profile {name}"),
            "no config to take it into",
        )
        .with_hint("give -c FILE (it may hold only {}), or write ~/.config/snap/config.json"));
    };
    let (dest, shown) = open(from, loaded)?;
    let prefer = Side::chosen(mine, theirs);
    let state = snap_dest::default_state_dir();
    let host = snap_shared::hostname();
    let out = take_one(&Request {
        name,
        dest: &dest,
        dest_name: &shown,
        config: &config.path,
        state_dir: &state,
        prefer,
        sets: (!sets.is_empty()).then_some(sets),
        host: &host,
        tool: TOOL_VERSION,
    })?;
    match &out.kept_as {
        Some(kept) => report.note(&format!(
            "took profile {name} version {} from {shown} into {}: {}; the old config is {}",
            out.version,
            config.path.display(),
            match out.taken.is_empty() {
                true => "nothing new".to_string(),
                false => out.taken.join(", "),
            },
            kept.display()
        )),
        None => report.note(&format!(
            "{} already holds profile {name} version {} from {shown}",
            config.path.display(),
            out.version
        )),
    }
    if !out.missing.is_empty() {
        return Err(snap_dest::profile_sync::left_out(name, &out.missing));
    }
    Ok(Exit::Ok)
}

const TOOL_VERSION: &str = concat!("snap-restore ", env!("CARGO_PKG_VERSION"));
