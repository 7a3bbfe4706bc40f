//! The dependency graph between resources: an edge for every `${kind.name.attr}` reference
//! and every `depends_on` entry. Gives a deterministic topological order, and on a cycle
//! the cycle itself, address by address.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Diagnostic;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// address → the addresses it depends on.
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn new<I, D>(nodes: I) -> Self
    where
        I: IntoIterator<Item = (String, D)>,
        D: IntoIterator<Item = String>,
    {
        Graph {
            deps: nodes
                .into_iter()
                .map(|(a, ds)| (a, ds.into_iter().collect()))
                .collect(),
        }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(String::as_str)
    }

    pub fn dependencies(&self, address: &str) -> impl Iterator<Item = &str> {
        self.deps
            .get(address)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Nodes that depend on `address`, directly.
    pub fn dependents<'a>(&'a self, address: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.deps
            .iter()
            .filter(move |(_, ds)| ds.contains(address))
            .map(|(a, _)| a.as_str())
    }

    /// Everything that depends on `address`, transitively.
    pub fn all_dependents(&self, address: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![address.to_owned()];
        while let Some(a) = todo.pop() {
            for d in self.dependents(&a) {
                if out.insert(d.to_owned()) {
                    todo.push(d.to_owned());
                }
            }
        }
        out
    }

    /// Everything `address` depends on, transitively.
    pub fn all_dependencies(&self, address: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![address.to_owned()];
        while let Some(a) = todo.pop() {
            for d in self.dependencies(&a) {
                if out.insert(d.to_owned()) {
                    todo.push(d.to_owned());
                }
            }
        }
        out
    }

    /// Dependencies first; ties broken by address so the order is stable.
    pub fn topo_order(&self) -> Result<Vec<String>, Diagnostic> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit(
            g: &Graph,
            n: &str,
            marks: &mut BTreeMap<String, Mark>,
            path: &mut Vec<String>,
            out: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            match marks.get(n) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|p| p == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n.to_owned());
                    return Err(cycle);
                }
                None => {}
            }
            marks.insert(n.to_owned(), Mark::Visiting);
            path.push(n.to_owned());
            for d in g.dependencies(n) {
                if g.deps.contains_key(d) {
                    visit(g, d, marks, path, out)?;
                }
            }
            path.pop();
            marks.insert(n.to_owned(), Mark::Done);
            out.push(n.to_owned());
            Ok(())
        }
        let mut marks = BTreeMap::new();
        let mut out = Vec::new();
        for n in self.deps.keys() {
            let mut path = Vec::new();
            visit(self, n, &mut marks, &mut path, &mut out).map_err(|cycle| {
                Diagnostic::new(format!("dependency cycle: {}", cycle.join(" -> ")))
                    .for_address(cycle[0].clone())
                    .hint("break the cycle: remove one of these references or depends_on entries")
            })?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &[&str])]) -> Graph {
        Graph::new(edges.iter().map(|(a, ds)| {
            (
                a.to_string(),
                ds.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
        }))
    }

    #[test]
    fn orders_dependencies_first() {
        let graph = g(&[("c", &["b"]), ("b", &["a"]), ("a", &[]), ("d", &["a"])]);
        assert_eq!(graph.topo_order().unwrap(), ["a", "b", "c", "d"]);
        assert_eq!(
            graph.all_dependents("a").into_iter().collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
        assert_eq!(graph.all_dependencies("c").len(), 2);
    }

    #[test]
    fn reports_the_cycle_in_order() {
        let graph = g(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        let err = graph.topo_order().unwrap_err().to_string();
        assert!(err.contains("dependency cycle: a -> b -> c -> a"), "{err}");
    }
}
