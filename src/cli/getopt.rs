//! GNU `getopt_long` semantics for the depmod drop-in.
//!
//! Build systems call depmod with every spelling getopt accepts: clustered
//! short options (`-ae`), attached arguments (`-bDIR`, `--basedir=DIR`),
//! unambiguous long-option prefixes (`--base DIR`), options after operands
//! and `--`. clap cannot reproduce all of these nor getopt's exact error
//! messages, which scripts match on, so the drop-in parses by these rules.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// An option definition: short letter, long name, whether it takes a value.
pub struct OptSpec {
    pub short: char,
    pub long: &'static str,
    pub takes_value: bool,
}

/// One parsed option occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub short: char,
    pub value: Option<OsString>,
}

/// Parsed command line: options in order (an `Err` holds getopt's message
/// for a bad one, so that options before it still take effect first, as
/// in getopt's loop), then operands in order.
#[derive(Debug, Default)]
pub struct Parsed {
    pub opts: Vec<Result<Opt, String>>,
    pub operands: Vec<OsString>,
}

/// Parses `args` (without the program name).
pub fn parse(prog: &str, args: &[OsString], specs: &[OptSpec]) -> Parsed {
    let mut parsed = Parsed::default();
    if let Err(message) = parse_into(prog, args, specs, &mut parsed) {
        parsed.opts.push(Err(message));
    }
    parsed
}

fn parse_into(
    prog: &str,
    args: &[OsString],
    specs: &[OptSpec],
    parsed: &mut Parsed,
) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            parsed.operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, inline) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let spec = find_long(prog, name, body, specs)?;
            let value = match (spec.takes_value, inline) {
                (true, Some(v)) => Some(OsStr::from_bytes(v).to_os_string()),
                (true, None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => {
                        return Err(format!(
                            "{prog}: option '--{}' requires an argument",
                            spec.long
                        ))
                    }
                },
                (false, Some(_)) => {
                    return Err(format!(
                        "{prog}: option '--{}' doesn't allow an argument",
                        spec.long
                    ))
                }
                (false, None) => None,
            };
            parsed.opts.push(Ok(Opt {
                short: spec.short,
                value,
            }));
            continue;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            parsed.operands.push(args[i - 1].clone());
            continue;
        }
        // A cluster of short options, the last of which may take a value.
        let mut j = 1;
        while j < arg.len() {
            let c = char::from(arg[j]);
            j += 1;
            let Some(spec) = specs.iter().find(|s| s.short == c && arg[j - 1].is_ascii()) else {
                return Err(format!(
                    "{prog}: invalid option -- '{}'",
                    char::from(arg[j - 1])
                ));
            };
            if !spec.takes_value {
                parsed.opts.push(Ok(Opt {
                    short: c,
                    value: None,
                }));
                continue;
            }
            let value = if j < arg.len() {
                OsStr::from_bytes(&arg[j..]).to_os_string()
            } else if let Some(next) = args.get(i) {
                i += 1;
                next.clone()
            } else {
                return Err(format!("{prog}: option requires an argument -- '{c}'"));
            };
            parsed.opts.push(Ok(Opt {
                short: c,
                value: Some(value),
            }));
            break;
        }
    }
    Ok(())
}

/// Exact match first, then a unique prefix; aliases of one option (same
/// letter) do not make a prefix ambiguous.
fn find_long<'s>(
    prog: &str,
    name: &[u8],
    whole: &[u8],
    specs: &'s [OptSpec],
) -> Result<&'s OptSpec, String> {
    if let Some(exact) = specs.iter().find(|s| s.long.as_bytes() == name) {
        return Ok(exact);
    }
    let matches: Vec<&OptSpec> = specs
        .iter()
        .filter(|s| s.long.as_bytes().starts_with(name))
        .collect();
    match matches.first() {
        None => Err(format!(
            "{prog}: unrecognized option '--{}'",
            String::from_utf8_lossy(whole)
        )),
        Some(first)
            if matches
                .iter()
                .all(|m| m.short == first.short && m.takes_value == first.takes_value) =>
        {
            Ok(first)
        }
        Some(_) => {
            let list: String = matches.iter().map(|m| format!(" '--{}'", m.long)).collect();
            Err(format!(
                "{prog}: option '--{}' is ambiguous; possibilities:{list}",
                String::from_utf8_lossy(name)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // depmod's own table: the ambiguity message follows its order.
    const SPECS: &[OptSpec] = crate::cli::depmod::OPTIONS;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn clusters_values_and_permutation() {
        let p = parse(
            "depmod",
            &args(&[
                "-abROOT",
                "6.1",
                "--base=/x",
                "--sh",
                "-b",
                "/y",
                "--",
                "-a",
            ]),
            SPECS,
        );
        let opts: Vec<Opt> = p.opts.into_iter().map(Result::unwrap).collect();
        let shorts: Vec<char> = opts.iter().map(|o| o.short).collect();
        assert_eq!(shorts, ['a', 'b', 'b', 'n', 'b']);
        assert_eq!(opts[1].value.as_deref(), Some(OsStr::new("ROOT")));
        assert_eq!(opts[2].value.as_deref(), Some(OsStr::new("/x")));
        assert_eq!(p.operands, args(&["6.1", "-a"]));
    }

    fn error(v: &[&str]) -> String {
        parse("depmod", &args(v), SPECS)
            .opts
            .into_iter()
            .find_map(Result::err)
            .unwrap()
    }

    #[test]
    fn getopt_messages() {
        assert_eq!(error(&["-x"]), "depmod: invalid option -- 'x'");
        assert_eq!(error(&["-b"]), "depmod: option requires an argument -- 'b'");
        assert_eq!(
            error(&["--nope=1"]),
            "depmod: unrecognized option '--nope=1'"
        );
        assert_eq!(
            error(&["--s"]),
            "depmod: option '--s' is ambiguous; possibilities: '--symvers' '--show' '--symbol-prefix'"
        );
        assert_eq!(
            error(&["--all=1"]),
            "depmod: option '--all' doesn't allow an argument"
        );
    }
}
