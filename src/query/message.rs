//! What modprobe prints on standard error while it answers, as data.

use std::fmt;

/// How serious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// modprobe's `FATAL`: it exits with status 1 after printing it.
    Fatal,
    /// An error modprobe (or libkmod) reports and continues after.
    Error,
}

/// One line modprobe would print on stderr. Its text is kmod 34.2's (see
/// [`Message::to_bytes`]); the fields are the facts behind it. Names and
/// paths are bytes, as in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A NAME that nothing matches: `modprobe: FATAL: Module NAME not found
    /// in directory DIR`.
    NotFound {
        /// The NAME asked for.
        name: Vec<u8>,
        /// The module directory, as `/lib/modules/VERSION`.
        dirname: Vec<u8>,
    },
    /// A NAME given as a path that is not a module file: `modprobe: FATAL:
    /// Failed to get module from path PATH: REASON`.
    BadPath {
        /// The path given.
        path: Vec<u8>,
        /// Why (`strerror`).
        reason: &'static str,
    },
    /// A configuration line libkmod does not understand: `libkmod: ERROR:
    /// kmod_config_parse: FILE line N: ignoring bad line starting with
    /// 'COMMAND'`.
    BadConfigLine {
        /// The configuration file.
        file: String,
        /// The number of the line's last physical line.
        line: u32,
        /// The line's first word.
        command: Vec<u8>,
    },
    /// `include` or `config` in a configuration file: `libkmod: ERROR:
    /// kmod_config_parse: FILE: command COMMAND is deprecated and not
    /// parsed anymore`.
    DeprecatedCommand {
        /// The configuration file.
        file: String,
        /// The command.
        command: Vec<u8>,
    },
    /// A kernel command line option whose module name is malformed:
    /// `libkmod: ERROR: kcmdline_parse_result: Ignoring bad option on
    /// kernel command line while parsing module name: 'NAME'`.
    BadCmdlineModule {
        /// The module name.
        name: Vec<u8>,
    },
    /// A dependency whose file is missing, which drops the depending
    /// module's whole dependency list: `modprobe: ERROR: ctx=(ctx)
    /// path=PATH error=REASON` (libkmod prints its context's address where
    /// kmodidx prints `(ctx)`).
    MissingDependencyFile {
        /// The dependency's path in the image.
        path: Vec<u8>,
        /// Why (`strerror`).
        reason: &'static str,
    },
    /// A dependency path too long to join to the module directory:
    /// `modprobe: ERROR: could not join path 'DIR' and 'PATH'.`
    PathTooLong {
        /// The module directory.
        dirname: Vec<u8>,
        /// The dependency's path as `modules.dep` writes it.
        path: Vec<u8>,
    },
    /// One module name with two different files: `modprobe: ERROR:
    /// kmod_module 'NAME' already exists with different path:
    /// new-path='NEW' old-path='OLD'`.
    PathConflict {
        /// The module name.
        name: Vec<u8>,
        /// The path met now.
        new: Vec<u8>,
        /// The path met first.
        old: Vec<u8>,
    },
    /// An alias and module name too long together: `modprobe: ERROR: Could
    /// not create module for alias=ALIAS realname=MODULE: REASON`
    /// (`modname=` for a configuration alias).
    AliasTooLong {
        /// The alias looked up.
        alias: Vec<u8>,
        /// The module it resolved to.
        module: Vec<u8>,
        /// Whether the alias came from the configuration.
        config: bool,
        /// Why (`strerror`).
        reason: &'static str,
    },
    /// A soft or weak dependency that could not be looked up: `modprobe:
    /// ERROR: failed to lookup dependency 'NAME', continuing anyway.`
    DependencyLookupFailed {
        /// The dependency's name.
        name: Vec<u8>,
    },
}

impl Message {
    /// How serious it is.
    pub fn severity(&self) -> Severity {
        match self {
            Message::NotFound { .. } | Message::BadPath { .. } => Severity::Fatal,
            _ => Severity::Error,
        }
    }

    /// The line as modprobe prints it, without its newline. Configuration
    /// messages come from libkmod's default logger (modprobe has not set up
    /// its own yet), the others through modprobe's.
    pub fn to_bytes(&self) -> Vec<u8> {
        let q = |b: &[u8]| b.to_vec();
        let parts: Vec<Vec<u8>> = match self {
            Message::NotFound { name, dirname } => vec![
                q(b"modprobe: FATAL: Module "),
                q(name),
                q(b" not found in directory "),
                q(dirname),
            ],
            Message::BadPath { path, reason } => vec![
                q(b"modprobe: FATAL: Failed to get module from path "),
                q(path),
                q(b": "),
                q(reason.as_bytes()),
            ],
            Message::BadConfigLine {
                file,
                line,
                command,
            } => vec![
                format!("libkmod: ERROR: kmod_config_parse: {file} line {line}: ignoring bad line starting with '").into_bytes(),
                q(command),
                q(b"'"),
            ],
            Message::DeprecatedCommand { file, command } => vec![
                format!("libkmod: ERROR: kmod_config_parse: {file}: command ").into_bytes(),
                q(command),
                q(b" is deprecated and not parsed anymore"),
            ],
            Message::BadCmdlineModule { name } => vec![
                q(b"libkmod: ERROR: kcmdline_parse_result: Ignoring bad option on kernel command line while parsing module name: '"),
                q(name),
                q(b"'"),
            ],
            Message::MissingDependencyFile { path, reason } => vec![
                q(b"modprobe: ERROR: ctx=(ctx) path="),
                q(path),
                q(b" error="),
                q(reason.as_bytes()),
            ],
            Message::PathTooLong { dirname, path } => vec![
                q(b"modprobe: ERROR: could not join path '"),
                q(dirname),
                q(b"' and '"),
                q(path),
                q(b"'."),
            ],
            Message::PathConflict { name, new, old } => vec![
                q(b"modprobe: ERROR: kmod_module '"),
                q(name),
                q(b"' already exists with different path: new-path='"),
                q(new),
                q(b"' old-path='"),
                q(old),
                q(b"'"),
            ],
            Message::AliasTooLong {
                alias,
                module,
                config,
                reason,
            } => vec![
                q(b"modprobe: ERROR: Could not create module for alias="),
                q(alias),
                q(if *config { b" modname=" } else { b" realname=" }),
                q(module),
                q(b": "),
                q(reason.as_bytes()),
            ],
            Message::DependencyLookupFailed { name } => vec![
                q(b"modprobe: ERROR: failed to lookup dependency '"),
                q(name),
                q(b"', continuing anyway."),
            ],
        };
        parts.concat()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}
