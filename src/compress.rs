//! The four compressions kmod and initramfs tools use (none, gzip, xz,
//! zstd), recognised by their magic bytes, never by a file name.

use std::fmt;
use std::io::{self, Read};

const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0];
const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];

/// How many leading bytes [`Compression::detect`] needs.
pub const MAGIC_LEN: usize = 6;

/// A compression, of a module, an input archive or an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (several members are read as one stream).
    Gzip,
    /// xz (several streams are read as one).
    Xz,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression of data starting with `bytes`.
    pub fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else if bytes.starts_with(XZ_MAGIC) {
            Compression::Xz
        } else if bytes.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// Compressions kmodidx does not read that the kernel's initramfs
    /// unpacker also accepts, named by their magic, so that an error can say
    /// which one it met.
    pub fn unsupported(bytes: &[u8]) -> Option<&'static str> {
        const KNOWN: [(&[u8], &str); 5] = [
            (b"BZh", "bzip2"),
            (&[0x5d, 0, 0], "lzma"),
            (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
            (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
            (&[0x89, b'L', b'Z', b'O'], "lzo"),
        ];
        KNOWN
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|&(_, name)| name)
    }

    /// A short name: `plain`, `gzip`, `xz` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// A streaming decoder of `source`. zstd frames may use windows up to
    /// 2 GiB (`--long=31`), as `zstd -d` accepts with that option.
    pub fn decoder<'r>(self, source: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
        self.decoder_within(source, u64::MAX)
    }

    /// As [`Compression::decoder`], refusing data whose decoding needs a
    /// window (zstd's window, xz's dictionary) of more than about `memory`
    /// bytes, which the decoder would otherwise fill as data goes by: what
    /// hostile data can make it hold is then bounded. zstd's default levels
    /// use at most 8 MiB, `xz -9` 64 MiB, gzip always 32 KiB.
    pub fn decoder_within<'r>(
        self,
        source: impl Read + 'r,
        memory: u64,
    ) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Compression::None => Box::new(source),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(source)),
            Compression::Xz => {
                // The limit counts the decoder's own state too.
                let limit = memory.saturating_add(1 << 20);
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    limit,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(source, stream))
            }
            Compression::Zstd => {
                let mut dec = zstd::stream::read::Decoder::with_buffer(io::BufReader::new(source))?;
                let log = 63 - memory.max(1).leading_zeros();
                dec.window_log_max(log.clamp(10, 31))?;
                Box::new(dec)
            }
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            other => other.name(),
        })
    }
}
