//! Opening what a run prunes: the store (its trees, its own archives and
//! disk snapshots, with the store lock and the catalog) or a destination
//! (its archives and disk snapshots, under the destination's exclusive
//! lock), each with the policy that applies there.

use snap_cli::Reporter;
use snap_dest::{Dest, DestSpec, Held, LockOptions, Mode, Reach};
use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::lock::StoreLock;
use snap_shared::store::{self, Store};

use crate::away::Handover;
use crate::cli::{Cli, TOOL, no_rule};
use crate::target::Target;
use snap_shared::retention::policy::Policy;
use snap_shared::retention::rules::{self, KeepArchives};
use snap_shared::retention::tagged::Rules;
use snap_shared::schedule::{Every, Schedule};

/// The store: its snapshot trees and its own archives.
pub(crate) fn store_job(
    cli: &Cli,
    report: &Reporter,
    loaded: Option<&LoadedConfig>,
    flags: Option<Policy>,
    retention: Option<&serde_json::Value>,
) -> Result<Job> {
    let (policy, source) = match flags {
        Some(p) => (Rules::from(p), "--keep-*".to_string()),
        None => rules::configured(retention, None)?.ok_or_else(|| {
            no_rule("none given for the store (\"retention\": {\"local\": N} in the config)")
        })?,
    };
    let store = Store::new(store::locate(
        cli.store.as_deref(),
        LoadedConfig::store(loaded),
    ));
    if !store.root.is_dir() {
        return Err(Error::new(
            Exit::NoInput,
            format!("store {}", store.root.display()),
            "not found",
        )
        .with_hint("give --store DIR, or --dest to prune a destination"));
    }
    let mut locks = Vec::new();
    let mut catalog = None;
    if !cli.dry_run {
        locks.push(StoreLock::acquire(&store.lock_path(), TOOL)?);
        catalog = open_catalog(&store, report);
    }
    let mut targets = vec![Target::Trees(store.clone())];
    let archives = store.archives_dir();
    if archives.is_dir() {
        let spec = DestSpec::from_url(&archives.display().to_string())?;
        let dest = Dest::open(&spec, &snap_dest::runtime()?, &Reach::default(), false)?;
        targets.push(Target::Archives {
            dest,
            store: Some(store.clone()),
        });
    }
    if store.root.join("disks").is_dir() {
        let spec = DestSpec::from_url(&store.root.display().to_string())?;
        let dest = Dest::open(&spec, &snap_dest::runtime()?, &Reach::default(), false)?;
        targets.push(Target::Disks {
            dest,
            store: Some(store.clone()),
        });
        let images = crate::images::Images::new(
            &store,
            loaded.cloned(),
            cli.include_foreign,
            Reporter::new(TOOL, cli.loudness.quiet, cli.loudness.verbose),
        );
        targets.push(Target::Images(Box::new(images), store.clone()));
    }
    let away = handover(loaded, retention, &store)?;
    Ok(Job {
        targets,
        policy,
        source,
        price: None,
        catalog,
        _locks: locks,
        held: None,
        away,
    })
}

/// With `retention.keep_archives: "until-pushed"`, what judges whether the
/// store's archives are at every configured destination.
fn handover(
    loaded: Option<&LoadedConfig>,
    retention: Option<&serde_json::Value>,
    store: &Store,
) -> Result<Option<Handover>> {
    if rules::keep_archives(retention)? != KeepArchives::UntilPushed {
        return Ok(None);
    }
    let specs = snap_dest::settings::from_config(loaded)?;
    let schedule = loaded.and_then(|c| c.config.schedule.as_ref());
    let verify = Schedule::parse(schedule)
        .map_err(|e| match loaded {
            Some(c) => c.blame(e),
            None => e,
        })?
        .verify
        != Every::Never;
    Handover::new(specs, verify, store)
}

/// The catalog, to keep it in step with the files. It is only an index: if
/// it cannot be opened the prune goes on and the next tool rebuilds it.
fn open_catalog(store: &Store, report: &Reporter) -> Option<Catalog> {
    match Catalog::open(store) {
        Ok((catalog, warning)) => {
            if let Some(w) = warning {
                report.warn(&w);
            }
            Some(catalog)
        }
        Err(e) => {
            report.warn(&format!("{e}; it will be rebuilt from the records"));
            Catalog::invalidate(store);
            None
        }
    }
}

/// A destination's archives.
pub(crate) fn dest_job(
    cli: &Cli,
    report: &Reporter,
    spec: &DestSpec,
    flags: Option<Policy>,
    retention: Option<&serde_json::Value>,
    rt: &std::sync::Arc<snap_dest::Runtime>,
) -> Result<Job> {
    let (policy, source) = match flags {
        Some(p) => (Rules::from(p), "--keep-*".to_string()),
        None => {
            // A destination given by URL alone has only the `external` rules.
            let name = if spec.configured {
                spec.name.as_str()
            } else {
                ""
            };
            rules::configured(retention, Some(name))?.ok_or_else(|| {
                no_rule(&format!(
                    "none given for destination {} (\"retention\": {{\"external\": N}} in the config)",
                    spec.name
                ))
            })?
        }
    };
    let mut dest = Dest::open(spec, rt, &Reach::default(), false)?;
    let mut locks = Vec::new();
    let mut held = None;
    if !cli.dry_run {
        let state = cli
            .state_dir
            .clone()
            .unwrap_or_else(snap_dest::default_state_dir);
        locks.push(dest.local_lock(&state, TOOL)?);
        let opts = LockOptions {
            break_others: cli.break_lock,
        };
        let (fenced, h) = dest.hold(Mode::Exclusive, TOOL, &opts)?;
        for n in &h.notes {
            report.warn(&format!("destination {}: {n}", dest.name));
        }
        dest = fenced;
        held = Some(h);
    }
    Ok(Job {
        targets: vec![
            Target::Archives {
                dest: dest.clone(),
                store: None,
            },
            Target::Disks { dest, store: None },
        ],
        policy,
        source,
        price: spec.price_per_gib_month,
        catalog: None,
        _locks: locks,
        held,
        away: None,
    })
}

/// One place to prune, with its policy and whatever it needs held.
pub(crate) struct Job {
    pub(crate) targets: Vec<Target>,
    pub(crate) policy: Rules,
    /// The field the policy came from (`--keep-*` or `retention.NAME`).
    pub(crate) source: String,
    pub(crate) price: Option<f64>,
    pub(crate) catalog: Option<Catalog>,
    pub(crate) _locks: Vec<StoreLock>,
    /// The exclusive lock at a destination.
    pub(crate) held: Option<Held>,
    /// The store's, with `keep_archives: until-pushed`.
    pub(crate) away: Option<Handover>,
}
