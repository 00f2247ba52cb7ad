//! Names that writers at a destination give their work files: hidden
//! beside the final name, and unique to one process at a time.

use std::path::{Path, PathBuf};

/// `.NAME.WHAT` beside `path`.
pub(crate) fn hidden(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{what}"))
}

/// A name no other writer uses at once: this process and a counter.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let host = snap_shared::hostname();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `.NAME.WHAT` beside the key `rel` (`/`-separated), as on a server.
pub(crate) fn hidden_key(rel: &str, what: &str) -> String {
    hidden(Path::new(rel), what).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hidden names sit next to the object, in its folder.
    #[test]
    fn hidden_names() {
        assert_eq!(hidden_key("set/a.json", "tmp-1"), "set/.a.json.tmp-1");
        assert_eq!(hidden_key("a", "snap-part"), ".a.snap-part");
    }
}
