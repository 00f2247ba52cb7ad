//! What a destination's archives cost a month, and what its retention
//! policy would save there: the plan of a dry run (chains and pins
//! included), summed instead of printed. The timeline draws it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use snap_dest::{Dest, DestSpec, Reach, Runtime};
use snap_shared::error::Result;
use snap_shared::retention::rules;

use crate::plan;
use crate::target::Target;

/// A destination's archives now and after its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Bytes of the archives there (all their objects).
    pub stored: u64,
    /// Of those, the bytes the policy keeps (all of them without a policy).
    pub kept: u64,
    /// `price_per_gib_month` from the destination's config.
    pub price: Option<f64>,
    /// The policy in words, and the field it comes from; none without one.
    pub policy: Option<String>,
}

impl Cost {
    /// What `bytes` cost a month at the price, if there is one.
    pub fn monthly(&self, bytes: u64) -> Option<f64> {
        self.price.map(|p| p * bytes as f64 / (1u64 << 30) as f64)
    }
}

/// Plans every set of archives at `spec` under the config's `retention`
/// for it (`retention.NAME`, else `retention.external`) as of `now`.
pub fn cost_at(
    spec: &DestSpec,
    retention: Option<&serde_json::Value>,
    rt: &Arc<Runtime>,
    now: DateTime<Utc>,
) -> Result<Cost> {
    let name = if spec.configured {
        spec.name.as_str()
    } else {
        ""
    };
    let policy = rules::configured(retention, Some(name))?;
    let dest = Dest::open(spec, rt, &Reach::default(), false)?;
    let target = Target::Archives { dest, store: None };
    let mut cost = Cost {
        stored: 0,
        kept: 0,
        price: spec.price_per_gib_month,
        policy: policy.as_ref().map(|(p, field)| format!("{p} ({field})")),
    };
    for group in target.scan(None)? {
        let keep: Vec<bool> = match &policy {
            Some((p, _)) => plan::plan(&target, &group, p, now, &mut |_| {})?
                .into_iter()
                .map(|d| d.keep)
                .collect(),
            None => vec![true; group.entries.len()],
        };
        for (e, keep) in group.entries.iter().zip(keep) {
            let b = e.bytes.unwrap_or(0);
            cost.stored += b;
            if keep {
                cost.kept += b;
            }
        }
    }
    Ok(cost)
}
