//! depmod.d configuration: which copy of a module wins, and where to look.
//!
//! kmod *prepends* every directive to its lists, so the entry added last
//! comes first there. kmodidx keeps the lists in file order (appending is
//! linear; prepending a long `search` line one word at a time is quadratic)
//! and [`crate::depmod::discover`] reads them back to front, computing
//! priorities exactly as kmod does, quirks included.

use crate::diag::{lossy, Diagnostic, Kind};
use crate::source::{EntryKind, Tree};

/// One `search` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// A subdirectory of the module directory, such as `updates`.
    Path(Vec<u8>),
    /// `built-in`: everything not matched by another entry.
    BuiltIn,
    /// `external`: the directories named by `external` directives.
    External,
}

/// The parsed configuration. Every list is in file order: kmod's own
/// (prepended) order is the reverse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `search` entries. A word already listed is not listed again: kmod
    /// would list it again, but only its first occurrence in the files
    /// (the last in kmod's list) can ever decide a priority.
    pub searches: Vec<Search>,
    /// `subdir/modname` of each matching `override` (no extension).
    pub overrides: Vec<Vec<u8>>,
    /// Directories named by matching `external` directives.
    pub externals: Vec<Vec<u8>>,
    /// Directory (and file) names skipped anywhere in the tree.
    pub excludes: Vec<Vec<u8>>,
    /// The `search` words listed so far.
    listed: foldhash::HashSet<Vec<u8>>,
}

/// The most entries (`search` words, `override`, `external` and `exclude`
/// entries) a configuration may hold. Real ones hold a handful; kmod has no
/// limit, and a hostile file of millions of words would cost gigabytes.
pub const MAX_ENTRIES: usize = 1 << 16;

impl Config {
    /// kmod's default when no `search` directive was seen: `updates` first.
    pub fn with_defaults(mut self) -> Self {
        if self.searches.is_empty() {
            self.searches.push(Search::Path(b"updates".to_vec()));
        }
        self
    }

    fn add_search(&mut self, word: &[u8]) {
        if self.listed.contains(word) {
            return;
        }
        self.listed.insert(word.to_vec());
        let search = match word {
            b"built-in" => Search::BuiltIn,
            b"external" => Search::External,
            path => Search::Path(path.to_vec()),
        };
        self.searches.push(search);
    }

    fn entries(&self) -> usize {
        self.searches.len() + self.overrides.len() + self.externals.len() + self.excludes.len()
    }

    /// Parses one depmod.d file's text, appending kmod's messages (with
    /// `file` and line numbers) to `diags`.
    pub fn parse_file(
        &mut self,
        file: &str,
        text: &[u8],
        kernel_version: &[u8],
        diags: &mut Vec<Diagnostic>,
    ) -> Result<(), ConfigError> {
        for (linenum, line) in logical_lines(text) {
            if self.entries() > MAX_ENTRIES {
                return Err(ConfigError::TooManyEntries {
                    file: format!("{file}:{linenum}"),
                });
            }
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let mut words = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|w| !w.is_empty());
            let Some(cmd) = words.next() else { continue };
            let ok = match cmd {
                b"search" => {
                    for w in words {
                        if self.entries() > MAX_ENTRIES {
                            break;
                        }
                        self.add_search(w);
                    }
                    true
                }
                b"override" => match (words.next(), words.next(), words.next()) {
                    (Some(modname), Some(version), Some(subdir)) => {
                        if kernel_matches(version, kernel_version) {
                            let mut path = subdir.to_vec();
                            path.push(b'/');
                            path.extend_from_slice(modname);
                            self.overrides.push(path);
                        } else {
                            diags.push(Diagnostic::info(Kind::OverrideVersionMismatch {
                                file: file.to_string(),
                                line: linenum,
                                pattern: lossy(version),
                            }));
                        }
                        true
                    }
                    _ => false,
                },
                b"external" => match (words.next(), words.next()) {
                    (Some(version), Some(dir)) => {
                        if kernel_matches(version, kernel_version) {
                            self.externals.push(dir.to_vec());
                        } else {
                            diags.push(Diagnostic::info(Kind::ExternalVersionMismatch {
                                file: file.to_string(),
                                line: linenum,
                                pattern: lossy(version),
                            }));
                        }
                        true
                    }
                    _ => false,
                },
                b"exclude" => {
                    for w in words {
                        if self.entries() > MAX_ENTRIES {
                            break;
                        }
                        self.excludes.push(w.to_vec());
                    }
                    true
                }
                b"include" | b"make_map_files" => {
                    diags.push(Diagnostic::info(Kind::ConfigNotImplemented {
                        file: file.to_string(),
                        line: linenum,
                        command: lossy(cmd),
                    }));
                    true
                }
                _ => false,
            };
            if !ok {
                diags.push(Diagnostic::error(Kind::ConfigBadLine {
                    file: file.to_string(),
                    line: linenum,
                    command: lossy(cmd),
                }));
            }
        }
        if self.entries() > MAX_ENTRIES {
            return Err(ConfigError::TooManyEntries {
                file: file.to_string(),
            });
        }
        Ok(())
    }
}

/// Logical lines as kmod's `freadline_wrapped` reads them: a backslash
/// joins the next physical line (or just escapes the next byte), and each
/// line is numbered by the physical line it *ends* on.
fn logical_lines(text: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut linenum = 0;
    let mut bytes = text.iter().copied();
    loop {
        match bytes.next() {
            None => {
                if !buf.is_empty() {
                    out.push((linenum + 1, std::mem::take(&mut buf)));
                }
                break;
            }
            Some(b'\n') => {
                linenum += 1;
                out.push((linenum, std::mem::take(&mut buf)));
            }
            Some(b'\\') => match bytes.next() {
                Some(b'\n') => linenum += 1,
                Some(other) => buf.push(other),
                None => {}
            },
            Some(other) => buf.push(other),
        }
    }
    // The rest of the program sees C strings: a NUL ends the line.
    for (_, line) in &mut out {
        if let Some(nul) = line.iter().position(|&b| b == 0) {
            line.truncate(nul);
        }
    }
    out
}

/// kmod matches a directive's kernel field as a POSIX extended regex
/// (unanchored), with `*` meaning "any".
fn kernel_matches(pattern: &[u8], kernel_version: &[u8]) -> bool {
    if pattern == b"*" {
        return true;
    }
    // An invalid pattern simply does not match, as when regcomp() fails.
    std::str::from_utf8(pattern)
        .ok()
        .and_then(|p| regex::bytes::Regex::new(p).ok())
        .is_some_and(|re| re.is_match(kernel_version))
}

/// A place depmod.d files are read from: a directory (or single file) in
/// some tree, named in messages as kmod would name it.
pub struct ConfigLocation<'a> {
    /// The tree the files are read from.
    pub tree: &'a dyn Tree,
    /// Path inside `tree`.
    pub path: Vec<u8>,
    /// The path kmod prints, such as `/etc/depmod.d`.
    pub display: String,
}

/// kmod 34's configuration directories, in precedence order.
pub const DEFAULT_CONFIG_DIRS: [&str; 5] = [
    "/etc/depmod.d",
    "/run/depmod.d",
    "/usr/local/lib/depmod.d",
    "/usr/lib/depmod.d",
    "/lib/depmod.d",
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file the tree refused to read (a FIFO, a device, a file over the
    /// size limit).
    #[error("{file}: {reason}")]
    Refused {
        /// The file, as messages name it.
        file: String,
        /// Why.
        reason: crate::util::Refused,
    },
    /// More than [`MAX_ENTRIES`] entries.
    #[error("{file}: the configuration holds more than {MAX_ENTRIES} entries (search words, override, external and exclude entries); refusing it")]
    TooManyEntries {
        /// The file (and line) where the limit was passed.
        file: String,
    },
}

/// Loads configuration as kmod does: every `*.conf` file of every location,
/// one file per name (the first location holding a name wins), parsed in
/// byte order of the names; then kmod's default search list if none was set.
pub fn load(
    locations: &[ConfigLocation<'_>],
    kernel_version: &[u8],
    diags: &mut Vec<Diagnostic>,
) -> Result<Config, ConfigError> {
    // (name, location index, path in tree, path for messages)
    let mut files: Vec<(Vec<u8>, usize, Vec<u8>, String)> = Vec::new();
    let mut add = |name: Vec<u8>, loc: usize, path: Vec<u8>, display: String| {
        if let Err(pos) = files.binary_search_by(|f| f.0.as_slice().cmp(&name)) {
            files.insert(pos, (name, loc, path, display));
        }
    };
    for (i, loc) in locations.iter().enumerate() {
        match loc.tree.kind(&loc.path) {
            None => continue,
            Some(EntryKind::Dir) => {}
            Some(_) => {
                let name = loc
                    .path
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap_or_default()
                    .to_vec();
                add(name, i, loc.path.clone(), loc.display.clone());
                continue;
            }
        }
        let entries = match loc.tree.read_dir(&loc.path) {
            Ok(entries) => entries,
            Err(e) => {
                diags.push(Diagnostic::error(Kind::ConfigDirUnreadable {
                    path: loc.display.clone(),
                    reason: crate::util::io_reason(&e),
                }));
                continue;
            }
        };
        for entry in entries {
            let name_text = String::from_utf8_lossy(&entry.name);
            if entry.name.first() == Some(&b'.') {
                continue;
            }
            if entry.name.len() < 6 || !entry.name.ends_with(b".conf") {
                diags.push(Diagnostic::info(Kind::ConfigNotConf {
                    path: format!("{}/{name_text}", loc.display),
                }));
                continue;
            }
            match entry.kind {
                EntryKind::Dir => {
                    diags.push(Diagnostic::error(Kind::ConfigNestedDir {
                        path: format!("{}/{name_text}", loc.display),
                    }));
                    continue;
                }
                EntryKind::Other
                    if loc
                        .tree
                        .kind(&crate::source::join(&[&loc.path, &entry.name]))
                        .is_none() =>
                {
                    diags.push(Diagnostic::error(Kind::ConfigCannotStat {
                        path: format!("{}{name_text}", loc.display),
                    }));
                    continue;
                }
                _ => {}
            }
            let path = crate::source::join(&[&loc.path, &entry.name]);
            let display = format!("{}/{name_text}", loc.display);
            add(entry.name, i, path, display);
        }
    }

    let mut config = Config::default();
    for (_, loc, path, display) in &files {
        match locations[*loc].tree.read(path) {
            Ok(text) => config.parse_file(display, &text, kernel_version, diags)?,
            Err(e) => match crate::util::Refused::of(&e) {
                Some(reason) => {
                    return Err(ConfigError::Refused {
                        file: display.clone(),
                        reason: reason.clone(),
                    })
                }
                None => diags.push(Diagnostic::error(Kind::ConfigUnreadable {
                    path: display.clone(),
                    reason: crate::util::io_reason(&e),
                })),
            },
        }
    }
    Ok(config.with_defaults())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_in_file_order() {
        let mut cfg = Config::default();
        let mut diags = Vec::new();
        cfg.parse_file(
            "t.conf",
            b"search updates built-in extra\nexclude a b\n# c\noverride m * sub\nbogus x\n",
            b"6.1.0",
            &mut diags,
        )
        .unwrap();
        assert_eq!(
            cfg.searches,
            vec![
                Search::Path(b"updates".to_vec()),
                Search::BuiltIn,
                Search::Path(b"extra".to_vec()),
            ]
        );
        assert_eq!(cfg.excludes, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(cfg.overrides, vec![b"sub/m".to_vec()]);
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].to_string(),
            "t.conf:5: ignoring bad line starting with 'bogus'"
        );
    }

    #[test]
    fn a_long_search_line_is_linear() {
        // 4M words, all but 50k of them repeats: kmod's prepending takes
        // minutes on this.
        let mut line = b"search".to_vec();
        for i in 0..4_000_000u32 {
            line.extend_from_slice(format!(" d{}", i % 50_000).as_bytes());
        }
        let started = std::time::Instant::now();
        let mut cfg = Config::default();
        cfg.parse_file("big.conf", &line, b"6.1.0", &mut Vec::new())
            .unwrap();
        assert_eq!(cfg.searches.len(), 50_000);
        assert_eq!(cfg.searches[0], Search::Path(b"d0".to_vec()));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        // Too many distinct entries is an error, found quickly.
        let mut cfg = Config::default();
        let many: Vec<u8> = (0..1_000_000u32)
            .flat_map(|i| format!("exclude x{i}\n").into_bytes())
            .collect();
        assert!(matches!(
            cfg.parse_file("many.conf", &many, b"6.1.0", &mut Vec::new()),
            Err(ConfigError::TooManyEntries { .. })
        ));
    }

    #[test]
    fn continuation_lines() {
        let lines = logical_lines(b"search a \\\nb\nexclude c\n");
        assert_eq!(
            lines,
            vec![(2, b"search a b".to_vec()), (3, b"exclude c".to_vec())]
        );
    }
}
