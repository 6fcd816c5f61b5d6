//! `kmodidx depmod` (also answering as `depmod` through argv[0]): a drop-in
//! for kmod 34.2's depmod, with its options, defaults, messages and exit
//! statuses. It reads the host's depmod.d and `uname -r` as depmod does.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use kmodidx::build::Limits;
use kmodidx::depmod::config::{self, ConfigLocation};
use kmodidx::depmod::discover::{walk_modules, Found, ModuleDir, Walked};
use kmodidx::depmod::kernel_symbols::{self, SymbolFileKind};
use kmodidx::depmod::{self, Compat, Request, SymbolOptions};
use kmodidx::diag::{lossy, Diagnostic, Kind};
use kmodidx::layout::{modname, CONFIG_DIRS, DEFAULT_MODULE_DIR, PATH_MAX};
use kmodidx::module::ModuleReader;
use kmodidx::output;
use kmodidx::source::dir::read_host_file;
use kmodidx::source::DirTree;
use kmodidx::util::{io_reason, scan_unsigned};

use super::getopt::{self, OptSpec};
use super::{eprint_line, print_depmod, stdout};

/// kmod 34.2's options, in its table order (which getopt's ambiguity
/// messages follow).
pub(crate) const OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: 'a',
        long: "all",
        takes_value: false,
    },
    OptSpec {
        short: 'A',
        long: "quick",
        takes_value: false,
    },
    OptSpec {
        short: 'b',
        long: "basedir",
        takes_value: true,
    },
    OptSpec {
        short: 'm',
        long: "moduledir",
        takes_value: true,
    },
    OptSpec {
        short: 'o',
        long: "outdir",
        takes_value: true,
    },
    OptSpec {
        short: 'C',
        long: "config",
        takes_value: true,
    },
    OptSpec {
        short: 'E',
        long: "symvers",
        takes_value: true,
    },
    OptSpec {
        short: 'F',
        long: "filesyms",
        takes_value: true,
    },
    OptSpec {
        short: 'e',
        long: "errsyms",
        takes_value: false,
    },
    OptSpec {
        short: 'v',
        long: "verbose",
        takes_value: false,
    },
    OptSpec {
        short: 'n',
        long: "show",
        takes_value: false,
    },
    OptSpec {
        short: 'n',
        long: "dry-run",
        takes_value: false,
    },
    OptSpec {
        short: 'P',
        long: "symbol-prefix",
        takes_value: true,
    },
    OptSpec {
        short: 'w',
        long: "warn",
        takes_value: false,
    },
    OptSpec {
        short: 'V',
        long: "version",
        takes_value: false,
    },
    OptSpec {
        short: 'h',
        long: "help",
        takes_value: false,
    },
];

/// The limit on every file read (modules as stored and decompressed,
/// `modules.order`, configuration, `-E`/`-F` files): `KMODIDX_MAX_FILE_SIZE`
/// MiB, else build's default. kmod has none; without one, a hostile module
/// or `-F /dev/zero` could take all memory.
fn file_limit() -> u64 {
    std::env::var("KMODIDX_MAX_FILE_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Limits::default().max_module_size, |mib| {
            mib.saturating_mul(1 << 20)
        })
}

/// Settings gathered from the command line.
struct Settings {
    all: bool,
    quick: bool,
    root: Vec<u8>,
    module_directory: Vec<u8>,
    out_root: Option<Vec<u8>>,
    config_paths: Vec<Vec<u8>>,
    symbol_file: Option<(SymbolFileKind, Vec<u8>)>,
    print_unknown: bool,
    verbose: u32,
    show: bool,
    prefix: u8,
    warn_duplicates: bool,
}

/// Prints messages. When standard output fails while `-v` lines are
/// printed, the run stops before writing any index, with status 1: kmod
/// does not survive this either (a closed pipe kills it with SIGPIPE before
/// it writes the index, since its progress lines come first). A closed
/// pipe ends quietly; another failure also says why.
fn print(diags: &[Diagnostic], verbose: u32) -> Result<(), i32> {
    print_depmod(diags, verbose).map_err(|e| e.status("depmod", 1, 1))
}

fn fail(diag: Diagnostic, verbose: u32) -> i32 {
    let _ = print(&[diag], verbose);
    1
}

/// A hint for people, printed after kmod's own message on its own line so
/// that kmod's output stays line-for-line identical.
fn hint(text: &str) {
    eprint_line(&format!("kmodidx: hint: {text}"));
}

/// Prints `text` on stdout, as depmod's `printf` would. A closed pipe
/// keeps `status` (the reader had what it wanted); any other failure is
/// reported and ends with depmod's failure status, 1, where kmod would
/// lose the text silently and exit 0.
fn out(text: &[u8], status: i32) -> i32 {
    match stdout(text) {
        Ok(()) => status,
        Err(e) => e.status("depmod", status, 1),
    }
}

/// `path_make_absolute_cwd`: absolute paths as given, others below the
/// current directory (without normalising `.` or `..`).
fn absolute(path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return path.to_vec();
    }
    let cwd = std::env::current_dir()
        .map(|p| p.into_os_string().into_vec())
        .unwrap_or_default();
    [cwd.as_slice(), b"/", path].concat()
}

/// `sscanf(version, "%u.%u") == 2`.
fn is_version_number(version: &[u8]) -> bool {
    scan_unsigned(version)
        .and_then(|(_, rest)| rest.strip_prefix(b"."))
        .and_then(scan_unsigned)
        .is_some()
}

fn help(prog: &str) -> String {
    let default_dir = format!("/{DEFAULT_MODULE_DIR}");
    format!(
        "Usage:\n\t{prog} -[aA] [options] [forced_version]\n\n\
If no arguments (except options) are given, \"depmod -a\" is assumed\n\n\
depmod will output a dependency list suitable for the modprobe utility.\n\n\
Options:\n\
\t-a, --all            Probe all modules\n\
\t-A, --quick          Only does the work if there's a new module\n\
\t-e, --errsyms        Report not supplied symbols\n\
\t-n, --show           Write the dependency file on stdout only\n\
\t-P, --symbol-prefix  Architecture symbol prefix\n\
\t-C, --config=PATH    Read configuration from PATH\n\
\t-v, --verbose        Enable verbose mode\n\
\t-w, --warn           Warn on duplicates\n\
\t-V, --version        show version\n\
\t-h, --help           show this help\n\n\
The following options are useful for people managing distributions:\n\
\t-b, --basedir=DIR    Root path (default: /).\n\
\t-m, --moduledir=DIR  Module directory (default: {default_dir}).\n\
\t-o, --outdir=DIR     Output root path (default: same as <basedir>).\n\
\t-F, --filesyms=FILE  Use the file instead of the\n\
\t                     current kernel symbols.\n\
\t-E, --symvers=FILE   Use Module.symvers file to check\n\
\t                     symbol versions.\n"
    )
}

/// Runs the drop-in; returns the exit status.
pub fn run(prog: &str, args: &[OsString]) -> i32 {
    let parsed = getopt::parse(prog, args, OPTIONS);
    let mut s = Settings {
        all: false,
        quick: false,
        root: Vec::new(),
        module_directory: format!("/{DEFAULT_MODULE_DIR}").into_bytes(),
        out_root: None,
        config_paths: Vec::new(),
        symbol_file: None,
        print_unknown: false,
        verbose: 0,
        show: false,
        prefix: 0,
        warn_duplicates: false,
    };
    for opt in &parsed.opts {
        let opt = match opt {
            Ok(opt) => opt,
            Err(message) => {
                eprint_line(message);
                return 1;
            }
        };
        let value = || {
            opt.value
                .as_ref()
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default()
        };
        match opt.short {
            'a' => s.all = true,
            'A' => s.quick = true,
            'b' => s.root = absolute(&value()),
            'm' => s.module_directory = value(),
            'o' => s.out_root = Some(absolute(&value())),
            'C' => s.config_paths.push(value()),
            // -E wins over -F, whatever their order.
            'E' => s.symbol_file = Some((SymbolFileKind::Symvers, value())),
            'F' => {
                if !matches!(s.symbol_file, Some((SymbolFileKind::Symvers, _))) {
                    s.symbol_file = Some((SymbolFileKind::SystemMap, value()));
                }
            }
            'e' => s.print_unknown = true,
            'v' => s.verbose += 1,
            'n' => s.show = true,
            'P' => {
                let v = value();
                if v.len() != 1 {
                    return fail(Diagnostic::critical(Kind::PrefixNotSingleChar), s.verbose);
                }
                s.prefix = v[0];
            }
            'w' => s.warn_duplicates = true,
            'h' => {
                return out(help(prog.rsplit('/').next().unwrap_or(prog)).as_bytes(), 0);
            }
            'V' => {
                let version = format!(
                    "kmod version 34.2 (kmodidx {})\n+ZSTD +XZ +ZLIB\n",
                    env!("CARGO_PKG_VERSION")
                );
                return out(version.as_bytes(), 0);
            }
            _ => unreachable!("getopt only returns listed options"),
        }
    }
    let compat = std::env::var("KMODIDX_COMPAT")
        .ok()
        .and_then(|name| Compat::from_name(&name))
        .unwrap_or_default();
    run_with(s, parsed.operands, compat)
}

fn run_with(mut s: Settings, operands: Vec<OsString>, compat: Compat) -> i32 {
    let verbose = s.verbose;
    let mut operands = operands.into_iter().map(OsString::into_vec);
    let version = match operands.next() {
        Some(v) if is_version_number(&v) => v,
        Some(v) => {
            if let Err(status) = print(
                &[Diagnostic::error(Kind::BadVersion { version: lossy(&v) })],
                verbose,
            ) {
                return status;
            }
            if v.contains(&b'/') || v.ends_with(b".ko") || v.windows(4).any(|w| w == b".ko.") {
                hint("a module path was given where the kernel version was expected; put the version first: depmod [options] VERSION [MODULE...]");
            } else {
                hint("the kernel version must start with two numbers, as in 6.1.0-13-amd64");
            }
            return 1;
        }
        None => match fs::read("/proc/sys/kernel/osrelease") {
            Ok(release) => release.strip_suffix(b"\n").unwrap_or(&release).to_vec(),
            Err(e) => {
                return fail(
                    Diagnostic::critical(Kind::UnameFailed {
                        reason: io_reason(&e),
                    }),
                    verbose,
                )
            }
        },
    };
    let files: Vec<Vec<u8>> = operands.collect();

    while s.module_directory.first() == Some(&b'/') {
        s.module_directory.remove(0);
    }
    let join3 = |root: &[u8]| [root, b"/", &s.module_directory, b"/", &version].concat();
    let dirname = join3(&s.root);
    let outdirname = join3(s.out_root.as_deref().unwrap_or(&s.root));
    for (dir, root) in [
        (&dirname, &s.root),
        (&outdirname, s.out_root.as_ref().unwrap_or(&s.root)),
    ] {
        if dir.len() >= PATH_MAX {
            return fail(
                Diagnostic::error(Kind::DirectoryTooLong {
                    path: format!(
                        "{}/{}/{}",
                        lossy(root),
                        lossy(&s.module_directory),
                        lossy(&version)
                    ),
                }),
                verbose,
            );
        }
    }
    if files.is_empty() {
        s.all = true;
    }
    if s.quick {
        if s.show {
            return 0;
        }
        let mut diags = Vec::new();
        let fresh = index_up_to_date(&dirname, &mut diags);
        if let Err(status) = print(&diags, verbose) {
            return status;
        }
        if fresh {
            return 0;
        }
        s.all = true;
    }

    let mut diags = Vec::new();
    let kernel_symbols = match load_kernel_symbols(&s, &mut diags) {
        Ok(symbols) => symbols,
        Err(diag) => {
            let _ = print(&diags, verbose);
            return fail(diag, verbose);
        }
    };
    if kernel_symbols.is_none() && s.print_unknown {
        diags.push(Diagnostic::warning(Kind::ErrsymsNeedSymbols));
        s.print_unknown = false;
    }

    // depmod writes no manifest, so modules need not be hashed: they are
    // read piecemeal, only their tables.
    let limit = file_limit();
    let host = DirTree::new("/").max_file_size(limit);
    let modules = ModuleReader::dir(&host, limit);
    let in_host = |path: &[u8]| absolute(path).get(1..).map(<[u8]>::to_vec);
    let (config, explicit) = if s.all {
        let paths: Vec<Vec<u8>> = if s.config_paths.is_empty() {
            CONFIG_DIRS
                .iter()
                .map(|d| format!("/{d}").into_bytes())
                .collect()
        } else {
            s.config_paths.clone()
        };
        let locations: Vec<ConfigLocation<'_>> = paths
            .iter()
            .map(|p| ConfigLocation {
                tree: &host,
                path: in_host(p).unwrap_or_default(),
                display: lossy(p),
            })
            .collect();
        match config::load(&locations, &version, &mut diags) {
            Ok(config) => (config, None),
            Err(e) => {
                let _ = print(&diags, verbose);
                eprint_line(&format!("kmodidx: error: {e}"));
                return 1;
            }
        }
    } else {
        match explicit_modules(&files, &dirname, &mut diags) {
            Ok(found) => (config::Config::default().with_defaults(), Some(found)),
            Err(diag) => {
                let _ = print(&diags, verbose);
                return fail(diag, verbose);
            }
        }
    };

    // Messages so far (symbol files, configuration) come before the run's.
    if let Err(status) = print(&diags, verbose) {
        return status;
    }
    let external_in_tree = |p: &[u8]| in_host(p);
    let request = Request {
        tree: &host,
        modules: &modules,
        module_dir: ModuleDir {
            tree_path: dirname.get(1..).map(<[u8]>::to_vec).unwrap_or_default(),
            kmod_path: dirname.clone(),
        },
        config,
        compat,
        symbols: SymbolOptions {
            prefix: s.prefix,
            check_crcs: matches!(s.symbol_file, Some((SymbolFileKind::Symvers, _))),
            report: s.print_unknown,
            needs: s.verbose > 0,
        },
        kernel_symbols,
        warn_duplicates: s.warn_duplicates,
        external_in_tree: &external_in_tree,
        explicit_modules: explicit,
        text_only: s.show,
    };
    let outcome = match depmod::run(&request) {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Err(status) = print(e.diagnostics(), verbose) {
                return status;
            }
            let last = match &e {
                depmod::DepmodError::ModuleDir(diag, _) => {
                    let reason = match &diag.kind {
                        Kind::DirUnreadable { reason, .. } => reason.clone(),
                        _ => String::new(),
                    };
                    vec![
                        diag.clone(),
                        Diagnostic::critical(Kind::SearchFailed { reason }),
                    ]
                }
                depmod::DepmodError::TooManyModules { .. } => {
                    vec![Diagnostic::critical(Kind::TooManyModules)]
                }
                depmod::DepmodError::Cycle { .. } => Vec::new(),
                depmod::DepmodError::Index { .. } | depmod::DepmodError::Refused { .. } => {
                    eprint_line(&format!("kmodidx: error: {e}"));
                    Vec::new()
                }
            };
            return print(&last, verbose).map_or_else(|status| status, |()| 1);
        }
    };
    if let Err(status) = print(&outcome.diagnostics, verbose) {
        return status;
    }

    if s.show {
        let text: Vec<u8> = outcome
            .files
            .iter()
            .flat_map(|f| f.bytes.iter().copied())
            .collect();
        return out(&text, 0);
    }
    let out_dir = Path::new(std::ffi::OsStr::from_bytes(&outdirname));
    match output::dir::write_files(out_dir, &outcome.files) {
        Ok(()) => 0,
        Err(e) => fail(
            Diagnostic::critical(Kind::OutputFailed {
                error: e.to_string(),
            }),
            verbose,
        ),
    }
}

/// `-E` or `-F`: the kernel's symbols, or `None` when neither was given.
fn load_kernel_symbols(
    s: &Settings,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<Vec<depmod::KernelSymbol>>, Diagnostic> {
    let Some((kind, path)) = &s.symbol_file else {
        return Ok(None);
    };
    let name = lossy(path);
    let text = read_host_file(Path::new(std::ffi::OsStr::from_bytes(path)), file_limit()).map_err(
        |e| {
            Diagnostic::critical(Kind::SymbolFileUnreadable {
                path: name.clone(),
                reason: io_reason(&e),
            })
        },
    )?;
    Ok(Some(kernel_symbols::parse(
        *kind, &text, &name, s.prefix, diags,
    )))
}

/// depmod's `FILES...` mode: each file must be an absolute path to an
/// existing module, and each module name may appear once.
fn explicit_modules(
    files: &[Vec<u8>],
    dirname: &[u8],
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<Found>, Diagnostic> {
    let mut found: Vec<Found> = Vec::new();
    for path in files {
        let shown = lossy(path);
        if path.first() != Some(&b'/') {
            hint("module files must be given as absolute paths, after the kernel version");
            return Err(Diagnostic::critical(Kind::NotAbsolute { path: shown }));
        }
        if let Err(e) = fs::metadata(std::ffi::OsStr::from_bytes(path)) {
            return Err(Diagnostic::critical(Kind::ModuleOperand {
                path: shown,
                reason: io_reason(&e),
            }));
        }
        let file_name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        let name = modname(file_name);
        if let Some(existing) = found.iter().find(|f| f.name == name) {
            if existing.kmod_path == *path {
                diags.push(Diagnostic::error(Kind::OperandRepeated {
                    name: lossy(&name),
                }));
                return Err(Diagnostic::critical(Kind::OperandNotAdded { path: shown }));
            }
            diags.push(Diagnostic::error(Kind::ModuleNameTaken {
                name: lossy(&name),
                new_path: shown.clone(),
                old_path: lossy(&existing.kmod_path),
            }));
            return Err(Diagnostic::critical(Kind::ModuleOperand {
                path: shown,
                reason: "File exists".into(),
            }));
        }
        let relpath = (path.starts_with(dirname) && path.get(dirname.len()) == Some(&b'/'))
            .then(|| path[dirname.len() + 1..].to_vec());
        found.push(Found {
            name,
            kmod_path: path.clone(),
            relpath,
            tree_path: path[1..].to_vec(),
        });
    }
    Ok(found)
}

/// `-A`: true when no module under `dirname` is newer than its modules.dep.
/// Problems are reported and mean "not up to date", as with kmod.
fn index_up_to_date(dirname: &[u8], diags: &mut Vec<Diagnostic>) -> bool {
    let dir = Path::new(std::ffi::OsStr::from_bytes(dirname));
    let shown = lossy(dirname);
    if let Err(e) = fs::read_dir(dir) {
        diags.push(Diagnostic::error(Kind::DirUnreadable {
            path: shown,
            reason: io_reason(&e),
        }));
        return false;
    }
    let dep_mtime = match fs::metadata(dir.join("modules.dep")).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::error(Kind::IndexNotFound {
                dir: shown,
                reason: io_reason(&e),
            }));
            return false;
        }
    };
    let host = DirTree::new("/");
    let tree_dir = dirname.strip_prefix(b"/").unwrap_or(dirname);
    // The walk ends (returns false) at the first newer module.
    walk_modules(
        &host,
        tree_dir,
        dirname,
        &|_| false,
        &mut |walked| match walked {
            Walked::Module { tree_path, .. } => !host
                .host_path(&tree_path)
                .and_then(fs::metadata)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > dep_mtime),
            _ => true,
        },
    )
}
