//! Where the browser and the downloads read, kept between requests: the
//! store, or a destination the config names, each with a listing of its
//! items. A destination is listed once and kept for [`AGE`] (an archive at
//! a destination never changes once its record is there; one pruned since
//! is an error when its index is read), so walking its folders reads only
//! each archive's index, once (snap_read keeps it), and the frames of what
//! is downloaded. The store's listing is made again when the store changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use snap_read::source::{Item, Listing, Source};
use snap_shared::error::{Error, Result};

use super::http::Shared;

/// How long a destination's listing is used.
const AGE: Duration = Duration::from_secs(300);

/// A place to read and its listing.
pub(super) struct Place {
    pub(super) source: Source,
    listing: Listing,
}

/// What says a kept place is still good.
#[derive(PartialEq)]
enum Key {
    Store(Vec<u128>),
    Dest(Instant),
}

/// The places read lately, by `from=` (`""`: the store).
#[derive(Default)]
pub(super) struct Places {
    kept: Mutex<BTreeMap<String, (Key, Arc<Place>)>>,
}

impl Place {
    /// The item `set/id` (its archive with `archive`; always, at a destination).
    pub(super) fn item(&self, set: &str, id: &str, archive: bool) -> Result<Item> {
        self.source
            .resolve_in(&self.listing, &format!("{set}/{id}"), archive)
    }

    /// Every item of the place.
    pub(super) fn items(&self) -> &[Item] {
        &self.listing.items
    }

    /// The item just before `it` in its set, of the same kind, if any.
    pub(super) fn previous(&self, it: &Item) -> Option<Item> {
        let (set, id) = it.set_and_id()?;
        self.listing
            .items
            .iter()
            .filter(|i| i.kind() == it.kind())
            .filter_map(|i| i.set_and_id().map(|(s, x)| (s, x, i)))
            .filter(|(s, x, _)| *s == set && *x < id)
            .max_by(|a, b| a.1.cmp(b.1))
            .map(|(_, _, i)| i.clone())
    }
}

/// The store, or with `from=NAME` a destination the config names (only
/// those: a page never opens a place a URL made up), listed.
pub(super) fn place(s: &Shared, from: Option<&str>) -> Result<Arc<Place>> {
    let key = match from {
        None => Key::Store(super::fingerprint(&s.store)),
        Some(name) => {
            let known = snap_dest::settings::from_config(s.config.as_ref())?
                .iter()
                .any(|spec| spec.name == name);
            if !known {
                return Err(Error::usage(
                    format!("from={name}"),
                    "is not a destination of the config",
                ));
            }
            Key::Dest(Instant::now())
        }
    };
    let name = from.unwrap_or_default().to_string();
    {
        let kept = s.places.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, p)) = kept.get(&name) {
            let good = match (k, &key) {
                (Key::Store(a), Key::Store(b)) => a == b,
                (Key::Dest(at), Key::Dest(_)) => at.elapsed() < AGE,
                _ => false,
            };
            if good {
                return Ok(p.clone());
            }
        }
    }
    let source = match from {
        None => Source::Store(s.store.clone()),
        Some(name) => Source::open(Some(name), s.store.clone(), s.config.as_ref())?,
    };
    let listing = source.listing()?;
    let p = Arc::new(Place { source, listing });
    s.places
        .kept
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name, (key, p.clone()));
    Ok(p)
}
