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

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Feeds what is written into a SHA-256 (to hash a stream with
/// [`io::copy`]).
pub struct HashWriter<'a>(pub &'a mut sha2::Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

/// One scanf `%u` conversion: optional blanks and sign, then decimal
/// digits, converted like `strtoul` (saturating, negatives wrap) and
/// truncated to `unsigned int`. Returns the value and the rest.
pub fn scan_unsigned(s: &[u8]) -> Option<(u32, &[u8])> {
    let mut i = s
        .iter()
        .take_while(|b| b" \t\n\x0b\x0c\r".contains(b))
        .count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let value = s[i..i + digits].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let value = match value {
        None => u64::MAX,
        Some(v) if negative => v.wrapping_neg(),
        Some(v) => v,
    };
    Some((value as u32, &s[i + digits..]))
}

/// Why a tree (or a reader of command-line files) refused to read a file.
/// It travels inside an [`io::Error`] (see [`Refused::of`]), so callers can
/// tell a hostile or unusable input, which stops a build, from a file that
/// is simply missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A FIFO, device, socket or directory where a regular file belongs.
    #[error("not a regular file (it is a {0})")]
    NotRegular(&'static str),
    /// A file (or a decompressed module) larger than the limit.
    #[error("{} is over the size limit of {limit} bytes (raise it with --max-file-size MIB)", too_large_subject(*.size, *.decompressed))]
    TooLarge {
        /// The size, when known (a decompressor stops at the limit).
        size: Option<u64>,
        /// The limit, in bytes.
        limit: u64,
        /// Whether the decompressed image is what is too large.
        decompressed: bool,
    },
}

fn too_large_subject(size: Option<u64>, decompressed: bool) -> String {
    match (size, decompressed) {
        (Some(size), false) => format!("the file ({size} bytes)"),
        (None, false) => "the file".to_string(),
        (Some(size), true) => format!("decompressed, the file ({size} bytes)"),
        (None, true) => "decompressed, the file".to_string(),
    }
}

impl Refused {
    /// The refusal carried by `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&Refused> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Refused>())
    }

    /// The refusal as an [`io::Error`] (of kind `InvalidData`), so that it
    /// can travel through [`io::Result`]s.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The refusal for a file of this type, if it is not a regular file.
    pub fn check_type(file_type: std::fs::FileType) -> Result<(), Refused> {
        use std::os::unix::fs::FileTypeExt;
        let what = if file_type.is_file() {
            return Ok(());
        } else if file_type.is_dir() {
            "directory"
        } else if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_char_device() {
            "character device"
        } else if file_type.is_block_device() {
            "block device"
        } else if file_type.is_socket() {
            "socket"
        } else {
            "special file"
        };
        Err(Refused::NotRegular(what))
    }
}

/// A small deterministic pseudo-random generator (xorshift64) for tests
/// that try many inputs: a failure reproduces from its seed.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
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
