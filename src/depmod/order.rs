//! Module order: kmod's hash order, then `modules.order`.
//!
//! kmod builds its module array by walking its name hash table and then
//! stable-sorts it so that modules listed in `modules.order` come first, in
//! that file's order. Modules not listed keep the hash order, which depends
//! only on their names, so the result never depends on directory order.

use foldhash::{HashMap, HashMapExt};

use super::hash_order::{sort_in_hash_order, MODULE_BUCKETS};
use crate::diag::{Diagnostic, Kind};
use crate::util::{c_string, fgets_chunks};

/// How duplicate lines in `modules.order` are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateRule {
    /// kmod 34: a module's first line counts.
    FirstWins,
    /// kmod 33 and older: its last line counts.
    LastWins,
}

/// Returns the permutation of `names` kmod writes modules in. `uncrelpaths`
/// holds each module's `modules.order` key (its path relative to the module
/// directory, ending in `.ko`), or `None` for modules outside it.
pub fn module_order(
    names: &[&[u8]],
    uncrelpaths: &[Option<Vec<u8>>],
    modules_order: Option<(&str, &[u8])>,
    rule: DuplicateRule,
    diags: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let mut order = sort_in_hash_order((0..names.len()).collect(), MODULE_BUCKETS, |&i| names[i]);

    let Some((order_path, text)) = modules_order else {
        return order;
    };
    let by_key: HashMap<&[u8], usize> = uncrelpaths
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.as_deref().map(|k| (k, i)))
        .collect();

    // kmod reads the file with fgets into a PATH_MAX buffer; a chunk that does
    // not end in '\n' (a missing final newline, or an over-long line) makes it
    // give up without reordering anything.
    let mut rank: HashMap<usize, usize> = HashMap::new();
    for (lineno, chunk) in fgets_chunks(text, 4096).enumerate() {
        let line = c_string(chunk);
        if line.is_empty() {
            continue;
        }
        let Some(key) = line.strip_suffix(b"\n") else {
            diags.push(Diagnostic::error(Kind::OrderLineUnterminated {
                path: order_path.to_string(),
                line: lineno + 1,
            }));
            return order;
        };
        if let Some(&module) = by_key.get(key) {
            match rule {
                DuplicateRule::FirstWins => {
                    rank.entry(module).or_insert(lineno);
                }
                DuplicateRule::LastWins => {
                    rank.insert(module, lineno);
                }
            }
        }
    }
    // A stable sort keeps the hash order among unlisted modules.
    order.sort_by_key(|i| rank.get(i).map_or((1, 0), |&r| (0, r)));
    order
}

/// The `modules.order` key of a module at `relpath` named `name`: the
/// directory part, then as many bytes of the file name as the module name
/// has, then three more (normally `.ko`).
pub fn uncompressed_relpath(relpath: &[u8], name: &[u8]) -> Vec<u8> {
    let file_start = relpath
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    let end = (file_start + name.len() + 3).min(relpath.len());
    relpath[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncrelpath() {
        assert_eq!(
            uncompressed_relpath(b"kernel/a/snd-x.ko.xz", b"snd_x"),
            b"kernel/a/snd-x.ko"
        );
        assert_eq!(uncompressed_relpath(b"foo.ko", b"foo"), b"foo.ko");
    }

    #[test]
    fn listed_first_then_hash_order() {
        let names: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d"];
        let keys: Vec<Option<Vec<u8>>> = vec![
            Some(b"k/a.ko".to_vec()),
            Some(b"k/b.ko".to_vec()),
            Some(b"k/c.ko".to_vec()),
            None,
        ];
        let mut diags = Vec::new();
        let text = b"k/c.ko\nk/a.ko\nk/c.ko\n";
        let first = module_order(
            &names,
            &keys,
            Some(("o", text)),
            DuplicateRule::FirstWins,
            &mut diags,
        );
        assert_eq!(&first[..2], &[2, 0]);
        let last = module_order(
            &names,
            &keys,
            Some(("o", text)),
            DuplicateRule::LastWins,
            &mut diags,
        );
        assert_eq!(&last[..2], &[0, 2]);
        assert!(diags.is_empty());
    }

    #[test]
    fn missing_newline_disables_sorting() {
        let names: Vec<&[u8]> = vec![b"a", b"b"];
        let keys = vec![Some(b"a.ko".to_vec()), Some(b"b.ko".to_vec())];
        let mut diags = Vec::new();
        let hash_only = module_order(&names, &keys, None, DuplicateRule::FirstWins, &mut diags);
        let got = module_order(
            &names,
            &keys,
            Some(("o", b"b.ko\na.ko")),
            DuplicateRule::FirstWins,
            &mut diags,
        );
        assert_eq!(got, hash_only);
        assert_eq!(diags.len(), 1);
    }
}
