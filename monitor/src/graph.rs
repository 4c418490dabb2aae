//! The wait-for graph: an edge from each actor awaiting an ask inside its handler to the
//! actor it asked, and the graph's cycles, which are deadlocks.
//!
//! Every elementary cycle is reported once, rotated to start at its smallest actor id.
//! The search first splits the graph into strongly connected components (only those can
//! hold cycles); a component in which every actor awaits exactly one other is a single
//! ring and is read off directly, which is the usual shape of a deadlock. Components with
//! branching waits go through an enumeration of elementary circuits in the manner of
//! Johnson's algorithm, bounded by [`MAX_DEADLOCKS`]. Both searches are iterative, so a
//! long chain from a merged snapshot cannot exhaust the stack.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use plexus_core::ActorId;
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;

/// The most cycles one search reports; a graph with more (only possible when actors await
/// several asks at once, in a dense tangle) is cut there, with a warning logged.
pub const MAX_DEADLOCKS: usize = 1024;

/// A cycle of actors each awaiting an ask to the next; the last awaits the first.
///
/// The first actor is the one with the smallest id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deadlock {
    /// The actors of the cycle, in wait order, starting at the smallest id.
    pub actors: Vec<ActorId>,
}

impl Deadlock {
    /// Whether the actor takes part in this cycle.
    pub fn contains(&self, id: &ActorId) -> bool {
        self.actors.contains(id)
    }
}

impl fmt::Display for Deadlock {
    /// `a → b → c → a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for actor in &self.actors {
            write!(f, "{actor} → ")?;
        }
        match self.actors.first() {
            Some(first) => write!(f, "{first}"),
            None => Ok(()),
        }
    }
}

/// Who awaits whom: built from a live [`Monitor`](crate::Monitor), from one
/// [`Snapshot`], or from the snapshots of several procs so that cycles across them show.
///
/// ```
/// use plexus_core::{ActorId, ProcId};
/// use plexus_monitor::WaitForGraph;
///
/// let actor = |proc: &str, name: &str| ActorId::new(ProcId::new(proc, 1), name, 0);
/// let (a, b) = (actor("left", "a"), actor("right", "b"));
/// let mut graph = WaitForGraph::new();
/// graph.add_edge(a.clone(), b.clone());
/// graph.add_edge(b.clone(), a.clone());
/// let deadlocks = graph.deadlocks();
/// assert_eq!(deadlocks.len(), 1);
/// assert_eq!(deadlocks[0].actors, vec![a, b]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitForGraph {
    edges: BTreeMap<ActorId, BTreeSet<ActorId>>,
}

impl WaitForGraph {
    /// An empty graph.
    pub fn new() -> Self {
        WaitForGraph::default()
    }

    /// Records that `waiter` awaits a reply from `target`. Several asks between the same
    /// two actors make one edge.
    pub fn add_edge(&mut self, waiter: ActorId, target: ActorId) {
        self.edges.entry(waiter).or_default().insert(target);
    }

    /// The edges of one snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        WaitForGraph::from_snapshots([snapshot])
    }

    /// The edges of several snapshots together, e.g. one per proc, so that a cycle
    /// crossing procs is found.
    pub fn from_snapshots<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> Self {
        let mut graph = WaitForGraph::new();
        for snapshot in snapshots {
            for actor in &snapshot.actors {
                for ask in &actor.waiting_for {
                    graph.add_edge(actor.id.clone(), ask.target.clone());
                }
            }
        }
        graph
    }

    /// Every edge as `(waiter, target)`, ordered.
    pub fn edges(&self) -> impl Iterator<Item = (&ActorId, &ActorId)> {
        self.edges
            .iter()
            .flat_map(|(waiter, targets)| targets.iter().map(move |target| (waiter, target)))
    }

    /// Whether no actor awaits any other.
    pub fn is_empty(&self) -> bool {
        self.edges.values().all(BTreeSet::is_empty)
    }

    /// Every cycle, each once, ordered by its actors; at most [`MAX_DEADLOCKS`].
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        let nodes: Vec<&ActorId> = self
            .edges
            .iter()
            .flat_map(|(waiter, targets)| std::iter::once(waiter).chain(targets))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&ActorId, usize> =
            nodes.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut adjacency = vec![Vec::new(); nodes.len()];
        for (waiter, target) in self.edges() {
            if let (Some(&from), Some(&to)) = (index.get(waiter), index.get(target)) {
                adjacency[from].push(to);
            }
        }
        let (cycles, cut) = elementary_cycles(&adjacency, MAX_DEADLOCKS);
        if cut {
            tracing::warn!(
                limit = MAX_DEADLOCKS,
                "wait-for graph has more cycles than reported"
            );
        }
        let mut deadlocks: Vec<Deadlock> = cycles
            .into_iter()
            .map(|cycle| Deadlock {
                actors: cycle.into_iter().map(|i| nodes[i].clone()).collect(),
            })
            .collect();
        deadlocks.sort();
        deadlocks
    }
}

/// Every elementary cycle of a graph whose node order is the id order, each starting at
/// its smallest node, and whether the search stopped at `limit`.
fn elementary_cycles(adjacency: &[Vec<usize>], limit: usize) -> (Vec<Vec<usize>>, bool) {
    let mut cycles = Vec::new();
    for mut component in strongly_connected(adjacency) {
        component.sort_unstable();
        let cut = cycles_in_component(adjacency, &component, limit, &mut cycles);
        if cut {
            return (cycles, true);
        }
    }
    (cycles, false)
}

/// Adds the cycles of one strongly connected component; returns whether `limit` was hit.
fn cycles_in_component(
    adjacency: &[Vec<usize>],
    component: &[usize],
    limit: usize,
    cycles: &mut Vec<Vec<usize>>,
) -> bool {
    // Re-index the component 0..k in ascending order, keeping only its inner edges.
    let local: BTreeMap<usize, usize> = component
        .iter()
        .enumerate()
        .map(|(local, &global)| (global, local))
        .collect();
    let inner: Vec<Vec<usize>> = component
        .iter()
        .map(|&global| {
            let mut out: Vec<usize> = adjacency[global]
                .iter()
                .filter_map(|to| local.get(to).copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    if component.len() == 1 && inner[0].is_empty() {
        return false;
    }
    let mut found = Vec::new();
    let cut = if inner.iter().all(|out| out.len() == 1) {
        found.push(read_ring(&inner));
        false
    } else {
        circuits(&inner, limit.saturating_sub(cycles.len()), &mut found)
    };
    for cycle in found {
        if cycles.len() >= limit {
            return true;
        }
        cycles.push(cycle.into_iter().map(|i| component[i]).collect());
    }
    cut
}

/// The one cycle of a strongly connected component where every node has one out-edge,
/// read from node 0 (its smallest).
fn read_ring(inner: &[Vec<usize>]) -> Vec<usize> {
    let mut ring = vec![0];
    let mut at = inner[0][0];
    while at != 0 && ring.len() < inner.len() {
        ring.push(at);
        at = inner[at][0];
    }
    ring
}

/// Enumerates the elementary circuits of a (component) graph, each from its smallest node;
/// returns whether it stopped at `limit`.
fn circuits(inner: &[Vec<usize>], limit: usize, found: &mut Vec<Vec<usize>>) -> bool {
    let k = inner.len();
    let mut reverse = vec![Vec::new(); k];
    for (from, targets) in inner.iter().enumerate() {
        for &to in targets {
            reverse[to].push(from);
        }
    }
    for start in 0..k {
        // Cycles whose smallest node is `start` lie among nodes ≥ start that `start`
        // reaches and that reach `start`.
        let forward = reach(inner, start);
        let backward = reach(&reverse, start);
        let allowed: Vec<bool> = (0..k)
            .map(|v| v >= start && forward[v] && backward[v])
            .collect();
        if circuits_from(inner, start, &allowed, limit, found) {
            return true;
        }
    }
    false
}

/// Nodes ≥ `start` reachable from `start` through nodes ≥ `start`.
fn reach(edges: &[Vec<usize>], start: usize) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![start];
    seen[start] = true;
    while let Some(v) = stack.pop() {
        for &w in &edges[v] {
            if w >= start && !seen[w] {
                seen[w] = true;
                stack.push(w);
            }
        }
    }
    seen
}

struct Frame {
    node: usize,
    next_edge: usize,
    closed_cycle: bool,
}

/// The circuits through `start` within `allowed`, by depth-first search with Johnson's
/// blocking: a node that led to no cycle stays blocked until a node it depends on is
/// unblocked, which keeps the search proportional to the number of cycles.
fn circuits_from(
    inner: &[Vec<usize>],
    start: usize,
    allowed: &[bool],
    limit: usize,
    found: &mut Vec<Vec<usize>>,
) -> bool {
    let k = inner.len();
    let mut blocked = vec![false; k];
    let mut blocked_by: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut path = vec![start];
    blocked[start] = true;
    let mut frames = vec![Frame {
        node: start,
        next_edge: 0,
        closed_cycle: false,
    }];
    while let Some(frame) = frames.last_mut() {
        let v = frame.node;
        if let Some(&w) = inner[v].get(frame.next_edge) {
            frame.next_edge += 1;
            if !allowed[w] {
                continue;
            }
            if w == start {
                frame.closed_cycle = true;
                if found.len() >= limit {
                    return true;
                }
                found.push(path.clone());
            } else if !blocked[w] {
                blocked[w] = true;
                path.push(w);
                frames.push(Frame {
                    node: w,
                    next_edge: 0,
                    closed_cycle: false,
                });
            }
            continue;
        }
        let closed = frame.closed_cycle;
        frames.pop();
        path.pop();
        if closed {
            unblock(v, &mut blocked, &mut blocked_by);
        } else {
            for &w in &inner[v] {
                if allowed[w] && !blocked_by[w].contains(&v) {
                    blocked_by[w].push(v);
                }
            }
        }
        if let Some(parent) = frames.last_mut() {
            parent.closed_cycle |= closed;
        }
    }
    false
}

fn unblock(node: usize, blocked: &mut [bool], blocked_by: &mut [Vec<usize>]) {
    let mut pending = vec![node];
    while let Some(v) = pending.pop() {
        blocked[v] = false;
        for w in std::mem::take(&mut blocked_by[v]) {
            if blocked[w] {
                pending.push(w);
            }
        }
    }
}

/// Tarjan's strongly connected components, iteratively.
fn strongly_connected(adjacency: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = adjacency.len();
    let mut order = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut components = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(call) = calls.last_mut() {
            let v = call.0;
            if let Some(&w) = adjacency[v].get(call.1) {
                call.1 += 1;
                if order[w] == UNSEEN {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::ProcId;

    fn id(n: usize) -> ActorId {
        ActorId::new(ProcId::new("graph", 0), format!("a{n:02}"), n as u64)
    }

    fn graph(edges: &[(usize, usize)]) -> WaitForGraph {
        let mut graph = WaitForGraph::new();
        for &(from, to) in edges {
            graph.add_edge(id(from), id(to));
        }
        graph
    }

    fn as_numbers(deadlocks: &[Deadlock]) -> Vec<Vec<u64>> {
        deadlocks
            .iter()
            .map(|d| d.actors.iter().map(ActorId::index).collect())
            .collect()
    }

    /// Simple cycles by brute force: from each start, every simple path through larger
    /// nodes that returns to the start.
    fn brute_force(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<u64>> {
        let mut adjacency = vec![BTreeSet::new(); n];
        for &(from, to) in edges {
            adjacency[from].insert(to);
        }
        let mut cycles = Vec::new();
        for start in 0..n {
            let mut stack = vec![vec![start]];
            while let Some(path) = stack.pop() {
                let Some(&last) = path.last() else { continue };
                for &next in &adjacency[last] {
                    if next == start {
                        cycles.push(path.iter().map(|&v| v as u64).collect());
                    } else if next > start && !path.contains(&next) {
                        let mut longer = path.clone();
                        longer.push(next);
                        stack.push(longer);
                    }
                }
            }
        }
        cycles.sort();
        cycles
    }

    /// A chain of waits without a cycle is no deadlock.
    #[test]
    fn chain_is_not_a_deadlock() {
        assert!(graph(&[(0, 1), (1, 2), (2, 3)]).deadlocks().is_empty());
        assert!(WaitForGraph::new().deadlocks().is_empty());
    }

    /// Rings are reported once, starting at the smallest id, whatever edge came first.
    #[test]
    fn rings_start_at_the_smallest_id() {
        let deadlocks =
            graph(&[(5, 3), (3, 9), (9, 5), (1, 2), (2, 1), (7, 7), (4, 5)]).deadlocks();
        assert_eq!(
            as_numbers(&deadlocks),
            vec![vec![1, 2], vec![3, 9, 5], vec![7]]
        );
        assert_eq!(
            deadlocks[0].to_string(),
            "graph#0/a01.1 → graph#0/a02.2 → graph#0/a01.1"
        );
    }

    /// A complete graph of four nodes has 20 elementary cycles (6 pairs, 8 triangles, 6
    /// four-cycles), each reported once.
    #[test]
    fn complete_graph_reports_every_cycle_once() {
        let edges: Vec<(usize, usize)> = (0..4)
            .flat_map(|a| (0..4).filter(move |&b| b != a).map(move |b| (a, b)))
            .collect();
        let found = as_numbers(&graph(&edges).deadlocks());
        assert_eq!(found.len(), 20);
        assert_eq!(found, brute_force(4, &edges));
    }

    /// On random graphs the search finds exactly the cycles brute force finds.
    #[test]
    fn matches_brute_force_on_random_graphs() {
        let seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let n = 1 + (next() % 7) as usize;
            let density = next() % 100;
            let mut adjacency = vec![Vec::new(); n];
            let mut edges = Vec::new();
            for (from, targets) in adjacency.iter_mut().enumerate() {
                for to in 0..n {
                    if next() % 100 < density {
                        targets.push(to);
                        edges.push((from, to));
                    }
                }
            }
            let (cycles, cut) = elementary_cycles(&adjacency, usize::MAX);
            let mut found: Vec<Vec<u64>> = cycles
                .into_iter()
                .map(|cycle| cycle.into_iter().map(|v| v as u64).collect())
                .collect();
            found.sort();
            let expected = brute_force(n, &edges);
            assert!(!cut);
            assert!(
                found == expected,
                "seed {seed:#x}, round {round}: {} cycles found, {} expected, edges {edges:?}",
                found.len(),
                expected.len()
            );
            if expected.len() <= MAX_DEADLOCKS {
                assert_eq!(as_numbers(&graph(&edges).deadlocks()), expected);
            }
        }
    }

    /// A dense tangle is cut at the limit instead of running away.
    #[test]
    fn search_stops_at_the_limit() {
        let n = 9;
        let adjacency: Vec<Vec<usize>> = (0..n)
            .map(|a| (0..n).filter(|&b| b != a).collect())
            .collect();
        let (cycles, cut) = elementary_cycles(&adjacency, 50);
        assert!(cut);
        assert_eq!(cycles.len(), 50);
    }

    /// A long ring is walked without recursion.
    #[test]
    fn long_ring_needs_no_deep_stack() {
        let n = 100_000;
        let edges: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        let adjacency: Vec<Vec<usize>> = {
            let mut adjacency = vec![Vec::new(); n];
            for (from, to) in edges {
                adjacency[from].push(to);
            }
            adjacency
        };
        let (cycles, cut) = elementary_cycles(&adjacency, 10);
        assert!(!cut);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n);
    }
}
