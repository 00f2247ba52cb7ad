//! Replays every kept fuzz input on stable: the seed corpora
//! (proof/fuzz/corpus/TARGET/) and every input a fuzz run found that once broke a
//! parser (proof/fuzz/regressions/TARGET/). A panic here is a regression.

use std::path::Path;

/// Every kept input of every target runs through its parser without a panic.
#[test]
fn every_kept_input_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, target) in snap_fuzzing::TARGETS {
        let mut seeds = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let caught = std::panic::catch_unwind(|| target(&data));
                assert!(caught.is_ok(), "{name}: {} panics", path.display());
                seeds += 1;
            }
        }
        assert!(
            seeds > 0,
            "{name}: no kept input (proof/fuzz/corpus/{name}/ is empty)"
        );
        replayed += seeds;
    }
    eprintln!("replayed {replayed} inputs");
}
