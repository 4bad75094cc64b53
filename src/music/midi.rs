//! Writing tokens back out as a Standard MIDI File, with midly. Reading files is [`crate::music::ingest`]'s job.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::music::tokens::{pitches_of, time_token, timeline};

/// Resolution of the files this tool writes.
pub const TICKS_PER_BEAT: u16 = 480;

/// A format-1 Standard MIDI File at `tempo` (µs per quarter note) playing `tokens` on channel 1 with GM `program`:
/// with time tokens (the timed scheme) as they say, else one after another, each `step_beats` long. Track 0 holds
/// the tempo, track 1 the notes.
pub fn write_tokens(
    tokens: &[String],
    program: u8,
    step_beats: f64,
    tempo: u32,
) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        (1..=crate::artifact::MAX_TEMPO).contains(&tempo),
        "a tempo of {tempo} µs per beat does not fit a MIDI file"
    );
    let step = (step_beats * f64::from(TICKS_PER_BEAT)).round() as u64;
    anyhow::ensure!(
        step >= 1,
        "a step of {step_beats} beats is shorter than one tick"
    );
    if let Some(bad) = tokens
        .iter()
        .find(|t| pitches_of(t).is_none() && time_token(t).is_none())
    {
        anyhow::bail!("`{bad}` is not a note, chord or time token");
    }
    let channel = u4::new(0);
    let mut notes = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TrackName(b"generated")),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Midi {
                channel,
                message: MidiMessage::ProgramChange {
                    program: u7::new(program & 0x7f),
                },
            },
        },
    ];
    let mut last = 0;
    for (tick, on, key) in note_events(tokens, step_beats, step) {
        let delta = u32::try_from(tick - last).ok().filter(|&d| d < 1 << 28);
        let delta =
            delta.ok_or_else(|| anyhow::anyhow!("the piece is too long for a MIDI file"))?;
        last = tick;
        let key = u7::new(key);
        let message = if on {
            MidiMessage::NoteOn {
                key,
                vel: u7::new(90),
            }
        } else {
            MidiMessage::NoteOff {
                key,
                vel: u7::new(0),
            }
        };
        notes.push(TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi { channel, message },
        });
    }
    let end = |delta| TrackEvent {
        delta: u28::new(delta),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    };
    notes.push(end(0));
    let tempo = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(tempo))),
        },
        end(0),
    ];
    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(TICKS_PER_BEAT))),
        tracks: vec![tempo, notes],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)?;
    Ok(bytes)
}

/// Every note-on and note-off of `tokens` (checked to be notes, chords or time tokens) as `(tick, is_note_on, key)`,
/// in order: note-offs sort before note-ons on the same tick, so repeated notes re-strike.
fn note_events(tokens: &[String], step_beats: f64, step: u64) -> Vec<(u64, bool, u8)> {
    let mut events = Vec::new();
    if tokens.iter().any(|t| time_token(t).is_some()) {
        let ticks = |beats: f64| (beats * f64::from(TICKS_PER_BEAT)).round() as u64;
        for played in timeline(tokens, step_beats) {
            let start = ticks(played.beat);
            for k in played.keys {
                events.push((start, true, k));
                events.push((start + ticks(played.beats).max(1), false, k));
            }
        }
    } else {
        for (i, token) in tokens.iter().enumerate() {
            let keys = pitches_of(token).expect("checked by the caller");
            let start = i as u64 * step;
            for k in keys {
                events.push((start, true, k));
                events.push((start + step, false, k));
            }
        }
    }
    events.sort();
    events
}
