//! Shell-style pattern matching as glibc's `fnmatch(pattern, string, 0)`
//! does it in the C locale, the way libkmod matches module aliases (the keys
//! of `modules.alias.bin` are patterns) and configuration names.
//!
//! With no flags, `*` and `?` match any byte (`/` and a leading `.`
//! included), `\` quotes the next byte, and `[...]` is a bracket expression
//! with `!` or `^` for negation, ranges by byte value, the character classes
//! of the C locale (`[:alpha:]`, ...), and single-byte equivalence classes
//! and collating symbols (`[=a=]`, `[.a.]`). The quirks of glibc's bracket
//! parser are kept (an unterminated `[` matches itself; an invalid class
//! name fails the whole match; a malformed `[=` after the matching member
//! fails it too), because a pattern must select exactly the modules modprobe
//! selects. Matching is iterative with one backtrack point per `*`, so it
//! takes at most `pattern.len() * string.len()` steps.

/// The longest character class name glibc accepts.
const CHAR_CLASS_MAX_LENGTH: usize = 256;

/// Whether `string` matches `pattern`, as `fnmatch(pattern, string, 0) == 0`.
pub fn fnmatch(pattern: &[u8], string: &[u8]) -> bool {
    let pat = Pattern(pattern);
    let (mut p, mut n) = (0usize, 0usize);
    loop {
        // Match up to the next `*` (or the end of the pattern).
        match segment(pat, p, string, n) {
            Segment::Fail => return false,
            Segment::End => return true,
            Segment::Star(star_p, star_n) => {
                p = star_p;
                n = star_n;
            }
        }
        // At a `*`: fold the run of `*` and `?` that follows it.
        loop {
            match pat.at(p) {
                b'*' => p += 1,
                b'?' => {
                    if n == string.len() {
                        return false;
                    }
                    n += 1;
                    p += 1;
                }
                _ => break,
            }
        }
        if p == pattern.len() {
            return true;
        }
        // The first position from which the rest matches up to its next
        // `*` (or to the end) is the one glibc commits to.
        let literal = match pat.at(p) {
            b'[' => None,
            b'\\' => Some(pat.at(p + 1)),
            c => Some(c),
        };
        let mut next = None;
        for k in n..string.len() {
            if literal.is_some_and(|c| string[k] != c) {
                continue;
            }
            match segment(pat, p, string, k) {
                Segment::Fail => continue,
                Segment::End => return true,
                Segment::Star(sp, sn) => {
                    next = Some((sp, sn));
                    break;
                }
            }
        }
        match next {
            Some((sp, sn)) => {
                p = sp;
                n = sn;
            }
            None => return false,
        }
    }
}

/// A pattern read as a C string: past its end, every byte is NUL.
#[derive(Clone, Copy)]
struct Pattern<'a>(&'a [u8]);

impl Pattern<'_> {
    fn at(self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

enum Segment {
    Fail,
    /// The pattern ended exactly where the string did.
    End,
    /// A `*` at this pattern position, reached at this string position.
    Star(usize, usize),
}

/// Matches `pat[p..]` against `s[n..]` up to the next `*`.
fn segment(pat: Pattern<'_>, mut p: usize, s: &[u8], mut n: usize) -> Segment {
    loop {
        let c = pat.at(p);
        if c == 0 {
            return if n == s.len() {
                Segment::End
            } else {
                Segment::Fail
            };
        }
        p += 1;
        match c {
            b'?' => {
                if n == s.len() {
                    return Segment::Fail;
                }
            }
            b'\\' => {
                let quoted = pat.at(p);
                p += 1;
                if quoted == 0 || n == s.len() || s[n] != quoted {
                    return Segment::Fail;
                }
            }
            b'*' => return Segment::Star(p - 1, n),
            b'[' => {
                if n == s.len() {
                    return Segment::Fail;
                }
                match bracket(pat, p, s[n]) {
                    Bracket::Matched(after) => p = after,
                    Bracket::Unterminated => {
                        // `[` matches itself.
                        if s[n] != b'[' {
                            return Segment::Fail;
                        }
                    }
                    Bracket::Fail => return Segment::Fail,
                }
            }
            _ => {
                if n == s.len() || s[n] != c {
                    return Segment::Fail;
                }
            }
        }
        n += 1;
    }
}

enum Bracket {
    /// The byte is accepted; the pattern continues here.
    Matched(usize),
    /// No closing `]`: the `[` is an ordinary byte.
    Unterminated,
    Fail,
}

/// Evaluates the bracket expression whose body starts at `p` for byte `fn_`.
fn bracket(pat: Pattern<'_>, mut p: usize, fn_: u8) -> Bracket {
    let negated = matches!(pat.at(p), b'!' | b'^');
    if negated {
        p += 1;
    }
    let mut c = pat.at(p);
    p += 1;
    let matched = loop {
        // Each arm leaves `c` holding the byte after the member it read.
        // `cold` is the member, when it may start a range.
        let cold: u8;
        if c == b'\\' {
            if pat.at(p) == 0 {
                return Bracket::Fail;
            }
            let member = pat.at(p);
            p += 1;
            match member_or_range(pat, &mut p, member, fn_) {
                Member::Matched => break true,
                Member::Fail => return Bracket::Fail,
                Member::Next(next) => c = next,
            }
        } else if c == b'[' && pat.at(p) == b':' {
            let start = p;
            let mut name = Vec::new();
            let mut q = p;
            let class = loop {
                if name.len() == CHAR_CLASS_MAX_LENGTH {
                    return Bracket::Fail;
                }
                q += 1;
                let ch = pat.at(q);
                if ch == b':' && pat.at(q + 1) == b']' {
                    q += 2;
                    break Some(q);
                }
                // glibc takes `a` to `y` only.
                if !(b'a'..=b'y').contains(&ch) {
                    break None;
                }
                name.push(ch);
            };
            match class {
                Some(after) => {
                    let Some(test) = char_class(&name) else {
                        return Bracket::Fail;
                    };
                    if test(fn_) {
                        p = after;
                        break true;
                    }
                    p = after;
                    c = pat.at(p);
                    p += 1;
                }
                None => {
                    // Not a class name: `[` is an ordinary member.
                    p = start;
                    match member_or_range(pat, &mut p, b'[', fn_) {
                        Member::Matched => break true,
                        Member::Fail => return Bracket::Fail,
                        Member::Next(next) => c = next,
                    }
                }
            }
        } else if c == b'[' && pat.at(p) == b'=' {
            let start = p;
            let eq = pat.at(p + 1);
            if eq == 0 || pat.at(p + 2) != b'=' || pat.at(p + 3) != b']' {
                p = start;
                match member_or_range(pat, &mut p, b'[', fn_) {
                    Member::Matched => break true,
                    Member::Fail => return Bracket::Fail,
                    Member::Next(next) => c = next,
                }
            } else {
                p += 4;
                if fn_ == eq {
                    break true;
                }
                c = pat.at(p);
                p += 1;
            }
        } else if c == 0 {
            return Bracket::Unterminated;
        } else if c == b'[' && pat.at(p) == b'.' {
            // A collating symbol: in the C locale, one byte.
            let start = p;
            let mut q = p;
            let mut len = 0usize;
            loop {
                q += 1;
                let ch = pat.at(q);
                if ch == b'.' && pat.at(q + 1) == b']' {
                    q += 2;
                    break;
                }
                if ch == 0 {
                    return Bracket::Fail;
                }
                len += 1;
            }
            p = q;
            if len != 1 {
                return Bracket::Fail;
            }
            let symbol = pat.at(start + 1);
            // glibc's range test here does not exclude a following `]`.
            let is_range = pat.at(p) == b'-' && pat.at(p + 1) != 0;
            if !is_range && fn_ == symbol {
                break true;
            }
            cold = symbol;
            c = pat.at(p);
            p += 1;
            match range_tail(pat, &mut p, &mut c, cold, fn_) {
                Some(true) => break true,
                Some(false) => {}
                None => return Bracket::Fail,
            }
        } else {
            match member_or_range(pat, &mut p, c, fn_) {
                Member::Matched => break true,
                Member::Fail => return Bracket::Fail,
                Member::Next(next) => c = next,
            }
        }
        if c == b']' {
            break false;
        }
    };
    if matched {
        // The rest is skipped even when negated: an unterminated expression
        // turns the `[` back into an ordinary byte.
        match skip_rest(pat, p) {
            Skip::Closed(_) if negated => Bracket::Fail,
            Skip::Closed(after) => Bracket::Matched(after),
            Skip::Unterminated => Bracket::Unterminated,
            Skip::Fail => Bracket::Fail,
        }
    } else if negated {
        Bracket::Matched(p)
    } else {
        Bracket::Fail
    }
}

enum Member {
    Matched,
    Fail,
    /// Not matched; the next byte of the expression.
    Next(u8),
}

/// glibc's `normal_bracket`: `member` (already read) alone, or the start of
/// a range `member-end`.
fn member_or_range(pat: Pattern<'_>, p: &mut usize, member: u8, fn_: u8) -> Member {
    let is_range = pat.at(*p) == b'-' && pat.at(*p + 1) != 0 && pat.at(*p + 1) != b']';
    if !is_range && member == fn_ {
        return Member::Matched;
    }
    let mut c = pat.at(*p);
    *p += 1;
    match range_tail(pat, p, &mut c, member, fn_) {
        Some(true) => Member::Matched,
        Some(false) => Member::Next(c),
        None => Member::Fail,
    }
}

/// After a member `cold`, with `c` the byte that followed it: when `c` is
/// `-` not followed by `]`, reads the range's end and tests `fn_`.
/// `Some(true)` on a match, `Some(false)` with `c` advanced past the range
/// otherwise, `None` when the pattern is ill-formed.
fn range_tail(pat: Pattern<'_>, p: &mut usize, c: &mut u8, cold: u8, fn_: u8) -> Option<bool> {
    if *c != b'-' || pat.at(*p) == b']' {
        return Some(false);
    }
    let mut cend = pat.at(*p);
    *p += 1;
    if cend == b'[' && pat.at(*p) == b'.' {
        let start = *p;
        let mut len = 0usize;
        loop {
            *p += 1;
            let ch = pat.at(*p);
            if ch == b'.' && pat.at(*p + 1) == b']' {
                *p += 2;
                break;
            }
            if ch == 0 {
                return None;
            }
            len += 1;
        }
        if len != 1 {
            return None;
        }
        cend = pat.at(start + 1);
    } else {
        if cend == b'\\' {
            cend = pat.at(*p);
            *p += 1;
        }
        if cend == 0 {
            return None;
        }
    }
    if cold <= fn_ && fn_ <= cend {
        return Some(true);
    }
    *c = pat.at(*p);
    *p += 1;
    Some(false)
}

enum Skip {
    /// After the closing `]`.
    Closed(usize),
    Unterminated,
    Fail,
}

/// Skips what is left of a bracket expression after a member matched.
fn skip_rest(pat: Pattern<'_>, mut p: usize) -> Skip {
    loop {
        let c = pat.at(p);
        p += 1;
        match c {
            b']' => return Skip::Closed(p),
            0 => return Skip::Unterminated,
            b'\\' => {
                if pat.at(p) == 0 {
                    return Skip::Fail;
                }
                p += 1;
            }
            b'[' if pat.at(p) == b':' => {
                let start = p;
                let mut count = 0usize;
                loop {
                    p += 1;
                    let ch = pat.at(p);
                    count += 1;
                    if count == CHAR_CLASS_MAX_LENGTH {
                        return Skip::Fail;
                    }
                    if ch == b':' && pat.at(p + 1) == b']' {
                        break;
                    }
                    if !(b'a'..=b'y').contains(&ch) {
                        p = start - 2;
                        break;
                    }
                }
                p += 2;
            }
            b'[' if pat.at(p) == b'=' => {
                p += 1;
                if pat.at(p) == 0 {
                    return Skip::Fail;
                }
                p += 1;
                if pat.at(p) != b'=' || pat.at(p + 1) != b']' {
                    return Skip::Fail;
                }
                p += 2;
            }
            b'[' if pat.at(p) == b'.' => {
                loop {
                    p += 1;
                    let ch = pat.at(p);
                    if ch == 0 {
                        return Skip::Fail;
                    }
                    if ch == b'.' && pat.at(p + 1) == b']' {
                        break;
                    }
                }
                p += 2;
            }
            _ => {}
        }
    }
}

/// The C locale's character classes.
fn char_class(name: &[u8]) -> Option<fn(u8) -> bool> {
    Some(match name {
        b"alnum" => |b: u8| b.is_ascii_alphanumeric(),
        b"alpha" => |b: u8| b.is_ascii_alphabetic(),
        b"blank" => |b: u8| b == b' ' || b == b'\t',
        b"cntrl" => |b: u8| b.is_ascii_control(),
        b"digit" => |b: u8| b.is_ascii_digit(),
        b"graph" => |b: u8| b.is_ascii_graphic(),
        b"lower" => |b: u8| b.is_ascii_lowercase(),
        b"print" => |b: u8| b.is_ascii_graphic() || b == b' ',
        b"punct" => |b: u8| b.is_ascii_punctuation(),
        b"space" => |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => |b: u8| b.is_ascii_uppercase(),
        b"xdigit" => |b: u8| b.is_ascii_hexdigit(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn basics() {
        assert!(fnmatch(b"pci:v*d*sv*", b"pci:v8086d10sv1"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(!fnmatch(b"a?c", b"ac"));
        assert!(fnmatch(b"x[0-9]y", b"x5y"));
        assert!(!fnmatch(b"x[!0-9]y", b"x5y"));
        assert!(fnmatch(b"x[^0-9]y", b"xay"));
        assert!(fnmatch(b"a[bc", b"a[bc"));
        assert!(fnmatch(b"*", b""));
        assert!(fnmatch(b"\\*", b"*"));
        assert!(!fnmatch(b"a\\", b"a\\"));
        assert!(fnmatch(b"[[:digit:]]x", b"7x"));
        assert!(!fnmatch(b"[[:nope:]]", b"a"));
        assert!(fnmatch(b"[]]", b"]"));
    }

    /// Differential test against the C library this binary links with
    /// (glibc on the supported systems), in the C locale, on patterns built
    /// from the bytes that matter.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn agrees_with_glibc() {
        use std::ffi::CString;
        extern "C" {
            fn fnmatch(
                pattern: *const std::ffi::c_char,
                string: *const std::ffi::c_char,
                flags: i32,
            ) -> i32;
        }
        let glibc = |p: &[u8], s: &[u8]| {
            let (p, s) = (CString::new(p).unwrap(), CString::new(s).unwrap());
            // SAFETY: both are valid NUL-terminated strings.
            unsafe { fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
        };
        const PATTERN_BYTES: &[u8] = b"ab-*?[]!^\\:=.xz09A[]-\xc3";
        const STRING_BYTES: &[u8] = b"ab-*?[]!^\\:=.xz09A\xc3";
        let mut next = crate::util::xorshift(0x2545_F491_4F6C_DD1Du64);
        let mut cases = 0;
        for _ in 0..200_000 {
            let plen = (next() % 9) as usize;
            let slen = (next() % 6) as usize;
            let mut p: Vec<u8> = (0..plen)
                .map(|_| PATTERN_BYTES[(next() % PATTERN_BYTES.len() as u64) as usize])
                .collect();
            if next() % 8 == 0 {
                let class: &[u8] = [
                    b"[:alpha:]".as_slice(),
                    b"[:digit:]",
                    b"[=a=]",
                    b"[.b.]",
                    b"[:bogus:]",
                ][(next() % 5) as usize];
                let at = (next() as usize) % (p.len() + 1);
                p.splice(at..at, class.iter().copied());
            }
            let s: Vec<u8> = (0..slen)
                .map(|_| STRING_BYTES[(next() % STRING_BYTES.len() as u64) as usize])
                .collect();
            assert_eq!(
                super::fnmatch(&p, &s),
                glibc(&p, &s),
                "pattern {:?} string {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&s)
            );
            cases += 1;
        }
        assert_eq!(cases, 200_000);
    }
}
