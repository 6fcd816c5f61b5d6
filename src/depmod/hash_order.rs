//! The iteration order of kmod's internal hash table.
//!
//! kmod stores modules and symbols in a bucketed hash table and writes
//! `modules.symbols` (and orders modules missing from `modules.order`) by
//! walking it: buckets in index order, and inside a bucket the keys sorted by
//! `strcmp`. The order is therefore a pure function of the key set, which lets
//! us reproduce it without building the table: sort by `(bucket, key)`.
//!
//! The hash is Paul Hsieh's SuperFastHash as kmod compiles it on x86: 16-bit
//! reads are little-endian and the tail bytes are *signed* `char`s. We do the
//! same arithmetic on every host so the output never depends on where we run.

/// Buckets of kmod's `modules_by_name` table (`hash_new(512, ...)`).
pub const MODULE_BUCKETS: u32 = 512;
/// Buckets of kmod's `symbols` table (`hash_new(2048, ...)`).
pub const SYMBOL_BUCKETS: u32 = 2048;

/// SuperFastHash of `key`, bit-for-bit as kmod computes it on x86-64.
pub fn superfast(key: &[u8]) -> u32 {
    let read16 = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]));
    // C `char` is signed on x86: bytes >= 0x80 sign-extend before mixing.
    let signed = |b: u8| b as i8 as i32 as u32;

    let mut hash = key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        hash = hash.wrapping_add(read16(&c[0..2]));
        let tmp = (read16(&c[2..4]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    let rem = chunks.remainder();
    match rem.len() {
        3 => {
            hash = hash.wrapping_add(read16(&rem[0..2]));
            hash ^= hash << 16;
            hash ^= signed(rem[2]) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        2 => {
            hash = hash.wrapping_add(read16(&rem[0..2]));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        1 => {
            hash = hash.wrapping_add(signed(rem[0]));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash = hash.wrapping_add(hash >> 6);
    hash
}

/// The bucket `key` lands in, for a table of `buckets` (a power of two).
pub fn bucket(key: &[u8], buckets: u32) -> u32 {
    superfast(key) & (buckets - 1)
}

/// `items` in kmod's hash iteration order for their keys. Each key is
/// hashed once, and compared in place (tens of thousands of symbols: a copy
/// of each key would cost an allocation apiece).
pub fn sort_in_hash_order<T, K: AsRef<[u8]>>(
    items: Vec<T>,
    buckets: u32,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut keyed: Vec<(u32, T)> = items
        .into_iter()
        .map(|item| (bucket(key(&item).as_ref(), buckets), item))
        .collect();
    keyed.sort_by(|(a_bucket, a), (b_bucket, b)| {
        a_bucket
            .cmp(b_bucket)
            .then_with(|| key(a).as_ref().cmp(key(b).as_ref()))
    });
    keyed.into_iter().map(|(_, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Reference values from kmod's hash_superfast compiled with gcc on
        // x86-64: every tail length, and bytes >= 0x80 in the tail (where
        // the signed `char` matters) and in the body.
        let cases: [(&[u8], u32); 12] = [
            (b"", 0),
            (b"a", 291415938),
            (b"ab", 1366002500),
            (b"abc", 3535673738),
            (b"abcd", 3671636187),
            (b"snd_hda_intel", 1849698465),
            (b"nf_conntrack", 2493929817),
            (b"__this_module", 3849789009),
            (b"abc\xe9", 2757877863),
            (b"ab\xe9", 3034567861),
            (b"\xe9", 1776944832),
            (b"xhci_pci_renesas", 4196391997),
        ];
        for (key, want) in cases {
            assert_eq!(superfast(key), want, "{:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn order_is_bucket_then_bytes() {
        let v = sort_in_hash_order(vec!["zeta", "alpha", "mid", "beta"], 4, |s| s.as_bytes());
        for w in v.windows(2) {
            let (a, b) = (w[0].as_bytes(), w[1].as_bytes());
            assert!((bucket(a, 4), a) < (bucket(b, 4), b));
        }
    }
}
