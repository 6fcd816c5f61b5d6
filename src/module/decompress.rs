//! Module decompression, chosen by magic bytes as libkmod does (the file name
//! does not matter: a `.ko.xz` holding a plain ELF is read as plain).

use std::borrow::Cow;
use std::io::Read;

/// Why a module's payload could not be decompressed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecompressError {
    /// The data cannot be decoded.
    #[error("{format} data is corrupt: {reason}")]
    Corrupt {
        /// The compression.
        format: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The decompressed data exceeds the limit (bytes).
    #[error("decompressed {format} data exceeds the limit of {limit} bytes{} (raise it with --max-file-size MIB)", declared(*.size))]
    TooLarge {
        /// The compression.
        format: &'static str,
        /// The size the data declares, when it says.
        size: Option<u64>,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A zstd frame that does not declare its size: kmod 34 refuses it,
    /// kmod 33 and older decompress it as a stream.
    #[error("zstd data is corrupt: Failed to determine decompression size")]
    ZstdUnsized,
}

fn declared(size: Option<u64>) -> String {
    size.map(|s| format!(" (it declares {s} bytes)"))
        .unwrap_or_default()
}

pub use crate::compress::Compression;

/// Returns the uncompressed payload, borrowing it when it was not compressed.
/// `limit` caps the decompressed size so a hostile file cannot exhaust memory.
pub fn decompress(bytes: &[u8], limit: u64) -> Result<Cow<'_, [u8]>, DecompressError> {
    let format = Compression::detect(bytes);
    match format {
        Compression::None => return Ok(Cow::Borrowed(bytes)),
        Compression::Zstd => return decompress_zstd(bytes, limit).map(Cow::Owned),
        Compression::Gzip | Compression::Xz => {}
    }
    let mut reader = format
        .decoder_within(bytes, MAX_WINDOW)
        .map_err(|e| corrupt(format, &e))?;
    // Sizing the buffer right from the start avoids reallocating (and
    // briefly holding twice) a large image while it grows.
    let hint = match format {
        Compression::Xz => xz_uncompressed_size(bytes),
        Compression::Gzip => gzip_uncompressed_size(bytes),
        _ => None,
    };
    let capacity = checked_hint(&mut reader, format, hint, limit)?;
    read_capped(reader, format, limit, capacity).map(Cow::Owned)
}

/// The buffer size to start with, from the size the data declares. When
/// that is over the limit, the data is decompressed without keeping it, to
/// tell a decompression bomb (too large: it costs no memory) from a corrupt
/// file whose trailer is garbage (corrupt, as kmod would find it).
fn checked_hint(
    reader: &mut dyn Read,
    format: Compression,
    hint: Option<u64>,
    limit: u64,
) -> Result<usize, DecompressError> {
    match hint {
        Some(declared) if declared > limit => {
            let counted = std::io::copy(
                &mut reader.take(limit.saturating_add(1)),
                &mut std::io::sink(),
            );
            Err(match counted {
                Ok(n) if n > limit => DecompressError::TooLarge {
                    format: format.name(),
                    size: Some(declared),
                    limit,
                },
                Ok(_) => DecompressError::Corrupt {
                    format: format.name(),
                    reason: "the declared size does not match the data".into(),
                },
                Err(e) => corrupt(format, &e),
            })
        }
        Some(n) => Ok(usize::try_from(n).unwrap_or(0)),
        None => Ok(0),
    }
}

/// The most memory a module's decoder may set aside for its window (zstd)
/// or dictionary (xz), whatever the module size limit: decoders allocate
/// what a frame's header asks for before any data, so a 68-byte zstd frame
/// could make them allocate 2 GiB (found by fuzzing). This is libzstd's
/// default limit (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`, 2^27 bytes), which kmod's
/// streaming zstd decoder keeps, so a frame kmod cannot decode is not
/// decoded here either; `xz -9` needs 64 MiB. What the window holds is
/// still bounded by the output, which stops at the module size limit.
const MAX_WINDOW: u64 = 1 << 27;

/// Decompresses a zstd module whose frame does not declare its size, as
/// kmod up to 33 does: as a stream of frames, up to `limit` bytes.
pub fn decompress_zstd_streamed(bytes: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let decoder = Compression::Zstd
        .decoder_within(bytes, MAX_WINDOW)
        .map_err(|e| corrupt(Compression::Zstd, &e))?;
    read_capped(decoder, Compression::Zstd, limit, 0)
}

/// Decompresses an xz or gzip module read from `source`, a chunk at a time
/// as kmod reads them, so the compressed file is never held whole. `tail`
/// (the file's last bytes) gives the size hint.
pub fn decompress_stream(
    source: impl Read,
    format: Compression,
    tail: &[u8],
    limit: u64,
) -> Result<Vec<u8>, DecompressError> {
    let hint = match format {
        Compression::Xz => xz_uncompressed_size(tail),
        Compression::Gzip => gzip_uncompressed_size(tail),
        Compression::None | Compression::Zstd => {
            let mut bytes = Vec::new();
            let mut source = source;
            source
                .read_to_end(&mut bytes)
                .map_err(|e| corrupt(format, &e))?;
            return decompress(&bytes, limit).map(Cow::into_owned);
        }
    };
    let mut reader = format
        .decoder_within(source, MAX_WINDOW)
        .map_err(|e| corrupt(format, &e))?;
    let capacity = checked_hint(&mut reader, format, hint, limit)?;
    read_capped(reader, format, limit, capacity)
}

/// libkmod sizes its buffer from the first frame's declared content size and
/// decompresses everything into it, so a frame without a size (or with size
/// 0), or more data than declared, is an error there; we reject the same.
fn decompress_zstd(bytes: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt {
        format: "zstd",
        reason,
    };
    let size = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(size)) if size > 0 => size,
        Ok(_) => return Err(DecompressError::ZstdUnsized),
        Err(_) => return Err(corrupt("Failed to determine decompression size".into())),
    };
    if size > limit {
        return Err(DecompressError::TooLarge {
            format: "zstd",
            size: Some(size),
            limit,
        });
    }
    zstd::bulk::decompress(bytes, size as usize).map_err(|e| corrupt(e.to_string()))
}

/// The uncompressed size an xz file declares in its index, when it is a
/// single well-formed stream. Only a hint: the decoder still checks it.
fn xz_uncompressed_size(bytes: &[u8]) -> Option<u64> {
    const FOOTER: usize = 12;
    // Stream padding: zero bytes after the stream, in multiples of four.
    let mut end = bytes.len();
    while end >= 4 && bytes[end - 4..end] == [0; 4] {
        end -= 4;
    }
    let footer = bytes.get(end.checked_sub(FOOTER)?..end)?;
    if &footer[10..12] != b"YZ" {
        return None;
    }
    let backward = (u64::from(u32::from_le_bytes(footer[4..8].try_into().ok()?)) + 1) * 4;
    let index_start = (end - FOOTER).checked_sub(usize::try_from(backward).ok()?)?;
    let index = &bytes[index_start..end - FOOTER];
    let (&indicator, mut rest) = index.split_first()?;
    if indicator != 0 {
        return None;
    }
    let mut vli = || -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in rest.iter().enumerate().take(9) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                rest = &rest[i + 1..];
                return Some(value);
            }
        }
        None
    };
    let records = vli()?;
    let mut total = 0u64;
    for _ in 0..records {
        let _unpadded = vli()?;
        total = total.checked_add(vli()?)?;
    }
    Some(total)
}

/// gzip's trailer holds the uncompressed size modulo 2^32 (of the last
/// member): a hint for the common single-member file.
fn gzip_uncompressed_size(bytes: &[u8]) -> Option<u64> {
    let tail = bytes.get(bytes.len().checked_sub(4)?..)?;
    Some(u64::from(u32::from_le_bytes(tail.try_into().ok()?)))
}

fn corrupt(format: Compression, e: &std::io::Error) -> DecompressError {
    DecompressError::Corrupt {
        format: format.name(),
        reason: e.to_string(),
    }
}

fn read_capped(
    reader: impl Read,
    format: Compression,
    limit: u64,
    capacity: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(capacity);
    // Read one byte past the limit to tell "exactly at" from "over".
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format, &e))?;
    if out.len() as u64 > limit {
        return Err(DecompressError::TooLarge {
            format: format.name(),
            size: None,
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_is_borrowed() {
        let data = b"\x7fELF plain";
        assert!(matches!(decompress(data, 100).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn gzip_roundtrip_and_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[7u8; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decompress(&gz, 1000).unwrap().len(), 1000);
        assert!(matches!(
            decompress(&gz, 999),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn zstd_needs_a_declared_size() {
        let with_size = zstd::bulk::compress(&[1u8; 500], 3).unwrap();
        assert_eq!(decompress(&with_size, 1000).unwrap().len(), 500);
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        enc.write_all(&[1u8; 500]).unwrap();
        enc.finish().unwrap();
        assert!(matches!(
            decompress(&streamed, 1000),
            Err(DecompressError::ZstdUnsized)
        ));
        assert_eq!(
            decompress_zstd_streamed(&streamed, 1000).unwrap().len(),
            500
        );
        assert!(matches!(
            decompress_zstd_streamed(&streamed, 499),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn declared_bombs_are_refused_before_decompressing() {
        let mut xz = Vec::new();
        let mut enc = liblzma::write::XzEncoder::new(&mut xz, 1);
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        enc.finish().unwrap();
        assert!(matches!(
            decompress(&xz, 1000),
            Err(DecompressError::TooLarge {
                size: Some(1_048_576),
                ..
            })
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(
            decompress(&gz, 1000),
            Err(DecompressError::TooLarge {
                size: Some(1_048_576),
                ..
            })
        ));
    }

    #[test]
    fn xz_size_hint_is_read_from_the_index() {
        let data = vec![42u8; 123_457];
        let mut xz = Vec::new();
        let mut enc = liblzma::write::XzEncoder::new(&mut xz, 6);
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        assert_eq!(xz_uncompressed_size(&xz), Some(123_457));
        assert_eq!(decompress(&xz, 1 << 20).unwrap().len(), 123_457);
        // Garbage where the footer should be gives no hint, not an error.
        assert_eq!(xz_uncompressed_size(&xz[..xz.len() - 1]), None);
    }

    #[test]
    fn corrupt_zstd_is_an_error() {
        let bad = [0x28, 0xB5, 0x2F, 0xFD, 0xff, 0xff, 0xff];
        assert!(decompress(&bad, 100).is_err());
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    /// A zstd frame without a content size whose header asks for a 2 GiB
    /// window (window descriptor 0xA8: 2^31), then an empty last block.
    const HUGE_WINDOW: [u8; 9] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00];

    #[test]
    fn a_zstd_window_beyond_the_default_limit_is_refused() {
        // libzstd (and so kmod) refuses it by default; kmodidx did not, and
        // let the decoder allocate 2 GiB for a 9-byte module.
        let err = decompress_zstd_streamed(&HUGE_WINDOW, 128 << 20).unwrap_err();
        assert!(matches!(err, DecompressError::Corrupt { .. }), "{err:?}");
        // The same frame asking for 128 MiB, the limit, decodes (to
        // nothing), whatever the module size limit.
        let mut small = HUGE_WINDOW;
        small[5] = 17 << 3;
        assert_eq!(decompress_zstd_streamed(&small, 1000).unwrap(), b"");
    }
}
