//! Where an archive's frames are: each frame's place in the file and in the
//! tar stream, from the seek table (and, for an age file, the chunks that
//! hold them).

use std::ops::Range;

use snap_shared::seekable::Frame;

/// Where each frame is in the compressed stream and in the tar stream.
#[derive(Debug)]
pub struct Layout {
    pub frames: Vec<Frame>,
    /// Where each frame starts in the compressed stream, then where the last ends.
    pub(crate) comp_at: Vec<u64>,
    /// The same in the tar stream.
    pub(crate) tar_at: Vec<u64>,
}

impl Layout {
    pub fn new(frames: Vec<Frame>) -> Layout {
        let sums = |f: fn(&Frame) -> u32| {
            let mut at = vec![0u64];
            for fr in &frames {
                at.push(at.last().expect("one") + u64::from(f(fr)));
            }
            at
        };
        let (comp_at, tar_at) = (sums(|f| f.compressed), sums(|f| f.tar));
        Layout {
            frames,
            comp_at,
            tar_at,
        }
    }

    /// The length of the tar stream.
    pub fn tar_len(&self) -> u64 {
        *self.tar_at.last().expect("one")
    }

    /// The length of the compressed frames (the table not counted).
    pub fn comp_len(&self) -> u64 {
        *self.comp_at.last().expect("one")
    }

    /// The frames holding the tar bytes `span` (none for an empty span).
    pub fn covering(&self, span: Range<u64>) -> Range<usize> {
        if span.is_empty() {
            return 0..0;
        }
        let ends = &self.tar_at[1..];
        let first = ends.partition_point(|&end| end <= span.start);
        let last = ends.partition_point(|&end| end < span.end);
        first..(last + 1).min(self.frames.len())
    }

    /// The compressed bytes of the frames `frames`.
    pub fn comp(&self, frames: Range<usize>) -> Range<u64> {
        self.comp_at[frames.start]..self.comp_at[frames.end]
    }
}
