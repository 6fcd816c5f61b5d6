//! The configuration modprobe holds when run with `-C /dev/null`: no
//! modprobe.d at all, but libkmod still parses the index directory's
//! `modules.softdep` and (kmod ≥ 33) `modules.weakdep` as configuration
//! files, and the kernel command line for `MODULE.PARAM=VALUE` options and
//! `modprobe.blacklist=`. Parsing follows libkmod's `kmod_config_parse`,
//! quirks included: only the first softdep line matching a module counts,
//! and the softdep tokenizer keeps a leading blank inside the first word.

use super::Message;
use crate::index::fnmatch::fnmatch;

/// One `softdep` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softdep {
    /// The module name (an fnmatch pattern), with `-` made `_`.
    pub module: Vec<u8>,
    /// Names to load before the module.
    pub pre: Vec<Vec<u8>>,
    /// Names to load after it.
    pub post: Vec<Vec<u8>>,
    /// The line after the module name, as written.
    pub raw: Vec<u8>,
}

/// One `weakdep` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weakdep {
    /// The module name (an fnmatch pattern), with `-` made `_`.
    pub module: Vec<u8>,
    /// Names the module may use if they are there.
    pub weak: Vec<Vec<u8>>,
    /// The line after the module name, as written.
    pub raw: Vec<u8>,
}

/// An `install` or `remove` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The module name (an fnmatch pattern for `install`).
    pub module: Vec<u8>,
    /// The shell command.
    pub command: Vec<u8>,
}

/// Everything parsed, each list in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `alias PATTERN MODULE`.
    pub aliases: Vec<(Vec<u8>, Vec<u8>)>,
    /// `blacklist MODULE`, and the kernel command line's
    /// `modprobe.blacklist=`.
    pub blacklist: Vec<Vec<u8>>,
    /// `options MODULE OPTIONS`, and the kernel command line's
    /// `MODULE.PARAM=VALUE`.
    pub options: Vec<(Vec<u8>, Vec<u8>)>,
    /// `install MODULE COMMAND`.
    pub install: Vec<Command>,
    /// `remove MODULE COMMAND`.
    pub remove: Vec<Command>,
    /// `softdep MODULE ...`.
    pub softdeps: Vec<Softdep>,
    /// `weakdep MODULE ...`.
    pub weakdeps: Vec<Weakdep>,
}

impl Config {
    /// Parses one configuration file's contents; `file` is its name in
    /// messages, which are appended to `messages` as libkmod prints them
    /// before modprobe has set up its own logging.
    pub fn parse_file(&mut self, file: &str, contents: &[u8], messages: &mut Vec<Message>) {
        let mut linenum = 0u32;
        for line in logical_lines(contents, &mut linenum) {
            let (line, number) = line;
            let line = c_str(&line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let mut rest = line;
            let Some(cmd) = strtok(&mut rest) else {
                continue;
            };
            let bad = match cmd {
                b"alias" => match (
                    strtok(&mut rest).and_then(underscores),
                    strtok(&mut rest).and_then(underscores),
                ) {
                    (Some(alias), Some(module)) => {
                        self.aliases.push((alias, module));
                        false
                    }
                    _ => true,
                },
                b"blacklist" => match strtok(&mut rest).and_then(underscores) {
                    Some(module) => {
                        self.blacklist.push(module);
                        false
                    }
                    None => true,
                },
                b"options" | b"install" | b"remove" | b"softdep" | b"weakdep" => {
                    let module = strtok(&mut rest).and_then(underscores);
                    let tail = (!rest.is_empty()).then_some(rest);
                    match (module, tail) {
                        (Some(module), Some(tail)) => {
                            self.add(cmd, module, tail);
                            false
                        }
                        _ => true,
                    }
                }
                b"include" | b"config" => {
                    messages.push(Message::DeprecatedCommand {
                        file: file.to_string(),
                        command: cmd.to_vec(),
                    });
                    false
                }
                _ => true,
            };
            if bad {
                messages.push(Message::BadConfigLine {
                    file: file.to_string(),
                    line: number,
                    command: cmd.to_vec(),
                });
            }
        }
    }

    fn add(&mut self, cmd: &[u8], module: Vec<u8>, tail: &[u8]) {
        match cmd {
            b"options" => {
                let options = tail
                    .iter()
                    .map(|&b| if b == b'\t' { b' ' } else { b })
                    .collect();
                self.options.push((module, options));
            }
            b"install" => self.install.push(Command {
                module,
                command: tail.to_vec(),
            }),
            b"remove" => self.remove.push(Command {
                module,
                command: tail.to_vec(),
            }),
            b"softdep" => {
                let (mut pre, mut post) = (Vec::new(), Vec::new());
                let mut list: Option<&mut Vec<Vec<u8>>> = None;
                for word in dep_words(tail) {
                    match word {
                        b"pre:" => list = Some(&mut pre),
                        b"post:" => list = Some(&mut post),
                        _ => {
                            if let Some(list) = list.as_deref_mut() {
                                list.push(word.to_vec());
                            }
                        }
                    }
                }
                self.softdeps.push(Softdep {
                    module,
                    pre,
                    post,
                    raw: tail.to_vec(),
                });
            }
            _ => self.weakdeps.push(Weakdep {
                module,
                weak: dep_words(tail).map(<[u8]>::to_vec).collect(),
                raw: tail.to_vec(),
            }),
        }
    }

    /// The kernel command line's module options and blacklist, parsed as
    /// libkmod parses `/proc/cmdline` (at most its first 4095 bytes).
    pub fn parse_kernel_cmdline(&mut self, cmdline: &[u8], messages: &mut Vec<Message>) {
        let buf = &cmdline[..cmdline.len().min(4095)];
        let buf = c_str(buf);
        for (module, param) in kcmdline_options(buf) {
            if module == b"modprobe" && param.starts_with(b"blacklist=") {
                for name in param[b"blacklist=".len()..].split(|&b| b == b',') {
                    self.blacklist.push(name.to_vec());
                }
            } else {
                match underscores(&module) {
                    Some(module) => self.options.push((module, param)),
                    None => messages.push(Message::BadCmdlineModule { name: module }),
                }
            }
        }
    }

    /// The first softdep entry whose pattern matches `module`, as libkmod
    /// uses it.
    pub fn softdep_for(&self, module: &[u8]) -> Option<&Softdep> {
        self.softdeps.iter().find(|s| fnmatch(&s.module, module))
    }

    /// The first weakdep entry whose pattern matches `module`.
    pub fn weakdep_for(&self, module: &[u8]) -> Option<&Weakdep> {
        self.weakdeps.iter().find(|w| fnmatch(&w.module, module))
    }
}

/// A C string's view of `bytes`: up to the first NUL.
fn c_str(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes, |nul| &bytes[..nul])
}

/// libkmod's `freadline_wrapped`: lines joined across backslash-newline,
/// any other backslash dropped before the byte it precedes. Yields each
/// logical line with the number of the last physical line it used.
fn logical_lines<'a>(
    contents: &'a [u8],
    linenum: &'a mut u32,
) -> impl Iterator<Item = (Vec<u8>, u32)> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= contents.len() {
            return None;
        }
        let mut line = Vec::new();
        loop {
            let Some(&b) = contents.get(i) else {
                *linenum += 1;
                return Some((line, *linenum));
            };
            i += 1;
            match b {
                b'\n' => {
                    *linenum += 1;
                    return Some((line, *linenum));
                }
                b'\\' => match contents.get(i) {
                    Some(b'\n') => {
                        *linenum += 1;
                        i += 1;
                    }
                    None => {}
                    Some(&next) => {
                        line.push(next);
                        i += 1;
                    }
                },
                _ => line.push(b),
            }
        }
    })
}

/// `strtok_r(s, "\t ")`: the next token, leaving `rest` after the byte that
/// ended it.
fn strtok<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
    let s = &rest[start..];
    let len = s
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(s.len());
    *rest = s.get(len + 1..).unwrap_or(&[]);
    Some(&s[..len])
}

/// libkmod's `underscores`: `-` becomes `_` outside `[...]`; `None` for an
/// unbalanced bracket.
pub(crate) fn underscores(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = s.to_vec();
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            b'-' => out[i] = b'_',
            b']' => return None,
            b'[' => {
                i += out[i..].iter().position(|&b| b == b']')?;
            }
            _ => {}
        }
        i += 1;
    }
    Some(out)
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The words of a softdep or weakdep line as libkmod splits them. A blank
/// run at the very start is not skipped: it stays in front of the first
/// word (so ` pre: x` has the word ` pre:`, which is not the keyword).
fn dep_words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut p = 0usize;
    let mut s = 0usize;
    let mut was_space = false;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            let at = s;
            s += 1;
            match line.get(at) {
                Some(&b) if !is_c_space(b) => {
                    was_space = false;
                    continue;
                }
                Some(_) => {
                    if was_space {
                        p = at + 1;
                        continue;
                    }
                    was_space = true;
                    if p >= at {
                        continue;
                    }
                    let word = &line[p..at];
                    p = at + 1;
                    return Some(word);
                }
                None => {
                    done = true;
                    if !was_space && p < at {
                        return Some(&line[p..at]);
                    }
                }
            }
        }
        None
    })
}

/// `MODULE.PARAM[=VALUE]` options of a kernel command line, as libkmod's
/// state machine finds them (quotes allowed around the value, or around the
/// whole option, which it re-quotes as `MODULE.PARAM="VALUE"`).
fn kcmdline_options(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Ignore,
        ModName,
        Param,
        Value,
    }
    let mut out = Vec::new();
    let mut state = State::ModName;
    let mut quoted = false;
    let mut modname = 0usize;
    let mut quote_start: Option<usize> = None;
    let (mut param, mut value): (Option<usize>, Option<usize>) = (None, None);
    let mut i = 0usize;
    loop {
        let c = buf.get(i).copied().unwrap_or(0);
        let mut complete = false;
        match c {
            b'"' => {
                quoted = !quoted;
                if quoted && state == State::ModName && i == modname {
                    quote_start = Some(i);
                    modname = i + 1;
                } else if state != State::Value {
                    state = State::Ignore;
                }
            }
            0 | b' ' | b'\n' | b'\t' | 0x0b | 0x0c | b'\r' => {
                if quoted && state == State::Value {
                } else if quoted {
                    state = State::Ignore;
                } else if state == State::Value || state == State::Param {
                    complete = true;
                } else {
                    modname = i + 1;
                    state = State::ModName;
                    quote_start = None;
                }
            }
            b'.' => {
                if state == State::ModName {
                    param = Some(i + 1);
                    state = State::Param;
                } else if state == State::Param {
                    state = State::Ignore;
                }
            }
            b'=' => {
                if state == State::Param {
                    value = Some(i + 1);
                    state = State::Value;
                } else if state == State::ModName {
                    state = State::Ignore;
                }
            }
            _ => {}
        }
        if complete {
            if let Some(p) = param {
                let name = buf[modname..p - 1].to_vec();
                let mut option = buf[p..i].to_vec();
                // An option quoted whole ("mod.param=a b") is re-quoted
                // around its value.
                if let (Some(q), Some(v)) = (quote_start, value) {
                    if q < modname && v >= p && v <= i {
                        let value_at = v - p;
                        let mut requoted = option[..value_at].to_vec();
                        requoted.push(b'"');
                        requoted.extend_from_slice(&option[value_at..]);
                        option = requoted;
                    }
                }
                out.push((name, option));
            }
            modname = i + 1;
            state = State::ModName;
            quote_start = None;
            param = None;
            value = None;
        }
        if c == 0 {
            break;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        dep_words(s.as_bytes())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn dep_words_like_libkmod() {
        assert_eq!(words("pre: a b"), ["pre:", "a", "b"]);
        assert_eq!(words("pre:  a \t b  "), ["pre:", "a", "b"]);
        assert_eq!(words(" pre: a"), [" pre:", "a"]);
        assert_eq!(words("  pre: a"), ["pre:", "a"]);
        assert_eq!(words("a"), ["a"]);
    }

    #[test]
    fn first_softdep_line_wins() {
        let mut c = Config::default();
        let mut m = Vec::new();
        c.parse_file(
            "/lib/modules/v/modules.softdep",
            b"# comment\nsoftdep ksmbd pre: crc32\nsoftdep ksmbd pre: gcm\nsoftdep cifs gcm\nsoftdep x-y post: a-b c\n",
            &mut m,
        );
        assert!(m.is_empty());
        let s = c.softdep_for(b"ksmbd").unwrap();
        assert_eq!(s.pre, [b"crc32".to_vec()]);
        let cifs = c.softdep_for(b"cifs").unwrap();
        assert!(cifs.pre.is_empty() && cifs.post.is_empty());
        let xy = c.softdep_for(b"x_y").unwrap();
        assert_eq!(xy.post, [b"a-b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let mut c = Config::default();
        let mut m = Vec::new();
        c.parse_file(
            "F",
            b"softdep\nfrob x\nalias a\\\n b\ninclude /x\nalias bad] m\n",
            &mut m,
        );
        let texts: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            texts,
            [
                "libkmod: ERROR: kmod_config_parse: F line 1: ignoring bad line starting with 'softdep'",
                "libkmod: ERROR: kmod_config_parse: F line 2: ignoring bad line starting with 'frob'",
                "libkmod: ERROR: kmod_config_parse: F: command include is deprecated and not parsed anymore",
                "libkmod: ERROR: kmod_config_parse: F line 6: ignoring bad line starting with 'alias'",
            ]
        );
        assert_eq!(c.aliases, [(b"a".to_vec(), b"b".to_vec())]);
    }

    #[test]
    fn kernel_command_line() {
        let mut c = Config::default();
        let mut m = Vec::new();
        c.parse_kernel_cmdline(
            b"quiet e1000e.IntMode=1 \"snd-hda.model=a b\" x.y.z=1 modprobe.blacklist=pcspkr,floppy random.trust_cpu=1 -- 0.0.0.0:1\n",
            &mut m,
        );
        assert!(m.is_empty());
        let opts: Vec<(String, String)> = c
            .options
            .iter()
            .map(|(a, b)| {
                (
                    String::from_utf8_lossy(a).into(),
                    String::from_utf8_lossy(b).into(),
                )
            })
            .collect();
        assert_eq!(
            opts,
            [
                ("e1000e".into(), "IntMode=1".into()),
                ("snd_hda".into(), "model=\"a b\"".into()),
                ("random".into(), "trust_cpu=1".into()),
            ]
        );
        assert_eq!(c.blacklist, [b"pcspkr".to_vec(), b"floppy".to_vec()]);
    }
}
