//! What a child program (ssh, rclone) said on stderr, kept for messages:
//! the last few KiB, so a chatty child cannot grow it without bound, and
//! its last line, which is usually the reason.

/// The most of a child's stderr kept.
const KEPT: usize = 8 << 10;

/// Appends `more` to `kept`, dropping the oldest text beyond [`KEPT`].
pub(crate) fn keep(kept: &mut String, more: &[u8]) {
    kept.push_str(&String::from_utf8_lossy(more));
    if kept.len() > KEPT {
        let cut = kept.len() - KEPT;
        let cut = (cut..kept.len())
            .find(|&i| kept.is_char_boundary(i))
            .unwrap_or(0);
        kept.drain(..cut);
    }
}

/// The last line that is not blank.
pub(crate) fn last_line(said: &str) -> Option<&str> {
    said.lines().map(str::trim).rfind(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the last KiB are kept, cut on a character boundary.
    #[test]
    fn keeps_the_tail() {
        let mut kept = String::new();
        keep(&mut kept, "é".repeat(KEPT).as_bytes());
        keep(&mut kept, b"\nthe reason\n\n");
        assert!(kept.len() <= KEPT);
        assert_eq!(last_line(&kept), Some("the reason"));
    }
}
