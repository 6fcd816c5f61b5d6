//! What kmod 34.2's `modprobe -C /dev/null` does for `--show-depends` and
//! `-R`, replayed on an [`Image`].
//!
//! libkmod's behaviour depends on the identity of its module objects, so
//! they are modelled as it keeps them: a pool keyed by `NAME` (modules
//! found by name or path) or `NAME\ALIAS` (found through an alias), each
//! with its lazily read path and dependency list, builtin state and the
//! `visited` flag of the probe walk. The quirks follow: a dependency that is
//! also reached through a softdep is listed twice, an alias matched by two
//! patterns of one module resolves to it twice, only the first softdep line
//! of a module counts, and a dependency whose file is missing drops the
//! whole dependency list (with libkmod's error).

use std::collections::HashMap;
use std::fmt;

use super::{Image, Message};
use crate::index::files::normalize_alias;
use crate::index::fnmatch::fnmatch;
use crate::index::reader::BinIndex;
use crate::layout::{modname, PATH_MAX};

/// The errno values libkmod's lookups return here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errno {
    NoEnt,
    Exist,
    Inval,
    NameTooLong,
    NoSys,
}

impl Errno {
    fn strerror(self) -> &'static str {
        match self {
            Errno::NoEnt => "No such file or directory",
            Errno::Exist => "File exists",
            Errno::Inval => "Invalid argument",
            Errno::NameTooLong => "File name too long",
            Errno::NoSys => "Function not implemented",
        }
    }
}

/// One line of `--show-depends` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `insmod PATH OPTIONS` (the space before the options is always there).
    Insmod {
        /// The module's name.
        module: Vec<u8>,
        /// Its file in the image.
        path: Vec<u8>,
        /// Its options (each followed by a space), empty for none.
        options: Vec<u8>,
    },
    /// `install COMMAND OPTIONS`, from an `install` configuration line.
    Install {
        /// The module's name.
        module: Vec<u8>,
        /// The command, as configured.
        command: Vec<u8>,
        /// Its options, as for `insmod`.
        options: Vec<u8>,
    },
    /// `builtin NAME`: built into the kernel, nothing to load.
    Builtin {
        /// The module's name.
        module: Vec<u8>,
    },
}

impl Action {
    /// The module this line is about.
    pub fn module(&self) -> &[u8] {
        match self {
            Action::Insmod { module, .. }
            | Action::Install { module, .. }
            | Action::Builtin { module } => module,
        }
    }

    /// The line as modprobe prints it, with its newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (word, what, options): (&[u8], &[u8], Option<&[u8]>) = match self {
            Action::Insmod { path, options, .. } => (b"insmod", path, Some(options)),
            Action::Install {
                command, options, ..
            } => (b"install", command, Some(options)),
            Action::Builtin { module } => (b"builtin", module, None),
        };
        let mut line = [word, b" ", what].concat();
        if let Some(options) = options {
            line.push(b' ');
            line.extend_from_slice(options);
        }
        line.push(b'\n');
        line
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// What `modprobe -C /dev/null --show-depends NAME` prints for one NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowDepends {
    /// The NAME asked for.
    pub name: Vec<u8>,
    /// Standard output, line by line.
    pub actions: Vec<Action>,
    /// Standard error, line by line.
    pub messages: Vec<Message>,
    /// False when modprobe exits with status 1 (NAME not found).
    pub found: bool,
}

impl ShowDepends {
    /// Standard output as modprobe writes it.
    pub fn stdout(&self) -> Vec<u8> {
        self.actions.iter().flat_map(Action::to_bytes).collect()
    }
}

impl fmt::Display for ShowDepends {
    /// Standard output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.actions.iter().try_for_each(|a| write!(f, "{a}"))
    }
}

/// What `modprobe -C /dev/null -R NAME` prints for one NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The NAME asked for.
    pub name: Vec<u8>,
    /// The module names printed, in order (repeats included).
    pub modules: Vec<Vec<u8>>,
    /// Standard error, line by line.
    pub messages: Vec<Message>,
    /// False when modprobe exits with status 1 (NAME not found).
    pub found: bool,
}

impl Resolution {
    /// Standard output as modprobe writes it.
    pub fn stdout(&self) -> Vec<u8> {
        self.modules
            .iter()
            .flat_map(|m| m.iter().copied().chain([b'\n']))
            .collect()
    }
}

impl fmt::Display for Resolution {
    /// Standard output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.stdout()))
    }
}

pub(super) fn show_depends(image: &Image, name: &[u8]) -> ShowDepends {
    let mut ctx = Ctx::new(image);
    let mut actions = Vec::new();
    let found = match ctx.root_modules(name) {
        Some(roots) => {
            for root in roots {
                ctx.probe(root, &mut actions);
            }
            true
        }
        None => false,
    };
    ShowDepends {
        name: name.to_vec(),
        actions,
        messages: ctx.messages,
        found,
    }
}

pub(super) fn resolve_alias(image: &Image, name: &[u8]) -> Resolution {
    let mut ctx = Ctx::new(image);
    let (modules, found) = match ctx.root_modules(name) {
        Some(roots) => (
            roots
                .into_iter()
                .map(|m| ctx.objs[m].name.clone())
                .collect(),
            true,
        ),
        None => (Vec::new(), false),
    };
    Resolution {
        name: name.to_vec(),
        modules,
        messages: ctx.messages,
        found,
    }
}

pub(super) fn weakdeps(image: &Image, module: &[u8]) -> Vec<Vec<u8>> {
    let mut ctx = Ctx::new(image);
    let module = modname_normalize(module);
    let names = image
        .config
        .weakdep_for(&module)
        .map(|w| w.weak.clone())
        .unwrap_or_default();
    let found = ctx.lookup_dep(&names);
    found
        .into_iter()
        .map(|m| ctx.objs[m].name.clone())
        .collect()
}

pub(super) fn softdeps(image: &Image, module: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut ctx = Ctx::new(image);
    let m = ctx.new_from_name(module);
    let (pre, post) = ctx.get_softdeps(m);
    let names = |ctx: &Ctx<'_>, list: Vec<usize>| -> Vec<Vec<u8>> {
        list.into_iter().map(|m| ctx.objs[m].name.clone()).collect()
    };
    (names(&ctx, pre), names(&ctx, post))
}

/// libkmod's `modname_normalize`: the module name of `name` (see
/// [`modname`]) from at most `PATH_MAX - 1` bytes.
pub(super) fn modname_normalize(name: &[u8]) -> Vec<u8> {
    modname(&name[..name.len().min(PATH_MAX - 1)])
}

/// One libkmod module object.
#[derive(Default)]
struct Obj {
    name: Vec<u8>,
    alias: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    /// Whether the dependency line was parsed (successfully).
    dep_init: bool,
    deps: Vec<usize>,
    /// `None` until known.
    builtin: Option<bool>,
    visited: bool,
    ignorecmd: bool,
    options: Option<Option<Vec<u8>>>,
    install: Option<Option<Vec<u8>>>,
}

/// The state of one modprobe run.
struct Ctx<'i> {
    image: &'i Image,
    objs: Vec<Obj>,
    by_key: HashMap<Vec<u8>, usize>,
    messages: Vec<Message>,
}

/// Which alias index a lookup reads.
#[derive(Clone, Copy)]
enum AliasIndex {
    Aliases,
    Symbols,
    BuiltinAliases,
}

impl<'i> Ctx<'i> {
    fn new(image: &'i Image) -> Self {
        Ctx {
            image,
            objs: Vec::new(),
            by_key: HashMap::new(),
            messages: image.config_messages.clone(),
        }
    }

    /// modprobe's `insmod()` up to the module list: a path for names that
    /// start with `/` or `./`, a lookup otherwise. `None` after the fatal
    /// message.
    fn root_modules(&mut self, name: &[u8]) -> Option<Vec<usize>> {
        if name.starts_with(b"/") || name.starts_with(b"./") {
            return match self.new_from_path(name) {
                Ok(m) => Some(vec![m]),
                Err(e) => {
                    self.messages.push(Message::BadPath {
                        path: name.to_vec(),
                        reason: e.strerror(),
                    });
                    None
                }
            };
        }
        match self.lookup(name) {
            Ok(list) if !list.is_empty() => Some(list),
            _ => {
                self.messages.push(Message::NotFound {
                    name: name.to_vec(),
                    dirname: self.image.dirname.clone(),
                });
                None
            }
        }
    }

    /// `kmod_module_new`: the pooled object for `key`, created if needed.
    fn module_new(&mut self, key: Vec<u8>, name: &[u8], alias: Option<&[u8]>) -> usize {
        if let Some(&m) = self.by_key.get(&key) {
            return m;
        }
        let m = self.objs.len();
        self.objs.push(Obj {
            name: name.to_vec(),
            alias: alias.map(<[u8]>::to_vec),
            ..Obj::default()
        });
        self.by_key.insert(key, m);
        m
    }

    fn new_from_name(&mut self, name: &[u8]) -> usize {
        let name = modname_normalize(name);
        self.module_new(name.clone(), &name, None)
    }

    fn new_from_alias(&mut self, alias: &[u8], name: &[u8]) -> Result<usize, Errno> {
        if name.len() + alias.len() + 2 > PATH_MAX {
            return Err(Errno::NameTooLong);
        }
        let key = [name, b"\\", alias].concat();
        Ok(self.module_new(key, name, Some(alias)))
    }

    /// `kmod_module_new_from_path`: the file must exist (libkmod stats it).
    fn new_from_path(&mut self, path: &[u8]) -> Result<usize, Errno> {
        // modprobe runs with the image's root as its working directory.
        let abspath = if path.starts_with(b"/") {
            path.to_vec()
        } else {
            [b"//", path].concat()
        };
        if !self.image.file_exists(&abspath) {
            return Err(Errno::NoEnt);
        }
        let base = &path[path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
        if base.is_empty() {
            return Err(Errno::NoEnt);
        }
        let name = modname_normalize(base);
        let m = self.module_new(name.clone(), &name, None);
        match &self.objs[m].path {
            None => self.objs[m].path = Some(abspath),
            Some(old) if *old == abspath => {}
            Some(old) => {
                let message = Message::PathConflict {
                    name,
                    new: abspath,
                    old: old.clone(),
                };
                self.messages.push(message);
                return Err(Errno::Exist);
            }
        }
        self.objs[m].builtin = Some(false);
        Ok(m)
    }

    fn search_moddep(&self, name: &[u8]) -> Option<Vec<u8>> {
        let dep = self.image.indexes.dep.as_ref()?;
        dep.search(name, self.image.mode).map(<[u8]>::to_vec)
    }

    /// A `modules.dep` path in the image (`path_join`): `None` when too long.
    fn path_join(&self, path: &[u8]) -> Option<Vec<u8>> {
        if path.starts_with(b"/") {
            return Some(path.to_vec());
        }
        if self.image.dirname.len() + 1 + path.len() + 1 >= PATH_MAX {
            return None;
        }
        Some(self.image.image_path(path))
    }

    /// `kmod_module_parse_depline`.
    fn parse_depline(&mut self, m: usize, line: &[u8]) {
        if self.objs[m].dep_init {
            return;
        }
        self.objs[m].dep_init = true;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        if self.image.dirname.len() + 2 >= PATH_MAX {
            return;
        }
        if self.objs[m].path.is_none() {
            let Some(path) = self.path_join(&line[..colon]) else {
                return;
            };
            self.objs[m].path = Some(path);
        }
        let mut deps = Vec::new();
        for token in line[colon + 1..]
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|t| !t.is_empty())
        {
            let Some(path) = self.path_join(token) else {
                self.messages.push(Message::PathTooLong {
                    dirname: self.image.dirname.clone(),
                    path: token.to_vec(),
                });
                self.objs[m].dep_init = false;
                return;
            };
            match self.new_from_path(&path) {
                Ok(d) => deps.insert(0, d),
                Err(e) => {
                    self.messages.push(Message::MissingDependencyFile {
                        path,
                        reason: e.strerror(),
                    });
                    self.objs[m].dep_init = false;
                    return;
                }
            }
        }
        self.objs[m].deps = deps;
    }

    fn get_dependencies(&mut self, m: usize) -> Vec<usize> {
        if !self.objs[m].dep_init {
            let name = self.objs[m].name.clone();
            if let Some(line) = self.search_moddep(&name) {
                self.parse_depline(m, &line);
            }
        }
        self.objs[m].deps.clone()
    }

    fn get_path(&mut self, m: usize) -> Option<Vec<u8>> {
        if self.objs[m].path.is_none() && !self.objs[m].dep_init {
            self.get_dependencies(m);
        }
        self.objs[m].path.clone()
    }

    fn is_builtin(&mut self, m: usize) -> bool {
        if self.objs[m].builtin.is_none() {
            let builtin = self.image.is_builtin(&self.objs[m].name);
            self.objs[m].builtin = Some(builtin);
        }
        self.objs[m].builtin == Some(true)
    }

    /// `kmod_module_new_from_lookup`: the lookups in libkmod's order, the
    /// first that finds something wins.
    fn lookup(&mut self, given: &[u8]) -> Result<Vec<usize>, Errno> {
        let alias = normalize_alias(given).ok_or(Errno::Inval)?;
        type Lookup<'i> = fn(&mut Ctx<'i>, &[u8]) -> Result<Vec<usize>, Errno>;
        let lookups: [Lookup<'i>; 7] = [
            Ctx::lookup_config,
            Ctx::lookup_moddep,
            |ctx, name| {
                if name.starts_with(b"symbol:") {
                    ctx.lookup_alias_bin(AliasIndex::Symbols, name)
                } else {
                    Ok(Vec::new())
                }
            },
            Ctx::lookup_commands,
            |ctx, name| ctx.lookup_alias_bin(AliasIndex::Aliases, name),
            Ctx::lookup_builtin,
            |ctx, name| {
                let list = ctx.lookup_alias_bin(AliasIndex::BuiltinAliases, name)?;
                for &m in &list {
                    ctx.objs[m].builtin = Some(true);
                }
                Ok(list)
            },
        ];
        for lookup in lookups {
            match lookup(self, &alias) {
                Err(Errno::NoSys) => {}
                Err(e) => return Err(e),
                Ok(list) if !list.is_empty() => return Ok(list),
                Ok(_) => {}
            }
        }
        Ok(Vec::new())
    }

    fn lookup_config(&mut self, name: &[u8]) -> Result<Vec<usize>, Errno> {
        let matching: Vec<(Vec<u8>, Vec<u8>)> = self
            .image
            .config
            .aliases
            .iter()
            .filter(|(pattern, _)| fnmatch(pattern, name))
            .cloned()
            .collect();
        let mut list = Vec::new();
        for (pattern, module) in matching {
            match self.new_from_alias(&pattern, &module) {
                Ok(m) => list.push(m),
                Err(e) => {
                    self.messages.push(Message::AliasTooLong {
                        alias: name.to_vec(),
                        module,
                        config: true,
                        reason: e.strerror(),
                    });
                    return Err(e);
                }
            }
        }
        Ok(list)
    }

    fn lookup_moddep(&mut self, name: &[u8]) -> Result<Vec<usize>, Errno> {
        if name.contains(&b':') {
            return Ok(Vec::new());
        }
        let Some(line) = self.search_moddep(name) else {
            return Ok(Vec::new());
        };
        let m = self.new_from_name(name);
        self.parse_depline(m, &line);
        Ok(vec![m])
    }

    fn lookup_commands(&mut self, name: &[u8]) -> Result<Vec<usize>, Errno> {
        let config = &self.image.config;
        if let Some(c) = config.install.iter().find(|c| c.module == name) {
            let command = c.command.clone();
            let m = self.new_from_name(name);
            self.objs[m].install = Some(Some(command));
            return Ok(vec![m]);
        }
        if config.remove.iter().any(|c| c.module == name) {
            return Ok(vec![self.new_from_name(name)]);
        }
        Ok(Vec::new())
    }

    fn lookup_builtin(&mut self, name: &[u8]) -> Result<Vec<usize>, Errno> {
        if !self.image.is_builtin(name) {
            return Ok(Vec::new());
        }
        let m = self.new_from_name(name);
        self.objs[m].builtin = Some(true);
        Ok(vec![m])
    }

    fn alias_index(&self, which: AliasIndex) -> Option<&'i BinIndex> {
        let indexes = &self.image.indexes;
        match which {
            AliasIndex::Aliases => indexes.alias.as_ref(),
            AliasIndex::Symbols => indexes.symbols.as_ref(),
            AliasIndex::BuiltinAliases => indexes.builtin_alias.as_ref(),
        }
    }

    fn lookup_alias_bin(&mut self, which: AliasIndex, name: &[u8]) -> Result<Vec<usize>, Errno> {
        let index = self.alias_index(which).ok_or(Errno::NoSys)?;
        let mut list = Vec::new();
        for v in index.search_wild(name, self.image.mode) {
            match self.new_from_alias(name, v.value) {
                Ok(m) => list.push(m),
                Err(e) => {
                    self.messages.push(Message::AliasTooLong {
                        alias: name.to_vec(),
                        module: v.value.to_vec(),
                        config: false,
                        reason: e.strerror(),
                    });
                    return Err(e);
                }
            }
        }
        Ok(list)
    }

    /// libkmod's `lookup_dep`: each name looked up, failures reported and
    /// skipped.
    fn lookup_dep(&mut self, names: &[Vec<u8>]) -> Vec<usize> {
        let mut out = Vec::new();
        for name in names {
            match self.lookup(name) {
                Ok(list) => out.extend(list),
                Err(_) => self
                    .messages
                    .push(Message::DependencyLookupFailed { name: name.clone() }),
            }
        }
        out
    }

    /// `kmod_module_get_softdeps`: the first matching softdep line's pre
    /// and post modules.
    fn get_softdeps(&mut self, m: usize) -> (Vec<usize>, Vec<usize>) {
        let Some(softdep) = self.image.config.softdep_for(&self.objs[m].name) else {
            return (Vec::new(), Vec::new());
        };
        let pre = self.lookup_dep(&softdep.pre);
        let post = self.lookup_dep(&softdep.post);
        (pre, post)
    }

    fn options(&mut self, m: usize) -> Option<Vec<u8>> {
        if self.objs[m].options.is_none() {
            let obj = &self.objs[m];
            let mut joined: Option<Vec<u8>> = None;
            for (module, options) in &self.image.config.options {
                let matches = *module == obj.name || obj.alias.as_ref() == Some(module);
                if !matches || options.is_empty() {
                    continue;
                }
                match &mut joined {
                    Some(j) => {
                        j.push(b' ');
                        j.extend_from_slice(options);
                    }
                    None => joined = Some(options.clone()),
                }
            }
            self.objs[m].options = Some(joined);
        }
        self.objs[m].options.clone().flatten()
    }

    fn install_command(&mut self, m: usize) -> Option<Vec<u8>> {
        if self.objs[m].install.is_none() {
            let name = &self.objs[m].name;
            let command = self
                .image
                .config
                .install
                .iter()
                .find(|c| fnmatch(&c.module, name))
                .map(|c| c.command.clone());
            self.objs[m].install = Some(command);
        }
        self.objs[m].install.clone().flatten()
    }

    /// `kmod_module_probe_insert_module` in a dry run that shows its
    /// actions (`--show-depends` ignores what the running kernel has).
    fn probe(&mut self, root: usize, actions: &mut Vec<Action>) {
        let blacklisted = self.image.config.blacklist.contains(&self.objs[root].name);
        if blacklisted && self.objs[root].alias.is_some() {
            // Blacklisted aliases are skipped silently.
            return;
        }
        for m in self.probe_list(root) {
            let options = self.options(m).map_or_else(Vec::new, |mut o| {
                // libkmod joins module and command-line options with a
                // space, even when there are no command-line options.
                o.push(b' ');
                o
            });
            let module = self.objs[m].name.clone();
            match self.install_command(m) {
                Some(command) if !self.objs[m].ignorecmd => actions.push(Action::Install {
                    module,
                    command,
                    options,
                }),
                _ => match self.get_path(m) {
                    Some(path) => actions.push(Action::Insmod {
                        module,
                        path,
                        options,
                    }),
                    None => {
                        if self.is_builtin(m) {
                            actions.push(Action::Builtin { module });
                        }
                    }
                },
            }
        }
    }

    /// `kmod_module_get_probe_list`, with an explicit stack instead of
    /// libkmod's recursion (a hostile softdep chain cannot overflow it).
    fn probe_list(&mut self, root: usize) -> Vec<usize> {
        enum Work {
            /// `__kmod_module_get_probe_list`.
            Visit(usize),
            /// `__kmod_module_fill_softdep`.
            Fill(usize),
            Append(usize, bool),
        }
        for obj in &mut self.objs {
            obj.visited = false;
        }
        let mut list = Vec::new();
        let mut stack = vec![Work::Visit(root)];
        while let Some(work) = stack.pop() {
            match work {
                Work::Visit(m) => {
                    if self.objs[m].visited {
                        continue;
                    }
                    self.objs[m].visited = true;
                    let deps = self.get_dependencies(m);
                    stack.push(Work::Fill(m));
                    stack.extend(deps.into_iter().rev().map(Work::Fill));
                }
                Work::Fill(m) => {
                    let (pre, post) = self.get_softdeps(m);
                    let has_softdeps = !pre.is_empty() || !post.is_empty();
                    stack.extend(post.into_iter().rev().map(Work::Visit));
                    stack.push(Work::Append(m, has_softdeps));
                    stack.extend(pre.into_iter().rev().map(Work::Visit));
                }
                Work::Append(m, has_softdeps) => {
                    list.push(m);
                    self.objs[m].ignorecmd = has_softdeps;
                }
            }
        }
        list
    }
}
