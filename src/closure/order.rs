//! The order in which a closure's modules load, for `modules.load`.
//!
//! The rule, deterministic and documented in the README:
//!
//! 1. a module comes after its hard dependencies (always);
//! 2. a module comes after its softdep `pre:` targets and before its
//!    `post:` targets, as modprobe loads them, when both are in the closure;
//! 3. among the modules free to go next, the one first in depmod's module
//!    order (`modules.order`, then kmod's hash order) goes first.
//!
//! Hard dependencies never form a loop (depmod refuses those), but softdeps
//! may. When only softdep constraints hold every remaining module back, the
//! first remaining module in depmod's order whose hard dependencies are all
//! placed goes next, and its unmet softdep constraints are dropped.
//! Weakdeps do not constrain the order.

use std::collections::{BTreeSet, HashMap};

use super::{Closure, Lookup, Node, Target};

/// The closure's modules, dependencies first (see the module docs).
pub fn load_order(graph: &[Node], closure: &Closure, lookup: &dyn Lookup) -> Vec<usize> {
    let members: BTreeSet<usize> = closure.modules.iter().copied().collect();
    // before[m]: modules that must load before m; `hard` marks which of
    // those are hard dependencies.
    let mut before: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    let mut hard: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    let resolve = |spec: &[u8]| -> Vec<usize> {
        lookup
            .lookup(spec)
            .into_iter()
            .filter_map(|t| match t {
                Target::Module(m) if members.contains(&m) => Some(m),
                _ => None,
            })
            .collect()
    };
    for &m in &members {
        let node = &graph[m];
        for &d in node.deps.iter().filter(|d| members.contains(d)) {
            before.entry(m).or_default().insert(d);
            hard.entry(m).or_default().insert(d);
        }
        for target in &node.softdeps.pre {
            for d in resolve(target).into_iter().filter(|&d| d != m) {
                before.entry(m).or_default().insert(d);
            }
        }
        for target in &node.softdeps.post {
            for d in resolve(target).into_iter().filter(|&d| d != m) {
                before.entry(d).or_default().insert(m);
            }
        }
    }

    let mut placed = BTreeSet::new();
    let mut order = Vec::with_capacity(members.len());
    while order.len() < members.len() {
        let ready = |set: &HashMap<usize, BTreeSet<usize>>, m: &usize| {
            set.get(m)
                .is_none_or(|b| b.iter().all(|d| placed.contains(d)))
        };
        let next = members
            .iter()
            .find(|m| !placed.contains(*m) && ready(&before, m))
            .or_else(|| {
                members
                    .iter()
                    .find(|m| !placed.contains(*m) && ready(&hard, m))
            });
        // Hard dependencies are acyclic, so a module is always ready by the
        // second rule; stopping otherwise keeps this total.
        let Some(&next) = next else { break };
        placed.insert(next);
        order.push(next);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::super::{Closure, Lookup, Node, Target};
    use super::load_order;

    struct ByName<'a>(&'a [Node]);
    impl Lookup for ByName<'_> {
        fn lookup(&self, spec: &[u8]) -> Vec<Target> {
            self.0
                .iter()
                .position(|n| n.name == spec)
                .map(Target::Module)
                .into_iter()
                .collect()
        }
    }

    fn node(name: &str, deps: &[usize], pre: &[&str], post: &[&str]) -> Node {
        let list = |l: &[&str]| l.iter().map(|s| s.as_bytes().to_vec()).collect();
        Node {
            name: name.as_bytes().to_vec(),
            deps: deps.to_vec(),
            softdeps: super::super::Softdeps {
                pre: list(pre),
                post: list(post),
            },
            weakdeps: Vec::new(),
        }
    }

    fn order(g: &[Node]) -> Vec<String> {
        let closure = Closure {
            modules: (0..g.len()).collect(),
            ..Closure::default()
        };
        load_order(g, &closure, &ByName(g))
            .into_iter()
            .map(|m| String::from_utf8_lossy(&g[m].name).into_owned())
            .collect()
    }

    #[test]
    fn dependencies_first_then_depmod_order() {
        let g = [
            node("top", &[2], &[], &[]),
            node("free", &[], &[], &[]),
            node("base", &[], &[], &[]),
        ];
        assert_eq!(order(&g), ["free", "base", "top"]);
    }

    #[test]
    fn softdeps_order_pre_before_and_post_after() {
        let g = [
            node("post_target", &[], &[], &[]),
            node("m", &[], &["pre_target"], &["post_target"]),
            node("pre_target", &[], &[], &[]),
        ];
        assert_eq!(order(&g), ["pre_target", "m", "post_target"]);
    }

    #[test]
    fn softdep_loops_are_broken_in_depmod_order() {
        let g = [
            node("a", &[], &["b"], &[]),
            node("b", &[], &["a"], &[]),
            node("c", &[1], &[], &[]),
        ];
        assert_eq!(order(&g), ["a", "b", "c"]);
    }
}
