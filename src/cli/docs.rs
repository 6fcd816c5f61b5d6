//! `kmodidx completions SHELL` and the hidden `kmodidx man`: shell
//! completion scripts (clap_complete) and man pages (clap_mangen), both
//! made from the same command-line definition the parser uses, so they
//! cannot drift from it. The man pages are also committed under `doc/`
//! (`kmodidx man --out-dir doc`); a test regenerates them and compares.

use std::path::PathBuf;

use clap::{Args, Command};
use clap_complete::Shell;

use kmodidx::output::write::write_bytes_atomically;

use super::{eprint_line, stdout, EXIT_FAILED, EXIT_OK};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The page to print: `kmodidx` (the default) or a subcommand's, named
    /// as its page is without `kmodidx-` (`build`, `query-deps`, ...).
    #[arg(value_name = "PAGE", conflicts_with = "out_dir")]
    pub page: Option<String>,

    /// Write every page (kmodidx.1, kmodidx-build.1, kmodidx-query-deps.1,
    /// ...) into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(cmd: Command, args: &CompletionsArgs) -> u8 {
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    // Into memory first: clap_complete panics on a failed write.
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    match stdout(&script) {
        Ok(()) => EXIT_OK,
        Err(e) => e.status("kmodidx", EXIT_OK, EXIT_FAILED),
    }
}

/// Prints one man page, or writes them all into a directory.
pub fn man(cmd: Command, args: &ManArgs) -> u8 {
    // The pages leave out clap's `help` subcommands (`kmodidx help build`
    // is `kmodidx build --help`, which the build page is). Building fills
    // in what the pages show, such as display names (`kmodidx-build`).
    let mut cmd = without_help_subcommands(cmd);
    cmd.build();
    if let Some(dir) = &args.out_dir {
        for (title, page) in pages(&cmd) {
            let target = dir.join(format!("{title}.1"));
            if let Err(e) = render(&page)
                .and_then(|roff| write_bytes_atomically(&target, &roff).map_err(|e| e.to_string()))
            {
                eprint_line(&format!("kmodidx: error: {e}"));
                return EXIT_FAILED;
            }
        }
        return EXIT_OK;
    }
    let all = pages(&cmd);
    let top = cmd.get_name();
    let title = match args.page.as_deref() {
        None => top.to_string(),
        Some(page) if page == top => page.to_string(),
        Some(page) => format!("{top}-{page}"),
    };
    let Some((_, page)) = all.iter().find(|(t, _)| *t == title) else {
        let names: Vec<&str> = all
            .iter()
            .map(|(t, _)| t.strip_prefix(&format!("{top}-")).unwrap_or(t))
            .collect();
        eprint_line(&format!(
            "kmodidx: error: no man page `{}`; there are: {}",
            args.page.as_deref().unwrap_or_default(),
            names.join(", ")
        ));
        return EXIT_FAILED;
    };
    match render(page) {
        Ok(roff) => match stdout(&roff) {
            Ok(()) => EXIT_OK,
            Err(e) => e.status("kmodidx", EXIT_OK, EXIT_FAILED),
        },
        Err(e) => {
            eprint_line(&format!("kmodidx: error: {e}"));
            EXIT_FAILED
        }
    }
}

fn without_help_subcommands(cmd: Command) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd.disable_help_subcommand(true), |cmd, name| {
            cmd.mut_subcommand(name, without_help_subcommands)
        })
}

/// Every page, by title (`kmodidx`, `kmodidx-build`, `kmodidx-query-deps`,
/// ...): kmodidx's own, then one for each subcommand a page lists, at every
/// level (the hidden `man` has none).
fn pages(cmd: &Command) -> Vec<(String, Command)> {
    fn add(cmd: &Command, title: String, pages: &mut Vec<(String, Command)>) {
        pages.push((title, cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let title = sub.get_display_name().unwrap_or(sub.get_name()).to_string();
            add(sub, title, pages);
        }
    }
    let mut pages = Vec::new();
    add(cmd, cmd.get_name().to_string(), &mut pages);
    pages
}

fn render(page: &Command) -> Result<Vec<u8>, String> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(page.clone())
        .render(&mut roff)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    Ok(roff)
}
