//! Cutting a streamed body into chunks of whole lines.

use zeroize::Zeroize;

/// Target size of a chunk handed to a worker: large enough to amortise the
/// hand-off, small enough that a few in flight keep memory flat.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Longest line answered on its content; a longer one is `malformed_line`
/// (no valid record comes near it) and is skipped without being buffered.
pub const MAX_LINE: usize = 16 * 1024;

/// How much of an oversized line is kept: enough for its first field, so
/// that a clean index can still be echoed (§4).
pub const OVERSIZED_HEAD: usize = 80;

/// Up to this many pending bytes, the buffer grows as it needs: a small
/// batch does not take (and wipe) a whole chunk's room.
const SMALL: usize = 64 * 1024;

/// A unit of work for [`super::process_chunk`].
pub enum Chunk {
    /// Whole lines (each ending in `\n`, but perhaps the last line of the body).
    Lines(Vec<u8>),
    /// One non-blank line longer than [`MAX_LINE`], already discarded but for
    /// its first [`OVERSIZED_HEAD`] bytes: answered `malformed_line`.
    OversizedLine(Vec<u8>),
}

impl Drop for Chunk {
    fn drop(&mut self) {
        match self {
            Chunk::Lines(v) | Chunk::OversizedLine(v) => crate::wipe_vec(v),
        }
    }
}

/// Accumulates body bytes and cuts them at line ends.
#[derive(Default)]
pub struct Chunker {
    pending: Vec<u8>,
    /// Inside an oversized line: its head, while the rest up to the next
    /// `\n` is discarded.
    skipping: Option<Vec<u8>>,
    /// Whether the oversized line has been blank (ASCII whitespace) so far:
    /// a blank line is skipped whatever its length.
    skipping_blank: bool,
}

impl Drop for Chunker {
    fn drop(&mut self) {
        self.pending.zeroize();
        if let Some(head) = &mut self.skipping {
            head.zeroize();
        }
    }
}

impl Chunker {
    /// A chunker with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `emit` for each chunk that became complete.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(Chunk)) {
        while !data.is_empty() {
            if self.skipping.is_some() {
                let end = memchr::memchr(b'\n', data);
                let part = &data[..end.unwrap_or(data.len())];
                self.skipping_blank &= part.iter().all(u8::is_ascii_whitespace);
                match end {
                    Some(p) => {
                        self.end_oversized(emit);
                        data = &data[p + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Copy at most what fills the chunk, so the pending buffer never
            // grows past CHUNK_SIZE + MAX_LINE. Past a small body, its room is
            // taken once, that length exactly: every chunk is then a block of
            // the same length, which the allocator hands out again, and none
            // is moved and doubled as it fills.
            let room = (CHUNK_SIZE + MAX_LINE)
                .saturating_sub(self.pending.len())
                .max(1);
            let take = room.min(data.len());
            if self.pending.len() + take > self.pending.capacity() {
                if self.pending.len() + take > SMALL {
                    self.pending.reserve_exact(room);
                } else {
                    self.pending.reserve(take);
                }
            }
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() >= CHUNK_SIZE {
                self.cut(emit);
            }
        }
    }

    /// Emits the whole lines pending; if the partial line left over is already
    /// too long, drops it and switches to skipping.
    fn cut(&mut self, emit: &mut impl FnMut(Chunk)) {
        let tail_start = memchr::memrchr(b'\n', &self.pending).map_or(0, |p| p + 1);
        if tail_start > 0 {
            let mut rest = self.pending.split_off(tail_start);
            std::mem::swap(&mut rest, &mut self.pending);
            emit(Chunk::Lines(rest));
            // A body past its first chunk is a large one: the next chunk gets
            // its whole room at once, however small the parts that fill it.
            self.pending.reserve_exact(
                CHUNK_SIZE + MAX_LINE - self.pending.len().min(CHUNK_SIZE + MAX_LINE),
            );
        }
        // A `\r` at the end may be the first half of the line's `\r\n`: not
        // counted, so that a line's answer does not depend on whether the
        // cut fell between the two (inside a chunk the `\r` is not counted).
        let tail_len = self.pending.len() - usize::from(self.pending.last() == Some(&b'\r'));
        if tail_len > MAX_LINE {
            self.skipping_blank = self.pending.iter().all(u8::is_ascii_whitespace);
            self.skipping = Some(self.pending[..OVERSIZED_HEAD].to_vec());
            self.pending.zeroize();
            self.pending.clear();
        }
    }

    /// The oversized line ended: one answer, unless it was blank.
    fn end_oversized(&mut self, emit: &mut impl FnMut(Chunk)) {
        if let Some(head) = self.skipping.take() {
            if self.skipping_blank {
                drop(Chunk::OversizedLine(head)); // wiped, not answered
            } else {
                emit(Chunk::OversizedLine(head));
            }
        }
    }

    /// Ends the body: emits whatever is left.
    pub fn finish(mut self, emit: &mut impl FnMut(Chunk)) {
        if self.skipping.is_some() {
            self.end_oversized(emit);
        } else if !self.pending.is_empty() {
            emit(Chunk::Lines(std::mem::take(&mut self.pending)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parts: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let mut c = Chunker::new();
        let mut emit = |ch: Chunk| {
            out.push(match &ch {
                Chunk::Lines(v) => Some(v.clone()),
                Chunk::OversizedLine(_) => None,
            })
        };
        for p in parts {
            c.push(p, &mut emit);
        }
        c.finish(&mut emit);
        out
    }

    #[test]
    fn chunks_end_on_line_boundaries_and_lose_nothing() {
        let line = b"A1,2951099126111\n";
        let mut body = Vec::new();
        for _ in 0..50_000 {
            body.extend_from_slice(line);
        }
        let parts: Vec<&[u8]> = body.chunks(7919).collect();
        let chunks = collect(&parts);
        assert!(chunks.len() > 2);
        let mut joined = Vec::new();
        for c in &chunks {
            let c = c.as_ref().unwrap();
            assert!(c.ends_with(b"\n"));
            joined.extend_from_slice(c);
        }
        assert_eq!(joined, body);
    }

    #[test]
    fn an_oversized_line_becomes_one_marker_in_place() {
        let mut body = b"a,1\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', CHUNK_SIZE * 3));
        body.extend_from_slice(b"\nb,2\n");
        let chunks = collect(&body.chunks(1000).collect::<Vec<_>>());
        let shapes: Vec<_> = chunks.iter().map(|c| c.as_deref()).collect();
        assert_eq!(shapes, vec![Some(&b"a,1\n"[..]), None, Some(&b"b,2\n"[..])]);
    }

    #[test]
    fn an_oversized_blank_line_is_skipped_like_any_blank_line() {
        let mut body = b"a,1\n".to_vec();
        body.extend(std::iter::repeat_n(b' ', CHUNK_SIZE * 2));
        body.extend_from_slice(b"\r\nb,2\n");
        let chunks = collect(&body.chunks(4096).collect::<Vec<_>>());
        assert!(chunks.iter().all(Option::is_some), "no oversized answer");
    }

    #[test]
    fn a_line_of_max_length_whose_cr_lf_straddles_a_cut_is_not_oversized() {
        let long_len = MAX_LINE + 1; // the line and its `\r`
        let filler_len = CHUNK_SIZE - long_len;
        // Whole lines, `filler_len` bytes: the last one padded.
        let mut first = b"a,1\n".repeat(filler_len / 4 - 1);
        first.extend_from_slice(b"a,1");
        first.extend(std::iter::repeat_n(b'x', filler_len % 4));
        first.push(b'\n');
        assert_eq!(first.len(), filler_len);
        first.extend_from_slice(b"c,");
        first.extend(std::iter::repeat_n(b'd', MAX_LINE - 2));
        first.push(b'\r');
        assert_eq!(first.len(), CHUNK_SIZE);
        let chunks = collect(&[&first, b"\nz,1\n"]);
        assert!(chunks.iter().all(Option::is_some), "no oversized marker");
        let joined: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
        assert!(joined.ends_with(b"d\r\nz,1\n"));
    }

    #[test]
    fn chunks_are_blocks_of_one_length_and_a_small_body_stays_small() {
        let body = b"A1,2951099126111\n".repeat(60_000);
        for frame in [1000, 7919, 65_536, 300_000] {
            let mut caps = Vec::new();
            let mut c = Chunker::new();
            let mut emit = |ch: Chunk| {
                if let Chunk::Lines(v) = &ch {
                    caps.push(v.capacity());
                }
            };
            for p in body.chunks(frame) {
                c.push(p, &mut emit);
            }
            c.finish(&mut emit);
            assert!(caps.len() > 2);
            // Every chunk but the last (the leftover at the end) was given
            // its room once, never moved as it filled.
            let (_, cut) = caps.split_last().unwrap();
            assert!(
                cut.iter().all(|&n| n == CHUNK_SIZE + MAX_LINE),
                "frame {frame}: {caps:?}"
            );
        }
        let mut caps = Vec::new();
        let mut c = Chunker::new();
        c.push(&body[..3400], &mut |_| {});
        c.finish(&mut |ch| {
            if let Chunk::Lines(v) = &ch {
                caps.push(v.capacity());
            }
        });
        assert!(caps.len() == 1 && caps[0] < SMALL, "{caps:?}");
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        assert_eq!(collect(&[b"a,1\nb,2"]), vec![Some(b"a,1\nb,2".to_vec())]);
    }
}
