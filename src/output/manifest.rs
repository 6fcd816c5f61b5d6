//! `kmodidx.manifest.json`: what an output holds and what it was made from.

use serde::{Deserialize, Serialize};

use crate::util::hex;

/// Default name of the manifest at the root of an output.
pub const MANIFEST_NAME: &str = "kmodidx.manifest.json";

/// Largest manifest read (its size grows with the number of files).
pub const MAX_MANIFEST: u64 = 256 << 20;

/// The schema version this kmodidx writes. It also reads schema 1, which
/// had no `input.scope` (its digest covered whole files), and schema 2,
/// which had no `metadata` scope.
pub const SCHEMA: u32 = 3;

/// What an output holds and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version ([`SCHEMA`]).
    pub schema: u32,
    /// `kmodidx <version>`.
    pub tool: String,
    /// The kernel indexed.
    pub kernel_version: String,
    /// Module directory inside the tree, such as `lib/modules`.
    pub module_dir: String,
    /// The options that shaped the output.
    pub options: ManifestOptions,
    /// The inputs read.
    pub input: InputDigest,
    /// Every regular file of the output except the manifest, sorted by path
    /// bytes.
    pub files: Vec<ManifestFile>,
}

/// Options that change what is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestOptions {
    /// `kmod34`, `kmod33` or `kmod30`.
    pub compat: String,
    /// Whether the module tree is copied beside the index.
    pub staged: bool,
    /// Timestamp given to every archive entry and output file.
    pub mtime: u64,
    /// Whether the depmod.d files inside the input were applied.
    #[serde(default = "default_true")]
    pub input_config: bool,
    /// depmod.d directories from outside the input (`--config`), in order.
    #[serde(default)]
    pub config_dirs: Vec<String>,
    /// The `--symbol-prefix` byte, if any.
    #[serde(default)]
    pub symbol_prefix: Option<String>,
    /// `--follow-links-under` directories, in order (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_links_under: Vec<String>,
    /// The closure request of a `--modules` build (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure: Option<ManifestClosure>,
}

/// The SPECs of a closure build: the output is a function of the input and
/// these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestClosure {
    /// Root SPECs (`--modules`, lists and `@FILE`s expanded), in order.
    pub modules: Vec<String>,
    /// `--exclude` SPECs.
    pub exclude: Vec<String>,
    /// `--allow-missing` names.
    pub allow_missing: Vec<String>,
    /// Whether `modules.load` is written.
    pub load_list: bool,
}

fn default_true() -> bool {
    true
}

/// Which bytes of each module the input digest covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestScope {
    /// What depmod took from each module: its exports and the symbols it
    /// needs with their CRCs, its aliases, soft and weak dependencies and
    /// firmware (see [`crate::module::ModuleMeta::metadata_digest`]). The
    /// default: it costs next to nothing, and inputs that agree in it give
    /// the same index.
    Metadata,
    /// The parts depmod parses: the ELF header, section headers and names,
    /// `.symtab`, `.strtab`, `.modinfo`, `__versions`, `__ksymtab_strings`
    /// and the sections holding `__crc_` values, of the uncompressed image
    /// (see [`crate::module::ModuleDigest::Parsed`]).
    Parsed,
    /// Every byte of every module file, as stored (`sha256sum` gives the
    /// same per-file digests).
    Whole,
    /// Nothing: no input was digested (the list is empty).
    Off,
}

impl DigestScope {
    /// Schema 1 manifests digested whole files.
    fn schema1() -> Self {
        DigestScope::Whole
    }

    /// The digest the module reader takes of each module for this scope
    /// (none where the tree digests whole files).
    pub fn module_digest(self) -> crate::module::ModuleDigest {
        match self {
            DigestScope::Metadata => crate::module::ModuleDigest::Metadata,
            DigestScope::Parsed => crate::module::ModuleDigest::Parsed,
            DigestScope::Whole | DigestScope::Off => crate::module::ModuleDigest::None,
        }
    }
}

/// The inputs the pipeline read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDigest {
    /// What each module's line of the list digests.
    #[serde(default = "DigestScope::schema1")]
    pub scope: DigestScope,
    /// SHA-256 of the canonical list: one line per file read, sorted by
    /// path bytes, `<sha256 hex>  <path>\n` (as `sha256sum` prints it).
    /// Files other than modules (depmod.d files, `modules.order`,
    /// `modules.builtin*`, a symbol file in the input) are always digested
    /// whole; modules as `scope` says.
    pub sha256: String,
    /// How many files the list holds.
    pub files: usize,
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the output root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Octal permission bits, such as `0644`.
    pub mode: String,
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the manifest's shape.
    #[error("not valid manifest JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file listed more than once (which would let a check pass on
    /// either entry).
    #[error("the manifest lists `{0}` more than once")]
    Duplicate(String),
    /// Another schema version.
    #[error("manifest schema {found} is not supported (this kmodidx reads schemas 1 to {SCHEMA})")]
    Schema {
        /// The version found.
        found: u32,
    },
}

impl Manifest {
    /// The exact bytes written: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads a manifest, checking its schema version first and then that no
    /// file is listed twice.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            schema: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if !(1..=SCHEMA).contains(&probe.schema) {
            return Err(ManifestError::Schema {
                found: probe.schema,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(again) = manifest.files.iter().find(|f| !seen.insert(&f.path)) {
            return Err(ManifestError::Duplicate(again.path.clone()));
        }
        Ok(manifest)
    }
}

/// `0644`-style text for permission bits.
pub fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// The canonical input list and its digest, from `(path, sha256)` pairs
/// whose modules were digested as `scope` says.
pub fn input_digest(scope: DigestScope, files: &[(Vec<u8>, [u8; 32])]) -> InputDigest {
    use sha2::Digest;
    let mut sorted: Vec<&(Vec<u8>, [u8; 32])> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = sha2::Sha256::new();
    for (path, sha) in &sorted {
        hasher.update(hex(sha).as_bytes());
        hasher.update(b"  ");
        hasher.update(path);
        hasher.update(b"\n");
    }
    InputDigest {
        scope,
        sha256: hex(&hasher.finalize()),
        files: sorted.len(),
    }
}
