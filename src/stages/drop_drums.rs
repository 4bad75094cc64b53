//! `drop_drums`: removes every event on MIDI channel 10 (index 9), the General MIDI percussion channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{Params, RunContext, Stage, StageOutput, params_of};
use crate::artifact::{Artifact, Event, Message, MidiCorpus, Song};

/// GM channel 10, counted from 0.
pub const DRUM_CHANNEL: u8 = 9;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropDrums {}

impl Params for DropDrums {}

impl Stage for DropDrums {
    fn kind(&self) -> StageKind {
        StageKind::DropDrums
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let corpus = inputs[0].midi()?;
        let mut removed = 0usize;
        let mut files_with_drums = 0usize;
        let mut drums_only = Vec::new();
        let files: Vec<Song> = corpus
            .files
            .iter()
            .map(|song| {
                let events: Vec<_> = song
                    .events
                    .iter()
                    .filter(|e| e.channel != DRUM_CHANNEL)
                    .copied()
                    .collect();
                let dropped = song.events.len() - events.len();
                removed += dropped;
                files_with_drums += usize::from(dropped > 0);
                let notes = |events: &[Event]| {
                    events
                        .iter()
                        .any(|e| matches!(e.message, Message::NoteOn { .. }))
                };
                if notes(&song.events) && !notes(&events) {
                    drums_only.push(song.path.clone());
                }
                Song {
                    path: song.path.clone(),
                    ticks_per_beat: song.ticks_per_beat,
                    tempo: song.tempo,
                    events,
                }
            })
            .collect();
        if !drums_only.is_empty() {
            ctx.warn(format!(
                "{} file(s) hold only drums and add nothing to train on: {}",
                drums_only.len(),
                drums_only.join(", ")
            ));
        }
        Ok(StageOutput {
            summary: serde_json::json!({
                "events_removed": removed,
                "files_with_drums": files_with_drums,
                "drums_only_files": drums_only,
            }),
            artifact: Artifact::Midi(MidiCorpus { files }),
            files: Vec::new(),
        })
    }
}
