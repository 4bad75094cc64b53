//! `vocab`: maps tokens to ids 0..n in sorted token order and rewrites every file as ids.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{Params, RunContext, Stage, StageOutput, csv_bytes, params_of};
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, IdFile, Vocabulary};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vocab {}

impl Params for Vocab {}

#[derive(Serialize)]
struct Row<'a> {
    id: usize,
    token: &'a str,
    count: u64,
}

impl Stage for Vocab {
    fn kind(&self) -> StageKind {
        StageKind::Vocab
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, _ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let set = inputs[0].tokens()?;
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for t in set.files.iter().flat_map(|f| &f.tokens) {
            *counts.entry(t).or_default() += 1;
        }
        if counts.is_empty() {
            bail!("no tokens: the selected instruments play no notes in any file");
        }
        let ids: BTreeMap<&str, u32> = counts.keys().zip(0u32..).map(|(t, i)| (*t, i)).collect();
        let files = set
            .files
            .iter()
            .map(|f| IdFile {
                path: f.path.clone(),
                tempo: f.tempo,
                ids: f.tokens.iter().map(|t| ids[t.as_str()]).collect(),
                origin: f.origin.clone(),
            })
            .collect();
        let rows = counts
            .iter()
            .enumerate()
            .map(|(id, (token, &count))| Row { id, token, count });
        let report = csv_bytes(rows)?;
        Ok(StageOutput {
            summary: serde_json::json!({ "size": counts.len() }),
            files: vec![ReportFile {
                name: "vocab.csv".into(),
                bytes: report,
            }],
            artifact: Artifact::Vocab(Vocabulary {
                programs: set.programs.clone(),
                scheme: set.scheme,
                tokens: counts.keys().map(|t| t.to_string()).collect(),
                counts: counts.values().copied().collect(),
                files,
            }),
        })
    }
}
