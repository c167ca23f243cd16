//! Newline-delimited JSON framing of a server's stdout.
//!
//! A pipe or Docker's attach stream delivers chunks that are not aligned with messages: one
//! chunk may hold half a message or several. The framer reassembles lines, drops blank ones,
//! and skips (rather than buffers without bound) a line longer than the limit.

use bytes::{Bytes, BytesMut};

/// Reassembles lines from chunks.
#[derive(Debug)]
pub(crate) struct LineFramer {
    buffer: BytesMut,
    max_line: usize,
    /// Set while the rest of an over-long line is being skipped.
    skipping: bool,
}

/// What one chunk produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Framed {
    /// Complete lines, without their line ending.
    pub(crate) lines: Vec<Bytes>,
    /// Lines dropped because they exceeded the limit.
    pub(crate) oversized: usize,
}

impl LineFramer {
    /// A framer accepting lines of at most `max_line` bytes.
    pub(crate) fn new(max_line: usize) -> Self {
        Self { buffer: BytesMut::new(), max_line, skipping: false }
    }

    /// Feeds one chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Framed {
        let mut framed = Framed::default();
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(newline);
            rest = &tail[1..];
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.buffer.len() + head.len() > self.max_line {
                self.buffer.clear();
                framed.oversized += 1;
                continue;
            }
            self.buffer.extend_from_slice(head);
            let mut line = self.buffer.split().freeze();
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                framed.lines.push(line);
            }
        }
        if !self.skipping {
            if self.buffer.len() + rest.len() > self.max_line {
                self.buffer.clear();
                self.skipping = true;
                framed.oversized += 1;
            } else {
                self.buffer.extend_from_slice(rest);
            }
        }
        framed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(max: usize, chunks: &[&str]) -> (Vec<String>, usize) {
        let mut framer = LineFramer::new(max);
        let mut lines = Vec::new();
        let mut oversized = 0;
        for chunk in chunks {
            let framed = framer.feed(chunk.as_bytes());
            lines.extend(framed.lines.iter().map(|l| String::from_utf8(l.to_vec()).unwrap()));
            oversized += framed.oversized;
        }
        (lines, oversized)
    }

    #[test]
    fn reassembles_lines_across_chunks() {
        let table: &[(&[&str], &[&str], usize)] = &[
            (&["{\"a\":1}\n"], &["{\"a\":1}"], 0),
            (&["{\"a\"", ":1}\n{\"b\"", ":2}\n"], &["{\"a\":1}", "{\"b\":2}"], 0),
            (&["x\r\n\n  \ny\n"], &["x", "y"], 0),
            (&["partial"], &[], 0),
            (&["0123456789ABCDEF\nok\n"], &["ok"], 1),
            (&["0123456789", "ABCDEF", "GH\nok\n"], &["ok"], 1),
        ];
        for (chunks, lines, oversized) in table {
            let (got, dropped) = feed_all(12, chunks);
            assert_eq!(got, *lines, "{chunks:?}");
            assert_eq!(dropped, *oversized, "{chunks:?}");
        }
    }
}
