//! The chain of an incremental archive: its bases, read one record at a
//! time back to the full archive, oldest first.

use snap_shared::error::{Error, Exit, Result};

use crate::source::Item;

/// The chain an archive ends, full archive first, found beside its record.
pub fn chain_of(item: &Item) -> Result<Vec<Item>> {
    let mut chain = vec![item.clone()];
    let mut current = item.clone();
    while let Some(base) = current.archive().and_then(|a| a.base.clone()) {
        let Item::Archive { json, .. } = &current else {
            break;
        };
        // One read (a request, at a bucket); a base that is not there reads as NoInput.
        current = match crate::source::read_item_at(json.sibling(&format!("{base}.json"))) {
            Err(e) if e.exit == Exit::NoInput => {
                return Err(Error::new(
                    Exit::NoInput,
                    format!("archive {}", item.name()),
                    format!("its chain needs {base}, which is not in {}", json.folder()),
                )
                .with_hint(
                    "an incremental archive restores only with every archive it builds on",
                ));
            }
            other => other?,
        };
        chain.push(current.clone());
        if chain.len() > 10_000 {
            return Err(Error::data(
                format!("archive {}", item.name()),
                "its chain of bases loops",
            ));
        }
    }
    chain.reverse();
    Ok(chain)
}
