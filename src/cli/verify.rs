//! `kmodidx verify`: check an output against its manifest, or against a
//! fresh build from the input.

use std::path::PathBuf;

use clap::Args;

use kmodidx::output::manifest::MANIFEST_NAME;
use kmodidx::output::verify::{self, Problem};

use super::build::{produce, BuildOptions, CheckOptions};

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

    /// Largest decompressed module to accept when rebuilding, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_module_size: u64,

    /// Largest decompressed archive to read, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16384)]
    pub max_input_size: u64,
}

/// Runs `verify`: 0 when all matches, 1 when something differs, 2 when the
/// check itself could not be made.
pub fn run(args: &VerifyArgs) -> Result<i32, String> {
    match check(args) {
        Ok(problems) if problems.is_empty() => Ok(0),
        Ok(problems) => {
            for p in &problems {
                println!("{}: {}", p.path, p.what);
            }
            eprintln!(
                "kmodidx: verify: {}: {} difference(s)",
                args.out.display(),
                problems.len()
            );
            Ok(1)
        }
        Err(message) => {
            eprintln!("kmodidx: error: {message}");
            Ok(2)
        }
    }
}

fn check(args: &VerifyArgs) -> Result<Vec<Problem>, String> {
    let limit = args.max_input_size.saturating_mul(1 << 20);
    let scan = verify::scan(&args.out, limit).map_err(|e| e.to_string())?;
    let recorded = verify::load_manifest(&args.out, &scan, args.manifest.as_deref())
        .map_err(|e| e.to_string())?;
    let Some(from) = &args.from else {
        let problems = verify::compare(&recorded, &scan);
        if problems.is_empty() {
            println!(
                "{}: {} files match the manifest",
                args.out.display(),
                recorded.files.len()
            );
        }
        return Ok(problems);
    };
    let opts = BuildOptions::from_manifest(&recorded, args.max_module_size, args.max_input_size)?;
    let rebuilt = produce(from, &opts, &CheckOptions::default(), None, true)
        .map_err(|f| f.message)?
        .manifest;
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
    if problems.is_empty() {
        println!(
            "{}: {} files match a fresh build from {}",
            args.out.display(),
            rebuilt.files.len(),
            from.display()
        );
    }
    Ok(problems)
}
