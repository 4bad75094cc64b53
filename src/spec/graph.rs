//! The stage graph: a petgraph DAG checked for unknown inputs, wrong input kinds and cycles, in run order.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Topo};
use toml::Spanned;

use crate::spec::diagnostic::{Diagnostic, Diagnostics, Source, did_you_mean};
use crate::stages::{Stage, StageKind, StageParams};

/// A stage as declared: its name, its configured implementation and its inputs, with spans for messages.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub kind: StageKind,
    /// `None` only while checking, when the parameters were invalid (the wiring is still checked).
    pub(crate) built: Option<StageParams>,
    pub inputs: Vec<Spanned<String>>,
    /// Span of the stage's table header / key.
    pub span: Range<usize>,
}

impl StageSpec {
    pub fn kind(&self) -> StageKind {
        self.kind
    }

    /// The configured stage; every stage of a checked experiment has one.
    pub fn stage(&self) -> &dyn Stage {
        self.params().as_stage()
    }

    /// The stage's typed parameters; every stage of a checked experiment has them.
    pub fn params(&self) -> &StageParams {
        self.built
            .as_ref()
            .expect("a checked experiment has every stage built")
    }

    pub(crate) fn params_mut(&mut self) -> &mut StageParams {
        self.built
            .as_mut()
            .expect("a checked experiment has every stage built")
    }
}

/// The stages and their edges (input → consumer). Node weights index into [`Graph::stages`].
#[derive(Debug, Clone)]
pub struct Graph {
    pub stages: Vec<StageSpec>,
    dag: DiGraph<usize, ()>,
    order: Vec<usize>,
}

/// A problem when `spec` is given more or fewer inputs than its kind takes.
fn check_arity(spec: &StageSpec, source: &Source, diags: &mut Diagnostics) {
    let kind = spec.kind();
    let expected = kind.inputs();
    if spec.inputs.len() == expected.len() {
        return;
    }
    let want = match expected {
        [] => "no inputs".to_string(),
        [one] => format!("one input ({})", alternatives(one)),
        many => format!("{} inputs", many.len()),
    };
    let hint = match expected {
        [] => "remove `inputs`".to_string(),
        [one] => format!(
            "write `inputs = [\"NAME\"]` naming a stage of kind `{}`",
            StageKind::producers_of(one).join("` or `")
        ),
        _ => "list one stage per input".to_string(),
    };
    let given = match spec.inputs.len() {
        0 => "none is".to_string(),
        1 => "1 is".to_string(),
        n => format!("{n} are"),
    };
    diags.push(
        Diagnostic::new(format!(
            "stage `{}` ({kind}) takes {want}, but {given} given",
            spec.name
        ))
        .at(source, spec.span.clone())
        .key(format!("stages.{}.inputs", spec.name))
        .hint(hint),
    );
}

/// The problem of an input naming no stage, with the nearest name (or every name).
fn unknown_input(
    spec: &StageSpec,
    input: &Spanned<String>,
    stages: &[StageSpec],
    source: &Source,
    diags: &mut Diagnostics,
) {
    let names = stages.iter().map(|s| s.name.as_str());
    let hint = did_you_mean(input.get_ref(), names.clone())
        .unwrap_or_else(|| format!("the stages are: {}", names.collect::<Vec<_>>().join(", ")));
    diags.push(
        Diagnostic::new(format!(
            "stage `{}` takes input from `{}`, but there is no stage named `{}`",
            spec.name,
            input.get_ref(),
            input.get_ref()
        ))
        .at(source, input.span())
        .key(format!("stages.{}.inputs", spec.name))
        .hint(hint),
    );
}

/// A problem when the stage feeding `spec`'s input `slot` produces what that input does not take.
fn check_input_kind(
    spec: &StageSpec,
    slot: usize,
    input: &Spanned<String>,
    from: &StageSpec,
    source: &Source,
    diags: &mut Diagnostics,
) {
    let kind = spec.kind();
    let produced = from.kind().output();
    let Some(&wanted) = kind.inputs().get(slot) else {
        return;
    };
    if wanted.contains(&produced) {
        return;
    }
    diags.push(
        Diagnostic::new(format!(
            "stage `{}` ({kind}) needs {} as input, but `{}` ({}) produces {produced}",
            spec.name,
            alternatives(wanted),
            from.name,
            from.kind()
        ))
        .at(source, input.span())
        .key(format!("stages.{}.inputs", spec.name))
        .hint(format!(
            "feed it from a stage of kind {}",
            StageKind::producers_of(wanted)
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    );
}

impl Graph {
    /// Wires the stages together, reporting every unknown input, wrong arity or kind, and cycle into `diags`.
    /// An input naming one of `broken` (declared, but too broken to build, and already reported) is no new problem.
    pub fn build(
        stages: Vec<StageSpec>,
        broken: &[String],
        source: &Source,
        diags: &mut Diagnostics,
    ) -> Self {
        let mut dag = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| dag.add_node(i)).collect();
        let by_name: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();

        for (i, spec) in stages.iter().enumerate() {
            check_arity(spec, source, diags);
            for (slot, input) in spec.inputs.iter().enumerate() {
                let Some(&from) = by_name.get(input.get_ref().as_str()) else {
                    if !broken.contains(input.get_ref()) {
                        unknown_input(spec, input, &stages, source, diags);
                    }
                    continue;
                };
                dag.add_edge(nodes[from], nodes[i], ());
                check_input_kind(spec, slot, input, &stages[from], source, diags);
            }
        }

        let cyclic = report_cycles(&dag, &stages, source, diags);
        let order = if cyclic {
            Vec::new()
        } else {
            let mut topo = Topo::new(&dag);
            let mut order = Vec::with_capacity(stages.len());
            while let Some(n) = topo.next(&dag) {
                order.push(dag[n]);
            }
            order
        };
        Graph { stages, dag, order }
    }

    /// Stage indices in an order where every input comes before its consumers.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The prefix of a stage's report files: `<stage>.` when an earlier stage of the same kind (in the file's order)
    /// writes the same names, else none — so the first `sample` keeps `generated.mid` whatever follows it (a
    /// `sample` of the n-gram floor writes `floor_music.generated.mid`).
    pub fn file_prefix(&self, stage: &str) -> String {
        let Some(i) = self.index_of(stage) else {
            return String::new();
        };
        let kind = self.stages[i].kind();
        if self.stages[..i].iter().any(|s| s.kind() == kind) {
            format!("{stage}.")
        } else {
            String::new()
        }
    }

    /// Indices of the stages feeding stage `i`, in the order of its `inputs`.
    pub fn inputs_of(&self, i: usize) -> Vec<usize> {
        self.stages[i]
            .inputs
            .iter()
            .filter_map(|n| self.index_of(n.get_ref()))
            .collect()
    }

    /// Stage `i` and every stage downstream of it.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut dfs = Dfs::new(&self.dag, NodeIndex::new(i));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(&self.dag) {
            out.push(self.dag[n]);
        }
        out
    }

    /// One line per stage, in run order: `name  kind  <- inputs`.
    pub fn to_text(&self, title: &str) -> String {
        let width = self.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let kind_width = self
            .stages
            .iter()
            .map(|s| s.kind().name().len())
            .max()
            .unwrap_or(0);
        let mut out = format!("{title}: {} stages\n", self.stages.len());
        for &i in &self.order {
            let s = &self.stages[i];
            let inputs: Vec<&str> = s.inputs.iter().map(|n| n.get_ref().as_str()).collect();
            let arrow = if inputs.is_empty() {
                String::new()
            } else {
                format!("  <- {}", inputs.join(", "))
            };
            let line = format!(
                "  {:width$}  {:kind_width$}{arrow}",
                s.name,
                s.kind().name()
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// Graphviz: `pipeline graph FILE --format dot | dot -Tsvg > graph.svg`.
    pub fn to_dot(&self, title: &str) -> String {
        let mut g = DiGraph::<String, &str>::new();
        let nodes: Vec<_> = self
            .stages
            .iter()
            .map(|s| g.add_node(format!("{}\n{}", s.name, s.kind())))
            .collect();
        for e in self.dag.raw_edges() {
            g.add_edge(nodes[self.dag[e.source()]], nodes[self.dag[e.target()]], "");
        }
        let dot = petgraph::dot::Dot::with_attr_getters(
            &g,
            &[petgraph::dot::Config::EdgeNoLabel],
            &|_, _| String::new(),
            &|_, _| "shape=box".to_string(),
        );
        format!("// {title}\n{dot}")
    }
}

/// Reports each cycle as `a -> b -> a`; returns whether there was one.
/// `a trained model or an n-gram model`: what an input slot accepts, in words.
fn alternatives(kinds: &[crate::artifact::ArtifactKind]) -> String {
    kinds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

fn report_cycles(
    dag: &DiGraph<usize, ()>,
    stages: &[StageSpec],
    source: &Source,
    diags: &mut Diagnostics,
) -> bool {
    let mut any = false;
    for scc in tarjan_scc(dag) {
        let self_loop = scc.len() == 1 && dag.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        any = true;
        // Start from the stage declared first so the message is stable.
        let start = *scc
            .iter()
            .min_by_key(|n| dag[**n])
            .expect("non-empty component");
        let path = cycle_through(dag, start, &scc);
        let names: Vec<&str> = path.iter().map(|n| stages[dag[*n]].name.as_str()).collect();
        diags.push(
            Diagnostic::new(format!("the stages form a cycle: {}", names.join(" -> ")))
                .at(source, stages[dag[start]].span.clone())
                .key(format!("stages.{}.inputs", stages[dag[start]].name))
                .hint("a stage cannot depend on its own output; remove one of these inputs"),
        );
    }
    any
}

/// The shortest path `start -> … -> start` inside a strongly connected component (breadth-first).
fn cycle_through(dag: &DiGraph<usize, ()>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in dag.neighbors_directed(n, Direction::Outgoing) {
            if !scc.contains(&next) {
                continue;
            }
            if next == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev[&cur];
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(next) {
                e.insert(n);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}
