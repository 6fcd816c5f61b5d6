//! modprobe's lookup for `kmodidx build --modules`: a
//! [`Resolver`](crate::closure::Resolver) over the whole kernel's index,
//! held in memory, that resolves SPECs and softdep targets as
//! `modprobe -C /dev/null` does on the installed kernel.

use std::collections::HashMap;

use super::{Image, ImageParts};
use crate::closure::{KernelIndex, Lookup, Resolved, Resolver, Softdeps, Target};
use crate::index::fnmatch::fnmatch;

/// Resolves names and aliases as `modprobe -C /dev/null -R` does.
pub struct ModprobeResolver;

struct ImageLookup {
    image: Image,
    by_name: HashMap<Vec<u8>, usize>,
}

impl Lookup for ImageLookup {
    fn lookup(&self, spec: &[u8]) -> Vec<Target> {
        let mut out = Vec::new();
        for name in self.image.resolve_alias(spec).modules {
            // Names modprobe resolves that are not module files are
            // built into the kernel.
            let target = match self.by_name.get(&name) {
                Some(&i) => Target::Module(i),
                None => Target::Builtin(name),
            };
            if !out.contains(&target) {
                out.push(target);
            }
        }
        out
    }
}

impl Resolver for ModprobeResolver {
    fn resolve<'a>(&self, index: &KernelIndex<'a>) -> Result<Resolved<'a>, String> {
        let image = Image::from_parts(ImageParts {
            input: None,
            module_dir: index.module_dir.to_string(),
            kernel_version: index.version.to_string(),
            origin: format!("/{}/{}", index.module_dir, index.version),
            files: index
                .files
                .iter()
                .map(|f| (f.name.to_string(), f.bytes.clone()))
                .collect(),
            kernel_cmdline: Vec::new(),
            max_module_size: 0,
        })
        .map_err(|e| e.to_string())?;
        // Every softdep line matching a module counts (modprobe takes the
        // first only; an image that must boot wants them all).
        let softdeps = index
            .names
            .iter()
            .map(|name| {
                let mut s = Softdeps::default();
                for line in image
                    .config()
                    .softdeps
                    .iter()
                    .filter(|l| fnmatch(&l.module, name))
                {
                    s.pre.extend(line.pre.iter().cloned());
                    s.post.extend(line.post.iter().cloned());
                }
                s
            })
            .collect();
        let by_name = index
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(Resolved {
            lookup: Box::new(ImageLookup { image, by_name }),
            softdeps,
        })
    }
}
