//! `kmodidx build`: index a module tree hermetically.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use kmodidx::depmod::config::Config;
use kmodidx::depmod::discover::ModuleDir;
use kmodidx::depmod::{self, Compat, Level, Request, SymbolOptions};
use kmodidx::output;
use kmodidx::source::{join, DirTree, EntryKind, Tree};

/// Module directories kmodidx recognises, relative to the tree root.
const MODULE_DIRS: [&str; 2] = ["lib/modules", "usr/lib/modules"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// kmod 34 (the default): parent-first index tries.
    Kmod34,
    /// kmod 33: children-first tries; last duplicate in modules.order wins.
    Kmod33,
    /// kmod 30 (Debian 12): as kmod33, and no modules.weakdep.
    Kmod30,
}

impl From<CompatArg> for Compat {
    fn from(c: CompatArg) -> Self {
        match c {
            CompatArg::Kmod34 => Compat::Kmod34,
            CompatArg::Kmod33 => Compat::Kmod33,
            CompatArg::Kmod30 => Compat::Kmod30,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Root of the filesystem tree that holds <module-dir>/<version>/.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,

    /// Directory to write <module-dir>/<version>/modules.* into.
    #[arg(long, value_name = "OUTDIR")]
    pub out: PathBuf,

    /// Kernel version to index (needed when the tree holds several).
    #[arg(long, value_name = "V")]
    pub kernel_version: Option<String>,

    /// Module directory inside the tree [default: detected; lib/modules, or
    /// usr/lib/modules on merged-/usr trees].
    #[arg(long, value_name = "DIR")]
    pub module_dir: Option<String>,

    /// Which kmod release's output to reproduce byte for byte.
    #[arg(long, value_enum, default_value = "kmod34")]
    pub compat: CompatArg,

    /// Largest decompressed module to accept, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_module_size: u64,
}

/// Runs `build`; returns the process exit status.
pub fn run(args: &BuildArgs) -> Result<i32, String> {
    let tree = DirTree::new(&args.from);
    if tree.kind(b"") != Some(EntryKind::Dir) {
        return Err(format!("{}: not a directory", args.from.display()));
    }
    let (module_dir, version) = locate(&tree, args)?;
    let out_dir = args.out.join(&module_dir).join(&version);
    if same_place(&args.from.join(&module_dir).join(&version), &out_dir) {
        return Err(format!(
            "--out {} would write into the input tree; kmodidx build never modifies its input (use `kmodidx depmod` for in-place updates)",
            args.out.display()
        ));
    }

    let tree_path = join(&[module_dir.as_bytes(), version.as_bytes()]);
    let kmod_path = [b"/", tree_path.as_slice()].concat();
    let no_externals = |_: &[u8]| None;
    let request = Request {
        tree: &tree,
        module_dir: ModuleDir {
            tree_path,
            kmod_path,
        },
        config: Config::default().with_defaults(),
        compat: args.compat.into(),
        symbols: SymbolOptions::default(),
        kernel_symbols: None,
        warn_duplicates: false,
        decompress_limit: args.max_module_size.saturating_mul(1 << 20),
        external_in_tree: &no_externals,
        explicit_modules: None,
        text_only: false,
    };
    let outcome = match depmod::run(&request) {
        Ok(outcome) => outcome,
        Err(e) => {
            super::print_diagnostics(e.diagnostics(), Level::Warning);
            return Err(format!("{e}; nothing was written"));
        }
    };
    super::print_diagnostics(&outcome.diagnostics, Level::Warning);
    output::dir::write_files(&out_dir, &outcome.files).map_err(|e| e.to_string())?;
    Ok(0)
}

fn same_place(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Finds the module directory and kernel version to index.
fn locate(tree: &dyn Tree, args: &BuildArgs) -> Result<(String, String), String> {
    let module_dirs: Vec<String> = match &args.module_dir {
        Some(dir) => vec![dir.trim_matches('/').to_string()],
        None => MODULE_DIRS
            .iter()
            .filter(|d| !(**d == "lib/modules" && lib_is_usr_lib(tree)))
            .map(|d| d.to_string())
            .collect(),
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
    for dir in &module_dirs {
        let Ok(entries) = tree.read_dir(dir.as_bytes()) else {
            continue;
        };
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            let version = String::from_utf8_lossy(&entry.name).into_owned();
            if args.kernel_version.as_ref().is_none_or(|v| *v == version) {
                candidates.push((dir.clone(), version));
            }
        }
    }
    let root = args.from.display();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(match &args.kernel_version {
            Some(v) => format!(
                "{root}: no {} directory for kernel version {v}",
                module_dirs.iter().map(|d| format!("{d}/{v}")).collect::<Vec<_>>().join(" or ")
            ),
            None => format!(
                "{root}: no kernel module directory found (looked for {})",
                module_dirs.iter().map(|d| format!("{d}/<version>")).collect::<Vec<_>>().join(" and ")
            ),
        }),
        _ => Err(format!(
            "{root}: several kernels found; pick one with --kernel-version (and --module-dir if needed):\n{}",
            candidates
                .iter()
                .map(|(d, v)| format!("  {d}/{v}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

/// On a merged-/usr tree, `lib` is a symlink to `usr/lib`, and modules
/// belong under `usr/lib/modules`.
fn lib_is_usr_lib(tree: &dyn Tree) -> bool {
    tree.link_target(b"lib").is_some_and(|t| {
        matches!(
            t.as_slice(),
            b"usr/lib" | b"/usr/lib" | b"usr/lib/" | b"/usr/lib/" | b"./usr/lib"
        )
    })
}
