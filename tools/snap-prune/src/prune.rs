//! Pruning what a job opened: plan each set, print the plan, remove what
//! goes, hand on the records, and sum up what was kept, freed and stored.

use snap_cli::Reporter;
use snap_shared::error::Result;
use snap_shared::record::{Extra, PruneAction, PrunedRecord, SCHEMA};
use snap_shared::retention::listing::{Entry, Group};
use snap_shared::size::human_bytes;

use crate::cli::{Cli, TOOL};
use crate::forget::forget_here;
use crate::jobs::Job;
use crate::plan::{self, Decision};
use crate::target::Target;

/// Totals of one target.
#[derive(Default)]
struct Totals {
    kept: u64,
    removed: u64,
    freed: u64,
    stored_before: u64,
    stored_after: u64,
    /// Records kept because they could not be read.
    unreadable: u64,
}

/// Prunes every target of a job; how many records it kept because it
/// could not read them.
pub(crate) fn prune_job(cli: &Cli, job: &Job, out: &mut Sink, report: &Reporter) -> Result<u64> {
    let mut unreadable = 0;
    for target in &job.targets {
        let mut totals = Totals::default();
        if !cli.dry_run {
            let finished = target.finish_interrupted()?;
            if finished > 0 {
                report.note(&format!(
                    "finished removing what an interrupted prune left in {}: freed {}",
                    target.location(),
                    human_bytes(finished)
                ));
                totals.freed += finished;
            }
        }
        if !cli.forget.is_empty() && !forget_here(cli, target) {
            continue;
        }
        let mut groups = target.scan(cli.set.as_deref())?;
        crate::away::mark_gone(job.away.as_ref(), target, &mut groups)?;
        if !cli.tags.is_empty() {
            only_tagged(target, &mut groups, &cli.tags)?;
        }
        // Most places hold no disk snapshots: say nothing of them there.
        if groups.is_empty() && matches!(target, Target::Disks { .. } | Target::Images(..)) {
            continue;
        }
        let rule = match cli.forget.is_empty() {
            true => format!("{} ({})", job.policy, job.source),
            false => format!("forget {}", cli.forget.join(", ")),
        };
        report.note(&format!(
            "{}s at {}: {rule}",
            target.what(),
            target.location(),
        ));
        for group in &groups {
            prune_group(cli, job, target, group, out, report, &mut totals)?;
        }
        summary(cli, job, target, &totals, groups.len(), report);
        unreadable += totals.unreadable;
    }
    Ok(unreadable)
}

/// `--tag`: leaves in each group only the entries having every tag of one
/// of the lists, as restic's `forget --tag` does (the rest are not judged).
fn only_tagged(target: &Target, groups: &mut Vec<Group>, lists: &[Vec<String>]) -> Result<()> {
    for g in groups.iter_mut() {
        let unread: Vec<&str> = g
            .entries
            .iter()
            .filter(|e| e.info.is_none())
            .map(|e| e.id.as_str())
            .collect();
        if !unread.is_empty() {
            let infos = target.infos(&g.set, &unread)?;
            let mut infos = infos.into_iter();
            for e in g.entries.iter_mut().filter(|e| e.info.is_none()) {
                e.info = infos.next();
            }
        }
        g.entries.retain(|e| {
            let tags = e.info.as_ref().map(|i| i.tags.as_slice()).unwrap_or(&[]);
            lists.iter().any(|l| l.iter().all(|t| tags.contains(t)))
        });
    }
    groups.retain(|g| !g.entries.is_empty());
    Ok(())
}

/// Plans one set, prints it, removes what goes, writes the records.
fn prune_group(
    cli: &Cli,
    job: &Job,
    target: &Target,
    group: &Group,
    out: &mut Sink,
    report: &Reporter,
    totals: &mut Totals,
) -> Result<()> {
    let mut t = Totals::default();
    let _set_lock = if cli.dry_run {
        None
    } else {
        target.lock_set(&group.set, TOOL)?
    };
    let now = chrono::Utc::now();
    let decisions = match cli.forget.is_empty() {
        true => plan::plan(target, group, &job.policy, now, &mut |w| report.warn(&w))?,
        false => plan::forget(target, group, &cli.forget)?,
    };
    // A forget speaks only of what it names.
    let named = match cli.forget.is_empty() {
        true => vec![true; group.entries.len()],
        false => plan::named_in(target, group, &cli.forget),
    };
    let doomed: Vec<&Entry> = group
        .entries
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !d.keep)
        .map(|(e, _)| e)
        .collect();
    let freed_each = if cli.dry_run {
        target.estimate_each(&group.set, &doomed)?
    } else {
        target.remove(&group.set, &doomed, job.catalog.as_ref())?
    };
    let mut freed = freed_each.iter();
    for ((entry, decision), named) in group.entries.iter().zip(&decisions).zip(&named) {
        let freed = if decision.keep {
            None
        } else {
            freed.next().copied()
        };
        if !named {
            t.count(entry, decision.keep, freed);
            continue;
        }
        show(cli, report, &group.set, entry, decision, freed);
        t.count(entry, decision.keep, freed);
        if let (Some(why), true) = (&entry.unreadable, decision.keep) {
            report.error(&format!(
                "{why}; kept (what cannot be read is never removed by a rule: --forget {}/{} removes it)",
                group.set, entry.id
            ));
            t.unreadable += 1;
        }
        let mut rec = record(cli, target, &group.set, entry, decision, freed);
        if decision.keep && cli.forget.is_empty() {
            let away = (&group.set[..], entry);
            let handed =
                crate::away::hand_over(job.away.as_ref(), target, away, cli.dry_run, report)?;
            if let Some((at, bytes)) = handed {
                rec.extra.insert("data_away".into(), at.into());
                rec.extra.insert("freed".into(), bytes.into());
                t.freed += bytes;
                t.stored_after = t.stored_after.saturating_sub(bytes);
            }
        }
        out(rec)?;
    }
    if let Target::Archives { .. } = target {
        report.note(&format!("  {}: {}", group.set, stored_line(&t, job.price)));
    }
    totals.add(&t);
    Ok(())
}

impl Totals {
    fn count(&mut self, entry: &Entry, keep: bool, freed: Option<u64>) {
        let stored = entry.bytes.unwrap_or(0);
        self.stored_before += stored;
        if keep {
            self.kept += 1;
            self.stored_after += stored;
        } else {
            self.removed += 1;
            self.freed += freed.unwrap_or(0);
        }
    }

    fn add(&mut self, o: &Totals) {
        self.unreadable += o.unreadable;
        self.kept += o.kept;
        self.removed += o.removed;
        self.freed += o.freed;
        self.stored_before += o.stored_before;
        self.stored_after += o.stored_after;
    }
}

/// Bytes stored before and after (and what they cost a month, given a price).
fn stored_line(t: &Totals, price: Option<f64>) -> String {
    let mut line = format!(
        "{} archive(s) stored in {}, {} kept in {}",
        t.kept + t.removed,
        human_bytes(t.stored_before),
        t.kept,
        human_bytes(t.stored_after)
    );
    if let Some(price) = price {
        line.push_str(&format!(
            "; about {} -> {} a month at {price} per GiB-month",
            cost(t.stored_before, price),
            cost(t.stored_after, price)
        ));
    }
    line
}

/// The plan's line for one entry: removals always (dry run: the whole plan), kept ones with -v.
fn show(cli: &Cli, report: &Reporter, set: &str, e: &Entry, d: &Decision, freed: Option<u64>) {
    let line = match (d.keep, &d.problem) {
        (true, _) => format!("  keep    {set}/{}  {}", e.id, d.reasons.join(", ")),
        (false, Some(p)) => format!("  remove  {set}/{}  {p}", e.id),
        (false, None) => format!(
            "  remove  {set}/{}{}",
            e.id,
            freed
                .map(|f| format!("  frees {}", human_bytes(f)))
                .unwrap_or_default()
        ),
    };
    if cli.dry_run || !d.keep {
        report.note(&line);
    } else {
        report.detail(|| line);
    }
}

fn record(
    cli: &Cli,
    target: &Target,
    set: &str,
    e: &Entry,
    d: &Decision,
    freed: Option<u64>,
) -> PrunedRecord {
    let mut extra = Extra::new();
    extra.insert("set".into(), set.into());
    extra.insert("what".into(), target.what().into());
    if let Some(b) = e.bytes {
        extra.insert("bytes".into(), b.into());
    }
    if let Some(f) = freed {
        extra.insert("freed".into(), f.into());
    }
    if let Some(p) = &d.problem {
        extra.insert("problem".into(), p.clone().into());
    }
    if cli.dry_run {
        extra.insert("dry_run".into(), true.into());
    }
    PrunedRecord {
        schema: SCHEMA.into(),
        target: target.location(),
        id: e.id.clone(),
        action: if d.keep {
            PruneAction::Keep
        } else {
            PruneAction::Remove
        },
        reasons: d.reasons.clone(),
        extra,
    }
}

/// The line that ends a target, with what it stores and costs at a destination.
fn summary(cli: &Cli, job: &Job, target: &Target, t: &Totals, sets: usize, report: &Reporter) {
    let verb = if cli.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let freed = if cli.dry_run { "would free" } else { "freed" };
    let mut line = format!(
        "{}: {sets} set(s), kept {}, {verb} {}, {freed} {}",
        target.location(),
        t.kept,
        t.removed,
        human_bytes(t.freed)
    );
    if let Target::Archives { .. } = target {
        line.push_str(&format!("; {}", stored_line(t, job.price)));
    }
    report.note(&line);
}

/// Monthly cost of `bytes` at `price` per GiB-month, to the cent.
fn cost(bytes: u64, price: f64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64 * price)
}

/// Where a run's `pruned` records go: stdout for the CLI, a list for the page.
pub type Sink<'a> = dyn FnMut(PrunedRecord) -> Result<()> + 'a;
