//! Where a policy comes from: the `--keep-*` flags, else the config's `retention`.
//!
//! ```json
//! "retention": {
//!   "local": 7,
//!   "external": 5,
//!   "b2": { "daily": 7, "weekly": 4, "monthly": 12, "within": "2d", "tags": ["pre-upgrade"] },
//!   "tags": { "pre-apt": { "last": 5 } },
//!   "keep_archives": "until-pushed"
//! }
//! ```
//!
//! `local` is the store's policy and `external` every destination's, as in
//! the planning document; a configured destination's name gives that one its
//! own. A number is "keep the last N". Rule names are restic's: last, hourly,
//! daily, weekly, monthly, yearly (a count, or "unlimited"), within (a span
//! like 30d or 1y6m) and tags (each entry a comma-separated list that must all
//! be present). `tags` at the top holds rules by tag (`tagged`): a snapshot
//! with those tags is judged by that rule alone, at every place. Mistakes
//! name the field (`retention.b2.dialy`) and exit 78.
//!
//! `keep_archives` says how long the store keeps its archives' data:
//! `"all"` (the default) as long as the `local` rules keep the archive;
//! `"until-pushed"` until every configured destination holds it (and
//! verified it, when `schedule.verify` runs), then only its record, index
//! and sums stay in the store (`archive::Away`).

use serde_json::Value;

use crate::error::{Error, Result};

use super::policy::{Count, Policy, Span};
use super::tagged::{Rules, TagRule};

/// The key of the store's policy.
pub const LOCAL: &str = "local";
/// The key of the policy of destinations without their own.
pub const EXTERNAL: &str = "external";
/// The key of the rules by tag.
pub const TAGS: &str = "tags";
/// The key of how long the store keeps archive data.
pub const KEEP_ARCHIVES: &str = "keep_archives";

/// How long the store keeps an archive's data (`retention.keep_archives`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepArchives {
    /// As long as the archive is kept.
    #[default]
    All,
    /// Until every configured destination holds it (verified there when
    /// the schedule verifies).
    UntilPushed,
}

/// `retention.keep_archives`, `all` when it is not there.
pub fn keep_archives(retention: Option<&Value>) -> Result<KeepArchives> {
    match retention.and_then(|r| r.get(KEEP_ARCHIVES)) {
        None => Ok(KeepArchives::All),
        Some(v) => match v.as_str() {
            Some("all") => Ok(KeepArchives::All),
            Some("until-pushed") => Ok(KeepArchives::UntilPushed),
            _ => Err(Error::config(
                format!("retention.{KEEP_ARCHIVES}"),
                format!("is {v}; use \"all\" or \"until-pushed\""),
            )),
        },
    }
}

/// Checks the whole `retention` value (a typo anywhere is refused, even in a
/// part this run does not use) against the configured destination names.
pub fn check(retention: Option<&Value>, dest_names: &[String]) -> Result<()> {
    let Some(v) = retention else {
        return Ok(());
    };
    let map = v.as_object().ok_or_else(|| {
        Error::config(
            "retention",
            "must be an object like {\"local\": 7, \"external\": 5}",
        )
    })?;
    for reserved in [TAGS, KEEP_ARCHIVES] {
        if dest_names.iter().any(|n| n == reserved) {
            return Err(Error::config(
                "destinations",
                format!(
                    "a destination may not be named \"{reserved}\": retention.{reserved} is a setting of its own"
                ),
            ));
        }
    }
    for (key, rules) in map {
        let field = format!("retention.{key}");
        if key == TAGS {
            by_tag(rules)?;
            continue;
        }
        if key == KEEP_ARCHIVES {
            keep_archives(Some(v))?;
            continue;
        }
        if key != LOCAL && key != EXTERNAL && !dest_names.contains(key) {
            return Err(Error::config(
                field,
                "is not \"local\", \"external\", \"tags\", \"keep_archives\" or the name of a configured destination",
            ));
        }
        parse(rules, &field)?;
    }
    Ok(())
}

/// The configured rules for the store (`dest` None) or a destination by
/// name, and the fields they came from. With rules by tag and no policy for
/// the place, what no tag rule matches is kept.
pub fn configured(
    retention: Option<&Value>,
    dest: Option<&str>,
) -> Result<Option<(Rules, String)>> {
    let Some(map) = retention.and_then(Value::as_object) else {
        return Ok(None);
    };
    let tagged = match map.get(TAGS) {
        Some(v) => by_tag(v)?,
        None => Vec::new(),
    };
    let keys = match dest {
        None => vec![LOCAL],
        Some(name) => vec![name, EXTERNAL],
    };
    for key in keys {
        if let Some(rules) = map.get(key) {
            let mut field = format!("retention.{key}");
            if !tagged.is_empty() {
                field.push_str(" and retention.tags");
            }
            let rules = Rules {
                place: parse(rules, &format!("retention.{key}"))?,
                by_tag: tagged,
            };
            return Ok(Some((rules, field)));
        }
    }
    if tagged.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        Rules::tags_only(tagged),
        "retention.tags".to_string(),
    )))
}

/// `"tags": {"pre-apt": {"last": 5}, "a,b": 3}`: the rules by tag.
fn by_tag(v: &Value) -> Result<Vec<TagRule>> {
    let map = v.as_object().ok_or_else(|| {
        Error::config(
            "retention.tags",
            "must be an object of rules by tag, like {\"pre-apt\": {\"last\": 5}}",
        )
    })?;
    map.iter()
        .map(|(key, rules)| {
            let field = format!("retention.tags.{key}");
            Ok(TagRule {
                tags: tag_list(key).map_err(|e| Error::config(&field, e))?,
                policy: parse(rules, &field)?,
            })
        })
        .collect()
}

/// One place's rules: a number (keep the last N) or an object of rules.
pub fn parse(v: &Value, field: &str) -> Result<Policy> {
    let mut p = Policy::default();
    match v {
        Value::Number(_) => p.last = count(v, field)?,
        Value::Object(map) => {
            for (name, value) in map {
                let at = format!("{field}.{name}");
                match name.as_str() {
                    "last" => p.last = count(value, &at)?,
                    "hourly" => p.hourly = count(value, &at)?,
                    "daily" => p.daily = count(value, &at)?,
                    "weekly" => p.weekly = count(value, &at)?,
                    "monthly" => p.monthly = count(value, &at)?,
                    "yearly" => p.yearly = count(value, &at)?,
                    "within" => p.within = Some(span(value, &at)?),
                    "within_hourly" => p.within_hourly = Some(span(value, &at)?),
                    "within_daily" => p.within_daily = Some(span(value, &at)?),
                    "within_weekly" => p.within_weekly = Some(span(value, &at)?),
                    "within_monthly" => p.within_monthly = Some(span(value, &at)?),
                    "within_yearly" => p.within_yearly = Some(span(value, &at)?),
                    "tags" => p.tags = tags(value, &at)?,
                    _ => {
                        return Err(Error::config(
                            at,
                            "unknown rule; use last, hourly, daily, weekly, monthly, yearly, within, within_hourly, within_daily, within_weekly, within_monthly, within_yearly or tags",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(Error::config(
                field,
                "must be a number (keep the last N) or an object of rules like {\"daily\": 7}",
            ));
        }
    }
    if p.is_empty() {
        return Err(
            Error::config(field, "keeps nothing: every rule is 0 or missing").with_hint(
                "a policy that keeps nothing would remove everything; give at least one rule",
            ),
        );
    }
    Ok(p)
}

fn count(v: &Value, field: &str) -> Result<Option<Count>> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    Count::parse(&text).map_err(|_| {
        Error::config(
            field,
            format!("{v} is not a count: give a number, or \"unlimited\""),
        )
    })
}

fn span(v: &Value, field: &str) -> Result<Span> {
    let text = v
        .as_str()
        .ok_or_else(|| Error::config(field, "must be a span like \"30d\""))?;
    Span::parse(text).map_err(|e| Error::config(field, e))
}

fn tags(v: &Value, field: &str) -> Result<Vec<Vec<String>>> {
    let list = v
        .as_array()
        .ok_or_else(|| Error::config(field, "must be a list like [\"pre-upgrade\"]"))?;
    list.iter()
        .map(|t| match t.as_str() {
            Some(s) => tag_list(s).map_err(|e| Error::config(field, e)),
            None => Err(Error::config(field, format!("{t} is not a tag"))),
        })
        .collect()
}

/// `a,b` as a list of tags that must all be present.
pub fn tag_list(s: &str) -> std::result::Result<Vec<String>, String> {
    let tags: Vec<String> = s.split(',').map(|t| t.trim().to_string()).collect();
    if tags.iter().any(String::is_empty) {
        return Err(format!("{s:?} has an empty tag"));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;
    use serde_json::json;

    /// The planning document's shape: a number is keep-last, for local and external.
    #[test]
    fn numbers_are_keep_last() {
        let v = json!({"local": 7, "external": 5});
        check(Some(&v), &[]).unwrap();
        let (p, field) = configured(Some(&v), None).unwrap().unwrap();
        assert_eq!(
            (p.place.last, field.as_str()),
            (Some(Count::N(7)), "retention.local")
        );
        let (p, _) = configured(Some(&v), Some("t9")).unwrap().unwrap();
        assert_eq!(p.place.last, Some(Count::N(5)));
    }

    /// A destination's own entry wins over `external`; rules read by name.
    #[test]
    fn a_destination_has_its_own() {
        let v = json!({"external": 5, "b2": {"daily": 7, "weekly": "unlimited", "within": "2d", "tags": ["a,b", "keep"]}});
        check(Some(&v), &["b2".into()]).unwrap();
        let (p, field) = configured(Some(&v), Some("b2")).unwrap().unwrap();
        assert_eq!(field, "retention.b2");
        let p = p.place;
        assert_eq!(p.daily, Some(Count::N(7)));
        assert_eq!(p.weekly, Some(Count::All));
        assert_eq!(p.within, Some(Span::parse("2d").unwrap()));
        assert_eq!(
            p.tags,
            vec![vec!["a".to_string(), "b".into()], vec!["keep".into()]]
        );
        assert!(configured(Some(&v), None).unwrap().is_none());
    }

    /// Rules by tag come with every place's policy; alone, they keep the rest.
    #[test]
    fn rules_by_tag() {
        let v = json!({"local": 7, "tags": {"pre-apt": {"last": 5}, "a,b": 2}});
        check(Some(&v), &[]).unwrap();
        let (r, field) = configured(Some(&v), None).unwrap().unwrap();
        assert_eq!(field, "retention.local and retention.tags");
        assert_eq!(r.place.last, Some(Count::N(7)));
        let tags: Vec<(String, Option<Count>)> = r
            .by_tag
            .iter()
            .map(|t| (t.tags.join("+"), t.policy.last))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("a+b".to_string(), Some(Count::N(2))),
                ("pre-apt".to_string(), Some(Count::N(5)))
            ]
        );
        let (r, field) = configured(Some(&v), Some("t9")).unwrap().unwrap();
        assert_eq!(
            (r.place.last, field.as_str()),
            (Some(Count::All), "retention.tags")
        );
        let err = check(Some(&v), &["tags".into()]).unwrap_err();
        assert_eq!(err.context, "destinations");
    }

    /// keep_archives is `all` unless the config says `until-pushed`, and is
    /// no destination's name.
    #[test]
    fn keep_archives_is_read() {
        assert_eq!(keep_archives(None).unwrap(), KeepArchives::All);
        let v = json!({"local": 7, "keep_archives": "until-pushed"});
        check(Some(&v), &["usb".into()]).unwrap();
        assert_eq!(keep_archives(Some(&v)).unwrap(), KeepArchives::UntilPushed);
        let err = check(Some(&v), &["keep_archives".into()]).unwrap_err();
        assert_eq!(err.context, "destinations");
    }

    /// Mistakes name the field and exit 78; a policy that keeps nothing is one.
    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (json!({"local": {"dialy": 7}}), "retention.local.dialy"),
            (json!({"usb": 3}), "retention.usb"),
            (json!({"local": {"within": "3w"}}), "retention.local.within"),
            (json!({"local": {"daily": 0}}), "retention.local"),
            (json!({"local": "7"}), "retention.local"),
            (
                json!({"external": {"tags": ["a,"]}}),
                "retention.external.tags",
            ),
            (json!([7]), "retention"),
            (
                json!({"tags": {"pre-apt": {"lats": 5}}}),
                "retention.tags.pre-apt.lats",
            ),
            (json!({"tags": {"a,": 5}}), "retention.tags.a,"),
            (json!({"tags": ["pre-apt"]}), "retention.tags"),
            (
                json!({"local": 3, "keep_archives": "pushed"}),
                "retention.keep_archives",
            ),
        ];
        for (v, field) in cases {
            let err = check(Some(&v), &[]).unwrap_err();
            assert_eq!(
                (err.context.as_str(), err.exit),
                (field, Exit::Config),
                "{v}"
            );
        }
    }
}
