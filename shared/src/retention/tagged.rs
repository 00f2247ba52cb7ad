//! Rules by tag: `"retention": {"local": 7, "tags": {"pre-apt": {"last": 5}}}`.
//!
//! A snapshot that has a tag rule's tags (`"a,b"`: all of them) is judged by
//! that rule alone, among the snapshots that have the same tags, as one
//! `restic forget --tag T` run per rule would judge it. Snapshots that no
//! tag rule matches are judged by the place's policy (`local`, `external` or
//! a destination's own). A snapshot matched by several tag rules is kept
//! when any of them keeps it: which rule "comes first" never decides a
//! removal. The rules apply at the store and at every destination.

use std::fmt;

use chrono::{DateTime, Utc};

use super::policy::{Candidate, Count, Policy, Verdict};

/// One rule by tag: the tags a snapshot must all have, and their policy.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRule {
    pub tags: Vec<String>,
    pub policy: Policy,
}

/// What a place applies: its own policy and the rules by tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub place: Policy,
    pub by_tag: Vec<TagRule>,
}

impl From<Policy> for Rules {
    fn from(place: Policy) -> Self {
        Rules {
            place,
            by_tag: Vec::new(),
        }
    }
}

impl Rules {
    /// Rules by tag alone: the snapshots no tag rule matches are all kept.
    pub fn tags_only(by_tag: Vec<TagRule>) -> Self {
        Rules {
            place: Policy {
                last: Some(Count::All),
                ..Policy::default()
            },
            by_tag,
        }
    }

    /// True when deciding needs each snapshot's tags (records are read).
    pub fn needs_tags(&self) -> bool {
        !self.by_tag.is_empty() || !self.place.tags.is_empty()
    }

    /// Decides every snapshot of one group, in the order given.
    pub fn apply(&self, snaps: &[Candidate], now: DateTime<Utc>) -> Vec<Verdict> {
        let matched: Vec<Vec<usize>> = snaps
            .iter()
            .map(|s| {
                (0..self.by_tag.len())
                    .filter(|&r| self.by_tag[r].tags.iter().all(|t| s.tags.contains(t)))
                    .collect()
            })
            .collect();
        let mut verdicts = vec![
            Verdict {
                keep: false,
                reasons: Vec::new(),
            };
            snaps.len()
        ];
        let mut judge = |members: Vec<usize>, policy: &Policy, label: Option<String>| {
            let group: Vec<Candidate> = members.iter().map(|&i| snaps[i]).collect();
            for (i, v) in members.iter().zip(policy.apply(&group, now)) {
                let out = &mut verdicts[*i];
                out.keep |= v.keep;
                for r in v.reasons {
                    let r = match &label {
                        Some(l) if r != "pinned" => format!("{r} (tag {l})"),
                        _ => r,
                    };
                    if !out.reasons.contains(&r) {
                        out.reasons.push(r);
                    }
                }
            }
        };
        let rest: Vec<usize> = (0..snaps.len())
            .filter(|&i| matched[i].is_empty())
            .collect();
        judge(rest, &self.place, None);
        for (r, rule) in self.by_tag.iter().enumerate() {
            let members: Vec<usize> = (0..snaps.len())
                .filter(|&i| matched[i].contains(&r))
                .collect();
            judge(members, &rule.policy, Some(rule.tags.join(",")));
        }
        verdicts
    }
}

impl fmt::Display for Rules {
    /// `keep 7 latest snapshots; tag pre-apt: keep 5 latest snapshots`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.place)?;
        for rule in &self.by_tag {
            write!(f, "; tag {}: {}", rule.tags.join(","), rule.policy)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 4, day, 12, 0, 0).unwrap()
    }

    fn last(n: u32) -> Policy {
        Policy {
            last: Some(Count::N(n)),
            ..Policy::default()
        }
    }

    /// Tagged snapshots are counted among themselves, the rest by the place's policy.
    #[test]
    fn a_tag_rule_judges_its_own() {
        let apt = vec!["pre-apt".to_string()];
        let none: Vec<String> = Vec::new();
        let tags: Vec<&Vec<String>> = (1..=10)
            .map(|d| if d % 2 == 0 { &apt } else { &none })
            .collect();
        let snaps: Vec<Candidate> = (1..=10)
            .map(|d| Candidate {
                time: at(d),
                tags: tags[d as usize - 1],
                pinned: false,
            })
            .collect();
        let rules = Rules {
            place: last(3),
            by_tag: vec![TagRule {
                tags: apt.clone(),
                policy: last(2),
            }],
        };
        let kept: Vec<u32> = rules
            .apply(&snaps, at(30))
            .iter()
            .zip(1..)
            .filter(|(v, _)| v.keep)
            .map(|(_, d)| d)
            .collect();
        assert_eq!(kept, vec![5, 7, 8, 9, 10]);
        let v = &rules.apply(&snaps, at(30))[9];
        assert_eq!(v.reasons, vec!["last snapshot (tag pre-apt)".to_string()]);
        assert_eq!(
            rules.to_string(),
            "keep 3 latest snapshots; tag pre-apt: keep 2 latest snapshots"
        );
    }

    /// Matched by two rules, a snapshot stays when either keeps it.
    #[test]
    fn any_rule_keeps() {
        let both = vec!["a".to_string(), "b".to_string()];
        let a = vec!["a".to_string()];
        let snaps = [
            Candidate {
                time: at(1),
                tags: &both,
                pinned: false,
            },
            Candidate {
                time: at(2),
                tags: &a,
                pinned: false,
            },
        ];
        let rules = Rules {
            place: last(1),
            by_tag: vec![
                TagRule {
                    tags: vec!["a".into()],
                    policy: last(1),
                },
                TagRule {
                    tags: vec!["b".into()],
                    policy: last(1),
                },
            ],
        };
        let v = rules.apply(&snaps, at(30));
        assert!(v[0].keep && v[1].keep, "{v:?}");
        let only = Rules::tags_only(vec![TagRule {
            tags: vec!["b".into()],
            policy: last(1),
        }]);
        assert!(only.apply(&snaps, at(30)).iter().all(|v| v.keep));
    }
}
