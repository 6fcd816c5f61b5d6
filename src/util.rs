//! Small helpers shared by the pipeline stages.

use std::io;

/// The C library's text for an I/O error ("No such file or directory"),
/// without Rust's " (os error N)" suffix, so messages read like kmod's.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// Splits `bytes` the way repeated `fgets(buf, size, fp)` calls do: each
/// chunk ends after a `\n`, or after `size - 1` bytes, or at the end of input.
pub fn fgets_chunks(bytes: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let max = size - 1;
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(max)];
        let len = window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1);
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

/// A chunk as C string code sees it: up to its first NUL.
pub fn c_string(chunk: &[u8]) -> &[u8] {
    chunk
        .iter()
        .position(|&b| b == 0)
        .map_or(chunk, |nul| &chunk[..nul])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_like_fgets() {
        let v: Vec<&[u8]> = fgets_chunks(b"ab\ncdef\ng", 4).collect();
        assert_eq!(v, vec![&b"ab\n"[..], b"cde", b"f\n", b"g"]);
    }

    #[test]
    fn reason_has_no_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
    }
}
