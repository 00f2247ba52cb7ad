//! Snapshot ids and set names.
//!
//! An id is the UTC time of the snapshot, `YYYY-MM-DDTHHMMSSZ`: sortable as
//! text, no colons (safe on every filesystem and in URLs), with `-2`, `-3`
//! appended when two snapshots of a set fall in the same second.

use chrono::{DateTime, NaiveDateTime, Utc};

const ID_FORMAT: &str = "%Y-%m-%dT%H%M%SZ";

/// The id for a snapshot taken at `at`, before any clash suffix.
pub fn id_for(at: DateTime<Utc>) -> String {
    at.format(ID_FORMAT).to_string()
}

/// The time a new snapshot is dated: the clock's, or, when the clock is
/// behind the parent snapshot's id (a clock stepped back, a dead RTC
/// battery, a VM restored from a snapshot, or an earlier run under a clock
/// that was ahead), one second after the parent, so that a snapshot always
/// sorts after its parent and `latest`, `--keep-last` and the timeline
/// follow the chain. Returns the time and how far the clock is behind.
pub fn after_parent(
    clock: DateTime<Utc>,
    parent: Option<&str>,
) -> (DateTime<Utc>, Option<chrono::TimeDelta>) {
    match parent.and_then(parse_id) {
        Some((at, _)) if clock < at => (at + chrono::TimeDelta::seconds(1), Some(at - clock)),
        _ => (clock, None),
    }
}

/// The first id for `at` that `taken` does not report as used.
pub fn free_id(at: DateTime<Utc>, taken: impl FnMut(&str) -> bool) -> String {
    free_name(id_for(at), taken)
}

/// `base`, or `base-2`, `base-3`… the first that is not `taken`.
pub fn free_name(base: String, mut taken: impl FnMut(&str) -> bool) -> String {
    if !taken(&base) {
        return base;
    }
    (2u32..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .expect("an unbounded range always yields a free name")
}

/// Parses an id into its time and clash number (1 when there is no suffix).
pub fn parse_id(id: &str) -> Option<(DateTime<Utc>, u32)> {
    let (stamp, n) = match id.get(18..) {
        Some("") => (id, 1),
        Some(rest) => {
            let n: u32 = rest.strip_prefix('-')?.parse().ok()?;
            if n < 2 || rest.starts_with("-0") {
                return None;
            }
            (&id[..18], n)
        }
        None => return None,
    };
    let time = NaiveDateTime::parse_from_str(stamp, ID_FORMAT).ok()?;
    Some((time.and_utc(), n))
}

/// True when `id` is a well-formed snapshot id.
pub fn is_id(id: &str) -> bool {
    parse_id(id).is_some()
}

/// Orders ids by time, then clash number (`…Z` < `…Z-2` < `…Z-10`).
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    match (parse_id(a), parse_id(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A clock behind the parent dates the snapshot one second after it; a
    /// clock at or past the parent is taken as it is.
    #[test]
    fn a_snapshot_sorts_after_its_parent() {
        let (at, skew) = after_parent(t("2026-12-04T10:00:00Z"), Some("2026-12-05T100000Z-3"));
        assert_eq!(at, t("2026-12-05T10:00:01Z"));
        assert_eq!(skew, Some(chrono::TimeDelta::days(1)));
        let (at, skew) = after_parent(t("2026-12-05T10:00:00.5Z"), Some("2026-12-05T100000Z"));
        assert_eq!((at, skew), (t("2026-12-05T10:00:00.5Z"), None));
        assert_eq!(
            free_id(at, |id| id == "2026-12-05T100000Z"),
            "2026-12-05T100000Z-2"
        );
        let (at, skew) = after_parent(t("2026-12-06T00:00:00Z"), Some("2026-12-05T100000Z"));
        assert_eq!((at, skew), (t("2026-12-06T00:00:00Z"), None));
        assert_eq!(after_parent(t("2026-12-06T00:00:00Z"), None).1, None);
    }
}

/// Checks a set (or disk) name: it becomes a directory name and a URL part.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > 100 {
        return Err(format!("name {name:?} is longer than 100 characters"));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("name {name:?} cannot start with '.' or '-'"));
    }
    if name == "latest" {
        return Err("\"latest\" is reserved".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "name {name:?} has {c:?}; use letters, digits, '.', '_' and '-'"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Ids are UTC stamps without colons and parse back.
    #[test]
    fn id_format() {
        let id = id_for(at("2026-11-22T10:15:07Z"));
        assert_eq!(id, "2026-11-22T101507Z");
        assert_eq!(parse_id(&id), Some((at("2026-11-22T10:15:07Z"), 1)));
    }

    /// A clash in the same second gets -2, then -3.
    #[test]
    fn clashes_get_suffixes() {
        let used = ["2026-11-22T101507Z", "2026-11-22T101507Z-2"];
        let id = free_id(at("2026-11-22T10:15:07Z"), |id| used.contains(&id));
        assert_eq!(id, "2026-11-22T101507Z-3");
    }

    /// Suffixed ids sort numerically after the plain one.
    #[test]
    fn ids_sort_by_time_then_suffix() {
        let mut ids = vec![
            "2026-11-22T101507Z-10",
            "2026-11-22T101507Z-2",
            "2026-11-22T101507Z",
            "2026-01-01T000000Z",
        ];
        ids.sort_by(|a, b| cmp_ids(a, b));
        assert_eq!(
            ids,
            [
                "2026-01-01T000000Z",
                "2026-11-22T101507Z",
                "2026-11-22T101507Z-2",
                "2026-11-22T101507Z-10"
            ]
        );
    }

    /// Malformed ids are rejected, so stray names in a set folder are ignored.
    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "latest",
            "2026-11-22T10:15:07Z",
            "2026-11-22T101507Z-1",
            "2026-11-22T101507Z-02",
            "2026-13-22T101507Z",
            ".2026-11-22T101507Z.partial",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    /// Names are restricted to what is safe as a folder and URL part.
    #[test]
    fn names_are_checked() {
        assert!(check_name("data").is_ok());
        assert!(check_name("my-vm.disk_1").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "a b", "latest", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
