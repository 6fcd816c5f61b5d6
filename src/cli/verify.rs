//! `kmodidx verify`: check an output against its manifest, or against a
//! fresh build from the input.

use std::path::PathBuf;

use clap::Args;

use kmodidx::build::{self, Options};
use kmodidx::output::manifest::MANIFEST_NAME;
use kmodidx::output::verify::{self, Problem};

use super::build::LimitArgs;
use super::{eprint_line, stdout, EXIT_FAILED, EXIT_OK, EXIT_PROBLEMS};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The output to check: a directory or an archive written by `build`.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Rebuild from this input (with the options the manifest records) and
    /// compare the output with the result.
    #[arg(long, value_name = "DIR|ARCHIVE")]
    pub from: Option<PathBuf>,

    /// The manifest, when it was written outside the output.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What the check found.
struct Checked {
    problems: Vec<Problem>,
    /// The line printed when nothing differs.
    summary: String,
}

/// Runs `verify`: 0 when all matches, 1 when something differs, 2 when the
/// check itself could not be made.
pub fn run(args: &VerifyArgs) -> u8 {
    let checked = match check(args) {
        Ok(checked) => checked,
        Err(message) => {
            eprint_line(&format!("kmodidx: error: {message}"));
            return EXIT_FAILED;
        }
    };
    if checked.problems.is_empty() {
        return match stdout(format!("{}\n", checked.summary).as_bytes()) {
            Ok(()) => EXIT_OK,
            Err(e) => e.status("kmodidx", EXIT_OK, EXIT_FAILED),
        };
    }
    let listing: String = checked
        .problems
        .iter()
        .map(|p| format!("{}: {}\n", p.path, p.what))
        .collect();
    if let Err(e) = stdout(listing.as_bytes()) {
        return e.status("kmodidx", EXIT_PROBLEMS, EXIT_FAILED);
    }
    eprint_line(&format!(
        "kmodidx: verify: {}: {} difference(s)",
        args.out.display(),
        checked.problems.len()
    ));
    EXIT_PROBLEMS
}

fn check(args: &VerifyArgs) -> Result<Checked, String> {
    let limits = args.limits.limits();
    let scan = verify::scan(&args.out, limits.max_input_size).map_err(|e| e.to_string())?;
    let recorded = verify::load_manifest(&args.out, &scan, args.manifest.as_deref())
        .map_err(|e| e.to_string())?;
    let Some(from) = &args.from else {
        return Ok(Checked {
            problems: verify::compare(&recorded, &scan),
            summary: format!(
                "{}: {} files match the manifest",
                args.out.display(),
                recorded.files.len()
            ),
        });
    };
    let opts =
        Options::from_manifest(&recorded, limits, &super::resolver()).map_err(|e| e.to_string())?;
    let mut rebuilt = build::build(from, &opts)
        .map_err(|e| e.to_string())?
        .manifest;
    // A schema-1 manifest records the same facts (its digest covered whole
    // files, as the rebuild's options say) in the older layout.
    rebuilt.schema = recorded.schema;
    let mut problems = verify::compare(&rebuilt, &scan);
    if rebuilt != recorded {
        let mut fields = Vec::new();
        if rebuilt.input != recorded.input {
            fields.push("input digest");
        }
        if rebuilt.files != recorded.files {
            fields.push("file list");
        }
        if rebuilt.tool != recorded.tool {
            fields.push("tool version");
        }
        if fields.is_empty() {
            fields.push("contents");
        }
        problems.push(Problem {
            path: args
                .manifest
                .as_ref()
                .map_or(MANIFEST_NAME.to_string(), |p| p.display().to_string()),
            what: format!("differs from the rebuilt manifest ({})", fields.join(", ")),
        });
    }
    Ok(Checked {
        problems,
        summary: format!(
            "{}: {} files match a fresh build from {}",
            args.out.display(),
            rebuilt.files.len(),
            from.display()
        ),
    })
}
