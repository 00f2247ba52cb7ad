//! Mutants: copies of HEAD with one safeguard removed, which a proof must
//! catch (`--mutants` of `interleave` and `crash`). A mutant names its file
//! and the exact text it changes; the test below fails when a refactor moves
//! that text, so a mutant never silently stops applying.

use crate::sh::{Result, root};

/// A safeguard, and the change that removes it.
pub struct Mutant {
    pub name: &'static str,
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

impl Mutant {
    /// Ok when `by` (the proof run on the mutant) caught it.
    pub fn caught(&self, caught: bool, by: &str, outcome: impl std::fmt::Debug) -> Result {
        if caught {
            eprintln!("xtask: mutant \"{}\": caught by {by}", self.name);
            Ok(())
        } else {
            Err(format!(
                "mutant \"{}\": {by} did not fail ({outcome:?})",
                self.name
            ))
        }
    }
}

/// A copy of HEAD in target/mutants/src with the mutant's change; returns target/mutants.
pub fn apply(m: &Mutant) -> Result<std::path::PathBuf> {
    let base = root().join("target/mutants");
    let src = base.join("src");
    crate::baseline::checkout(&src, "HEAD")?;
    let file = src.join(m.file);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if text.matches(m.from).count() != 1 {
        return Err(format!(
            "mutant \"{}\" no longer applies to {}: update the xtask that names it",
            m.name, m.file
        ));
    }
    std::fs::write(&file, text.replacen(m.from, m.to, 1)).map_err(|e| e.to_string())?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    /// Every mutant of every proof still finds its text, exactly once, in the tree.
    #[test]
    fn every_mutant_applies_to_the_tree() {
        let all = super::super::interleave::MUTANTS
            .iter()
            .chain(super::super::crash::MUTANTS.iter().map(|(m, _)| m))
            .chain(super::super::crash::POWER_MUTANTS.iter().map(|(m, _)| m));
        for m in all {
            let file = crate::sh::root().join(m.file);
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("mutant {:?}: {}: {e}", m.name, m.file));
            assert_eq!(
                text.matches(m.from).count(),
                1,
                "mutant {:?} in {}",
                m.name,
                m.file
            );
        }
    }
}
