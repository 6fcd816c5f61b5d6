//! Diagnostics: what a run has to tell its user, as data.
//!
//! Every message kmodidx produces on the way (a bad configuration line, an
//! unknown symbol, a dependency cycle, ...) is a [`Diagnostic`]: a [`Level`]
//! and a [`Kind`] holding the facts (module, symbol, CRCs, path, reason).
//! Its [`Display`](fmt::Display) is kmod's exact wording, without a prefix;
//! front ends add their own (`depmod: WARNING: ` in the drop-in,
//! `kmodidx: warning: ` in `build`), and reports serialise the facts. Nothing
//! ever needs to parse the text back.

use std::fmt;

/// How serious a message is, named as kmod's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// kmod's `LOG_CRIT`, printed as `FATAL`: the run stops.
    Critical,
    /// kmod's `LOG_ERR`.
    Error,
    /// kmod's `LOG_WARNING`.
    Warning,
    /// kmod's `LOG_INFO`, shown by depmod from `-vv`.
    Info,
    /// depmod's `-v` progress lines (printed on stdout).
    Verbose,
}

impl Level {
    /// The word kmod prints after the program name (`depmod: WARNING: `).
    pub fn kmod_label(self) -> &'static str {
        match self {
            Level::Critical => "FATAL",
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Info => "INFO",
            Level::Verbose => "SHOW",
        }
    }

    /// The lowercase name used in reports and in `kmodidx: LEVEL: ` lines.
    pub fn name(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Verbose => "verbose",
        }
    }
}

/// One message: a level and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub level: Level,
    /// What happened.
    pub kind: Kind,
}

/// What a diagnostic is about. Each variant's text is kmod's (see
/// [`Diagnostic`]'s `Display`). Paths are as kmod prints them: inside the
/// image (`/lib/modules/<version>/...`), or as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    // depmod.d configuration.
    /// An `override` line for another kernel version.
    OverrideVersionMismatch {
        /// The configuration file.
        file: String,
        /// Line number (of the line's last physical line).
        line: usize,
        /// The version pattern of the line.
        pattern: String,
    },
    /// An `external` line for another kernel version.
    ExternalVersionMismatch {
        /// The configuration file.
        file: String,
        /// Line number.
        line: usize,
        /// The version pattern of the line.
        pattern: String,
    },
    /// `include` or `make_map_files`, which kmod does not implement.
    ConfigNotImplemented {
        /// The configuration file.
        file: String,
        /// Line number.
        line: usize,
        /// The directive.
        command: String,
    },
    /// A line kmod does not understand.
    ConfigBadLine {
        /// The configuration file.
        file: String,
        /// Line number.
        line: usize,
        /// The line's first word.
        command: String,
    },
    /// A configuration directory could not be listed.
    ConfigDirUnreadable {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file in a configuration directory without the `.conf` ending.
    ConfigNotConf {
        /// The file.
        path: String,
    },
    /// A directory inside a configuration directory.
    ConfigNestedDir {
        /// The directory.
        path: String,
    },
    /// An entry of a configuration directory that cannot be examined (kmod
    /// prints directory and name without a `/` between them).
    ConfigCannotStat {
        /// Directory and entry name, as kmod joins them.
        path: String,
    },
    /// A configuration file that could not be read.
    ConfigUnreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },

    // Discovery and the module directory's own files.
    /// A directory that could not be listed.
    DirUnreadable {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// A path longer than kmod's `PATH_MAX`.
    PathTooLong {
        /// The path.
        path: String,
    },
    /// A device, socket, FIFO or dangling link in the module directory.
    UnsupportedFileType {
        /// The entry.
        path: String,
        /// Whether its name is a module's: then it is a module that cannot
        /// be read (an unreadable module for `--strict` and reports).
        module: bool,
    },
    /// A symlink to a directory the walk has already searched, not followed
    /// (this ends symlink loops). kmodidx's own message: kmod follows such
    /// links until it runs out of file descriptors.
    LinkNotFollowed {
        /// The link, as kmod would spell its path.
        path: String,
        /// The path the directory was searched by.
        first: String,
    },
    /// A `modules.order` line without its newline (kmod then ignores the
    /// file's order).
    OrderLineUnterminated {
        /// The `modules.order` file.
        path: String,
        /// Line number.
        line: usize,
    },
    /// `modules.order`, `modules.builtin` or `modules.builtin.modinfo`
    /// missing or unreadable.
    InputMissing {
        /// The file name, such as `modules.builtin`.
        name: String,
        /// The module directory.
        dir: String,
        /// Why.
        reason: String,
    },

    // Kernel symbols.
    /// A `Module.symvers` CRC that is not a number.
    BadSymbolVersion {
        /// The file.
        file: String,
        /// Line number.
        line: usize,
        /// The CRC field.
        version: String,
    },
    /// A `System.map` line without its three fields.
    BadSystemMapLine {
        /// The file.
        file: String,
        /// Line number.
        line: usize,
        /// The line.
        text: String,
    },

    // Modules and their symbols.
    /// A module that could not be read or parsed. kmod still lists it, with
    /// no dependencies.
    UnreadableModule {
        /// The module's path.
        module: String,
        /// Why.
        reason: String,
    },
    /// A module needs a symbol nothing provides.
    UnknownSymbol {
        /// The module's path.
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// A module was built against another version of a symbol.
    CrcMismatch {
        /// The module's path.
        module: String,
        /// The symbol.
        symbol: String,
        /// The provider's CRC (kernel or module).
        expected: u64,
        /// The CRC in the module's `__versions`.
        found: u64,
    },
    /// A dependency found (depmod `-v`).
    Needs {
        /// The module's path.
        module: String,
        /// The symbol.
        symbol: String,
        /// The providing module's path.
        provider: String,
    },
    /// One dependency cycle, as a path of module names back to its start.
    Cycle {
        /// Module names; the first is repeated at the end.
        modules: Vec<String>,
    },
    /// Cycles kmod's walk could not finish listing.
    CyclesTooTangled {
        /// A module name on them.
        module: String,
    },
    /// The closing line of a cycle report.
    CycleCount {
        /// How many distinct modules are on cycles.
        count: usize,
    },

    // Index encoding.
    /// A value with a byte outside 7-bit ASCII.
    NonAscii {
        /// The module it belongs to, when known.
        module: Option<String>,
        /// The first such byte.
        byte: u8,
        /// The value.
        value: String,
    },
    /// Two modules with the same name in modules.dep.bin (`-w`).
    DuplicateDeps {
        /// The module's name.
        module: String,
        /// Its modules.dep line.
        line: String,
    },
    /// An alias already in modules.alias.bin (`-w`).
    DuplicateAlias {
        /// The module's name.
        module: String,
        /// The alias.
        alias: String,
    },
    /// A symbol already in modules.symbols.bin (`-w`).
    DuplicateSymbol {
        /// The module's name.
        module: String,
        /// The key, `symbol:NAME`.
        key: String,
    },
    /// An alias with an unmatched `[` or `]`.
    UnmatchedBracket {
        /// The module (or built-in module) it belongs to, when known.
        module: Option<String>,
        /// The alias.
        alias: String,
    },
    /// A modules.builtin line not starting with a letter.
    BadBuiltinLine {
        /// The line.
        line: String,
    },
    /// A modules.builtin.modinfo field longer than kmod's buffer.
    FieldTooLong {
        /// What fitted.
        partial: String,
    },
    /// A `devname:` alias without a `char-major-` or `block-major-` one.
    DevnameWithoutNumbers {
        /// The module's name.
        module: String,
        /// The device name.
        devname: String,
    },

    // The depmod drop-in's own checks.
    /// `-P` with more than one character.
    PrefixNotSingleChar,
    /// A kernel version that does not start with two numbers.
    BadVersion {
        /// What was given.
        version: String,
    },
    /// The running kernel's version could not be read.
    UnameFailed {
        /// Why.
        reason: String,
    },
    /// A module directory path longer than `PATH_MAX`.
    DirectoryTooLong {
        /// The path.
        path: String,
    },
    /// `-e` without `-E` or `-F`.
    ErrsymsNeedSymbols,
    /// The module directory could not be searched.
    SearchFailed {
        /// Why.
        reason: String,
    },
    /// More modules than the index format can number.
    TooManyModules,
    /// `-E` or `-F` file unreadable.
    SymbolFileUnreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A module operand that is not an absolute path.
    NotAbsolute {
        /// The operand.
        path: String,
    },
    /// A module operand that cannot be used.
    ModuleOperand {
        /// The operand.
        path: String,
        /// Why.
        reason: String,
    },
    /// The same module operand twice (kmod's hash table refuses it).
    OperandRepeated {
        /// The module name.
        name: String,
    },
    /// The second half of [`Kind::OperandRepeated`]'s report.
    OperandNotAdded {
        /// The operand.
        path: String,
    },
    /// Two module operands with the same module name.
    ModuleNameTaken {
        /// The module name.
        name: String,
        /// The later operand.
        new_path: String,
        /// The earlier operand.
        old_path: String,
    },
    /// `-A` could not find `modules.dep`.
    IndexNotFound {
        /// The module directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// Writing the index failed (the drop-in's own wording).
    OutputFailed {
        /// The error, naming the path.
        error: String,
    },
}

/// The report categories of `kmodidx build --report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// [`Kind::UnknownSymbol`].
    UnknownSymbol,
    /// [`Kind::CrcMismatch`].
    CrcMismatch,
    /// [`Kind::UnreadableModule`].
    UnreadableModule,
    /// [`Kind::Cycle`].
    Cycle,
    /// Everything else.
    Message,
}

impl Category {
    /// The `kind` value of the report.
    pub fn name(self) -> &'static str {
        match self {
            Category::UnknownSymbol => "unknown_symbol",
            Category::CrcMismatch => "crc_mismatch",
            Category::UnreadableModule => "unreadable_module",
            Category::Cycle => "cycle",
            Category::Message => "message",
        }
    }
}

impl Diagnostic {
    /// A diagnostic of `level`.
    pub fn new(level: Level, kind: Kind) -> Self {
        Diagnostic { level, kind }
    }
    /// A [`Level::Critical`] diagnostic.
    pub fn critical(kind: Kind) -> Self {
        Self::new(Level::Critical, kind)
    }
    /// A [`Level::Error`] diagnostic.
    pub fn error(kind: Kind) -> Self {
        Self::new(Level::Error, kind)
    }
    /// A [`Level::Warning`] diagnostic.
    pub fn warning(kind: Kind) -> Self {
        Self::new(Level::Warning, kind)
    }
    /// A [`Level::Info`] diagnostic.
    pub fn info(kind: Kind) -> Self {
        Self::new(Level::Info, kind)
    }
    /// A [`Level::Verbose`] diagnostic.
    pub fn verbose(kind: Kind) -> Self {
        Self::new(Level::Verbose, kind)
    }

    /// The module a message is about (its path, or its name where kmod
    /// only knows the name), if it is about one.
    pub fn module(&self) -> Option<&str> {
        use Kind as K;
        match &self.kind {
            K::UnreadableModule { module, .. }
            | K::UnknownSymbol { module, .. }
            | K::CrcMismatch { module, .. }
            | K::Needs { module, .. }
            | K::CyclesTooTangled { module }
            | K::DuplicateDeps { module, .. }
            | K::DuplicateAlias { module, .. }
            | K::DuplicateSymbol { module, .. }
            | K::DevnameWithoutNumbers { module, .. } => Some(module),
            K::NonAscii { module, .. } | K::UnmatchedBracket { module, .. } => module.as_deref(),
            K::ModuleOperand { path, .. } | K::NotAbsolute { path } => Some(path),
            K::UnsupportedFileType { path, module: true } => Some(path),
            K::ModuleNameTaken { new_path, .. } => Some(new_path),
            _ => None,
        }
    }

    /// The report category.
    pub fn category(&self) -> Category {
        match self.kind {
            Kind::UnknownSymbol { .. } => Category::UnknownSymbol,
            Kind::CrcMismatch { .. } => Category::CrcMismatch,
            Kind::UnreadableModule { .. } | Kind::UnsupportedFileType { module: true, .. } => {
                Category::UnreadableModule
            }
            Kind::Cycle { .. } => Category::Cycle,
            _ => Category::Message,
        }
    }

    /// Whether `--strict` fails on it: an unknown symbol, a CRC mismatch or
    /// an unreadable module.
    pub fn is_strict_finding(&self) -> bool {
        matches!(
            self.category(),
            Category::UnknownSymbol | Category::CrcMismatch | Category::UnreadableModule
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Kind as K;
        match self {
            K::OverrideVersionMismatch {
                file,
                line,
                pattern,
            } => write!(f, "{file}:{line}: override kernel did not match {pattern}"),
            K::ExternalVersionMismatch {
                file,
                line,
                pattern,
            } => write!(
                f,
                "{file}:{line}: external directory did not match {pattern}"
            ),
            K::ConfigNotImplemented {
                file,
                line,
                command,
            } => write!(f, "{file}:{line}: command {command} not implemented yet"),
            K::ConfigBadLine {
                file,
                line,
                command,
            } => write!(
                f,
                "{file}:{line}: ignoring bad line starting with '{command}'"
            ),
            K::ConfigDirUnreadable { path, reason } => write!(f, "files list {path}: {reason}"),
            K::ConfigNotConf { path } => write!(f, "All cfg files need .conf: {path}"),
            K::ConfigNestedDir { path } => write!(
                f,
                "Directories inside directories are not supported: {path}"
            ),
            K::ConfigCannotStat { path } => write!(f, "Cannot stat directory entry: {path}"),
            K::ConfigUnreadable { path, reason } => write!(f, "file parse {path}: {reason}"),
            K::DirUnreadable { path, reason } => {
                write!(f, "could not open directory {path}: {reason}")
            }
            K::PathTooLong { path } => write!(f, "path is too long {path}"),
            K::UnsupportedFileType { path, .. } => write!(f, "unsupported file type {path}"),
            K::LinkNotFollowed { path, first } => write!(
                f,
                "not following {path}: it leads to {first}, already searched"
            ),
            K::OrderLineUnterminated { path, line } => {
                write!(f, "{path}:{line} corrupted line misses '\\n'")
            }
            K::InputMissing { name, dir, reason } => {
                write!(f, "could not open {name} at {dir}: {reason}")
            }
            K::BadSymbolVersion {
                file,
                line,
                version,
            } => write!(f, "{file}:{line} Invalid symbol version {version}: Success"),
            K::BadSystemMapLine { file, line, text } => {
                write!(f, "{file}:{line}: invalid line: {text}")
            }
            K::UnreadableModule { module, reason } => {
                write!(f, "failed to load symbols from {module}: {reason}")
            }
            K::UnknownSymbol { module, symbol } => {
                write!(f, "{module} needs unknown symbol {symbol}")
            }
            K::CrcMismatch { module, symbol, .. } => {
                write!(f, "{module} disagrees about version of symbol {symbol}")
            }
            K::Needs {
                module,
                symbol,
                provider,
            } => write!(f, "{module} needs \"{symbol}\": {provider}"),
            K::Cycle { modules } => write!(f, "Cycle detected: {}", modules.join(" -> ")),
            K::CyclesTooTangled { module } => write!(
                f,
                "dependency cycles are too tangled to list (kmod's depmod aborts here); modules involved include {module}"
            ),
            K::CycleCount { count } => write!(f, "Found {count} modules in dependency cycles!"),
            K::NonAscii { byte, value, .. } => write!(
                f,
                "Module index: bad character '{}'=0x{byte:x} - only 7-bit ASCII is supported:\n{value}",
                char::from(*byte)
            ),
            K::DuplicateDeps { line, .. } => write!(f, "duplicate module deps:\n{line}"),
            K::DuplicateAlias { module, alias } => {
                write!(f, "duplicate module alias:\n{alias} {module}")
            }
            K::DuplicateSymbol { module, key } => {
                write!(f, "duplicate module syms:\n{key} {module}")
            }
            K::UnmatchedBracket { alias, .. } => write!(f, "Unmatched bracket in {alias}"),
            K::BadBuiltinLine { line } => write!(f, "Invalid modules.builtin line: {line}"),
            K::FieldTooLong { partial } => write!(
                f,
                "Could not flush stream: 28. Partial content: {partial}"
            ),
            K::DevnameWithoutNumbers { module, devname } => write!(
                f,
                "Module '{module}' has devname ({devname}) but lacks major and minor information. Ignoring."
            ),
            K::PrefixNotSingleChar => f.write_str("-P only takes a single char"),
            K::BadVersion { version } => write!(f, "Bad version passed {version}"),
            K::UnameFailed { reason } => write!(f, "uname() failed: {reason}"),
            K::DirectoryTooLong { path } => write!(f, "Bad directory {path}: path too long"),
            K::ErrsymsNeedSymbols => f.write_str("-e needs -E or -F"),
            K::SearchFailed { reason } => write!(f, "could not search modules: {reason}"),
            K::TooManyModules => {
                f.write_str("could not build module array: Numerical result out of range")
            }
            K::SymbolFileUnreadable { path, reason } => {
                write!(f, "could not load {path}: {reason}")
            }
            K::NotAbsolute { path } => write!(f, "{path}: not absolute path."),
            K::ModuleOperand { path, reason } => {
                write!(f, "could not create module {path}: {reason}")
            }
            K::OperandRepeated { name } => write!(f, "hash_add_unique {name}: File exists"),
            K::OperandNotAdded { path } => write!(f, "could not add module {path}: File exists"),
            K::ModuleNameTaken {
                name,
                new_path,
                old_path,
            } => write!(
                f,
                "kmod_module '{name}' already exists with different path: new-path='{new_path}' old-path='{old_path}'"
            ),
            K::IndexNotFound { dir, reason } => {
                write!(f, "could not fstatat({dir}, modules.dep): {reason}")
            }
            K::OutputFailed { error } => f.write_str(error),
        }
    }
}

/// Bytes as text for a message, as kmod's `%s` shows them to a UTF-8
/// terminal (invalid sequences replaced).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
