//! The `.sha256` beside an archive's record: `sha256sum -c` on a drive or a
//! downloaded folder checks the archive and its index by it, with no snap
//! tool. So verify checks that it is there and says what the record says;
//! one that is missing or disagrees is damage, named (65).

use snap_shared::archive::parse_sums;
use snap_shared::error::{Exit, Result};

use crate::source::{Item, file_name};

/// What is wrong with the `.sha256` of an archive item: (what, why) each.
pub fn sums_problems(item: &Item) -> Result<Vec<(String, String)>> {
    let Item::Archive { rec, json, .. } = item else {
        return Ok(Vec::new());
    };
    let loc = json.sibling(&format!("{}.sha256", rec.id));
    let shown = loc.show();
    let text = match loc.read_all() {
        Ok(t) => t,
        Err(e) if e.exit == Exit::NoInput => {
            return Ok(vec![(
                shown,
                "missing: `sha256sum -c` cannot check this archive".into(),
            )]);
        }
        Err(e) => return Err(e),
    };
    let lines = match parse_sums(&String::from_utf8_lossy(&text)) {
        Ok(lines) => lines,
        Err(why) => return Ok(vec![(shown, why)]),
    };
    let index_sha = rec.extra.get("index_sha256").and_then(|v| v.as_str());
    let wanted = [
        (file_name(&rec.path), Some(rec.sha256.as_str())),
        (file_name(&rec.index), index_sha),
    ];
    let mut problems = Vec::new();
    for (name, want) in wanted {
        let Some(want) = want else { continue };
        match lines.iter().find(|(_, n)| *n == name) {
            None => problems.push((shown.clone(), format!("has no line for {name}"))),
            Some((got, _)) if got.to_hex() != want => problems.push((
                shown.clone(),
                format!("says {got} for {name}, the record says {want}"),
            )),
            Some(_) => {}
        }
    }
    Ok(problems)
}
