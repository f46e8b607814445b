//! Directed graphs whose edges carry a set of dependency labels, with the two searches the
//! transaction checker needs: strongly connected components (iterative Tarjan, so a 10,000-node
//! chain does not overflow the stack) and shortest paths by breadth-first search over edges
//! whose labels are allowed by a mask.
//!
//! Node ids are dense `u32`s. No graph built here has a self-loop: a transaction never depends on
//! itself, and the builders drop such edges.

use std::collections::{HashMap, VecDeque};

/// Write-write: a version of a key was followed by the next version.
pub(crate) const WW: u8 = 1;
/// Write-read: a read observed a write.
pub(crate) const WR: u8 = 2;
/// Read-write anti-dependency: a read did not observe a write that followed what it saw.
pub(crate) const RW: u8 = 4;
/// Real time: the source completed before the target was invoked.
pub(crate) const RT: u8 = 8;
/// Labels from the weakest to the strongest claim; when an edge carries several allowed
/// labels, a path uses the first, so a cycle is classified as mildly as its edges permit.
pub(crate) const LABELS: [u8; 4] = [WW, WR, RW, RT];

/// Component id of a node in no component of two or more nodes.
pub(crate) const NO_COMPONENT: u32 = u32::MAX;

/// An adjacency-list digraph with labelled edges; at most one entry per ordered pair.
#[derive(Debug, Default)]
pub(crate) struct Digraph {
    adj: Vec<Vec<(u32, u8)>>,
}

/// One edge of a path or cycle, with the single label it was traversed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) label: u8,
}

/// Strongly connected components with at least two nodes.
#[derive(Debug)]
pub(crate) struct Components {
    /// Per node, its component's position in `groups`, or [`NO_COMPONENT`].
    pub(crate) comp: Vec<u32>,
    /// Each component's nodes.
    pub(crate) groups: Vec<Vec<u32>>,
}

impl Digraph {
    /// A graph over `n` nodes from `(from, to, labels)` triples; labels of repeated pairs are
    /// merged, self-loops dropped, and adjacency sorted so every search is deterministic.
    pub(crate) fn from_edges(n: usize, mut edges: Vec<(u32, u32, u8)>) -> Self {
        edges.sort_unstable();
        let mut adj: Vec<Vec<(u32, u8)>> = vec![Vec::new(); n];
        for (from, to, labels) in edges {
            if from == to || labels == 0 {
                continue;
            }
            let list = &mut adj[from as usize];
            match list.last_mut() {
                Some((last, merged)) if *last == to => *merged |= labels,
                _ => list.push((to, labels)),
            }
        }
        Self { adj }
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.adj.len()
    }

    /// Number of labelled node pairs.
    pub(crate) fn edge_count(&self) -> usize {
        self.adj.iter().map(Vec::len).sum()
    }

    /// Out-edges of `node`, sorted by target.
    pub(crate) fn edges(&self, node: u32) -> &[(u32, u8)] {
        &self.adj[node as usize]
    }

    /// The subgraph induced by `nodes` keeping only labels in `mask`, renumbered densely; the
    /// returned vector maps new ids back to ids of `self`.
    pub(crate) fn induced(&self, nodes: &[u32], mask: u8) -> (Digraph, Vec<u32>) {
        let local: HashMap<u32, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, &node)| (node, i as u32))
            .collect();
        let mut edges = Vec::new();
        for (i, &node) in nodes.iter().enumerate() {
            for &(to, labels) in self.edges(node) {
                if let Some(&j) = local.get(&to)
                    && labels & mask != 0
                {
                    edges.push((i as u32, j, labels & mask));
                }
            }
        }
        (Digraph::from_edges(nodes.len(), edges), nodes.to_vec())
    }

    /// Strongly connected components (of two or more nodes) using only edges with a label in
    /// `mask`; Tarjan's algorithm with an explicit stack.
    pub(crate) fn components(&self, mask: u8) -> Components {
        const UNVISITED: u32 = u32::MAX;
        let n = self.len();
        let mut index = vec![UNVISITED; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut calls: Vec<(u32, usize)> = Vec::new();
        let mut next = 0u32;
        let mut comp = vec![NO_COMPONENT; n];
        let mut groups = Vec::new();
        for root in 0..n as u32 {
            if index[root as usize] != UNVISITED {
                continue;
            }
            index[root as usize] = next;
            low[root as usize] = next;
            next += 1;
            stack.push(root);
            on_stack[root as usize] = true;
            calls.push((root, 0));
            while let Some(&(v, pos)) = calls.last() {
                let edges = self.edges(v);
                if pos < edges.len() {
                    if let Some(top) = calls.last_mut() {
                        top.1 += 1;
                    }
                    let (w, labels) = edges[pos];
                    if labels & mask == 0 {
                        continue;
                    }
                    if index[w as usize] == UNVISITED {
                        index[w as usize] = next;
                        low[w as usize] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w as usize] = true;
                        calls.push((w, 0));
                    } else if on_stack[w as usize] {
                        low[v as usize] = low[v as usize].min(index[w as usize]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent as usize] = low[parent as usize].min(low[v as usize]);
                }
                if low[v as usize] == index[v as usize] {
                    let mut group = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w as usize] = false;
                        group.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if group.len() >= 2 {
                        group.sort_unstable();
                        for &w in &group {
                            comp[w as usize] = groups.len() as u32;
                        }
                        groups.push(group);
                    }
                }
            }
        }
        Components { comp, groups }
    }

    /// A shortest path from `from` to `to` through nodes accepted by `member`, over edges with a
    /// label in `mask`. If `require` is given, the path must traverse at least one edge it
    /// accepts (the search runs over (node, requirement met) pairs, so this stays linear, and
    /// the result may visit a node twice, once on each side of the required edge).
    pub(crate) fn shortest_path(
        &self,
        member: &dyn Fn(u32) -> bool,
        from: u32,
        to: u32,
        mask: u8,
        require: Option<&dyn Fn(Step) -> bool>,
    ) -> Option<Vec<Step>> {
        let start = (from, require.is_none());
        let mut parent: HashMap<(u32, bool), ((u32, bool), u8)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut found = None;
        'search: while let Some((node, met)) = queue.pop_front() {
            for &(next, labels) in self.edges(node) {
                if !member(next) {
                    continue;
                }
                for label in LABELS {
                    if labels & mask & label == 0 {
                        continue;
                    }
                    let step = Step {
                        from: node,
                        to: next,
                        label,
                    };
                    let state = (next, met || require.is_some_and(|r| r(step)));
                    if state == start || parent.contains_key(&state) {
                        continue;
                    }
                    parent.insert(state, ((node, met), label));
                    if state == (to, true) {
                        found = Some(state);
                        break 'search;
                    }
                    queue.push_back(state);
                }
            }
        }
        let mut state = found?;
        let mut path = Vec::new();
        while state != start {
            let &(previous, label) = parent.get(&state)?;
            path.push(Step {
                from: previous.0,
                to: state.0,
                label,
            });
            state = previous;
        }
        path.reverse();
        Some(path)
    }
}

/// Loop erasure: the simple cycle through `walk[0]` obtained from a closed walk by cutting out
/// every detour that returns to a node already on the way. The first step is always kept.
pub(crate) fn erase_loops(walk: &[Step]) -> Vec<Step> {
    let Some(&first) = walk.first() else {
        return Vec::new();
    };
    let origin = first.from;
    let mut kept = vec![first];
    // For each node on the kept path: how many steps the path has when it arrives there.
    let mut arrived: HashMap<u32, usize> = HashMap::from([(first.to, 1)]);
    for &step in &walk[1..] {
        if step.to == origin {
            kept.push(step);
            break;
        }
        if let Some(&len) = arrived.get(&step.to) {
            for removed in kept.drain(len..) {
                arrived.remove(&removed.to);
            }
            continue;
        }
        kept.push(step);
        arrived.insert(step.to, kept.len());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_and_paths() {
        // 0 -> 1 -> 2 -> 0 (ww), 2 -> 3 (wr), 3 -> 2 (rw), 4 alone.
        let g = Digraph::from_edges(
            5,
            vec![
                (0, 1, WW),
                (1, 2, WW),
                (2, 0, WW),
                (2, 3, WR),
                (3, 2, RW),
                (1, 1, WW),
            ],
        );
        let ww = g.components(WW);
        assert_eq!(ww.groups, vec![vec![0, 1, 2]]);
        assert_eq!(ww.comp[3], NO_COMPONENT);
        let all = g.components(WW | WR | RW);
        assert_eq!(all.groups, vec![vec![0, 1, 2, 3]]);
        let any = |_| true;
        let path = g
            .shortest_path(&any, 3, 1, WW | WR | RW, None)
            .expect("path");
        assert_eq!(path.len(), 3);
        assert_eq!(path[0].label, RW);
        assert!(g.shortest_path(&any, 3, 1, WW, None).is_none());
        // A path from 0 to 2 that must use a wr edge: 0 -> 1 -> 2 -> 3 -> 2 is not simple, but
        // state (2, met) differs from (2, unmet), so the search finds 0 1 2 3 2.
        let needs_wr = |s: Step| s.label == WR;
        let path = g
            .shortest_path(&any, 0, 2, WW | WR | RW, Some(&needs_wr))
            .expect("path");
        assert_eq!(path.len(), 4);
        let step = |from, to| Step {
            from,
            to,
            label: WW,
        };
        // 5 -> 0 -> 1 -> 2 -> 0 -> 3 -> 5 erases to 5 -> 0 -> 3 -> 5.
        let walk = [
            step(5, 0),
            step(0, 1),
            step(1, 2),
            step(2, 0),
            step(0, 3),
            step(3, 5),
        ];
        assert_eq!(erase_loops(&walk), vec![step(5, 0), step(0, 3), step(3, 5)]);
    }

    #[test]
    fn long_chain_does_not_overflow() {
        let n = 200_000u32;
        let mut edges: Vec<_> = (0..n - 1).map(|i| (i, i + 1, WW)).collect();
        edges.push((n - 1, 0, RW));
        let g = Digraph::from_edges(n as usize, edges);
        assert_eq!(g.components(WW | RW).groups[0].len(), n as usize);
        assert!(g.components(WW).groups.is_empty());
    }
}
