//! Reading Standard MIDI Files into the pipeline's own event model ([`Song`]), and writing tokens back out, with
//! midly.
//!
//! Only what the stages read survives: note-ons, note-offs and program changes, on absolute ticks, every track merged
//! into one list. Format 0 and 1 tracks play together; format 2 tracks are independent sequences and are laid end to
//! end, so none of their notes collide.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::artifact::{Event, Message, Song};
use crate::stages::tokenize::pitches_of;

/// Resolution of the files this tool writes.
pub const TICKS_PER_BEAT: u16 = 480;

/// Why a file could not be read as MIDI.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MidiError(String);

/// Parses one file. `path` is only recorded in the result.
pub fn read_song(path: &str, bytes: &[u8]) -> Result<Song, MidiError> {
    let smf = Smf::parse(bytes).map_err(|e| MidiError(e.to_string()))?;
    let ticks_per_beat = match smf.header.timing {
        Timing::Metrical(t) => Some(t.as_int()),
        Timing::Timecode(..) => None,
    };
    let sequential = smf.header.format == Format::Sequential;
    let mut events = Vec::new();
    let mut track_start = 0u64;
    for track in &smf.tracks {
        let mut tick = track_start;
        for ev in track {
            tick += u64::from(ev.delta.as_int());
            if let TrackEventKind::Midi { channel, message } = ev.kind {
                let message = match message {
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => Message::NoteOn {
                        key: key.as_int(),
                        velocity: vel.as_int(),
                    },
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        Message::NoteOff { key: key.as_int() }
                    }
                    MidiMessage::ProgramChange { program } => Message::ProgramChange {
                        program: program.as_int(),
                    },
                    _ => continue,
                };
                events.push(Event {
                    tick,
                    channel: channel.as_int(),
                    message,
                });
            }
        }
        if sequential {
            track_start = tick;
        }
    }
    // Stable: events on the same tick keep track order, then file order, so a program change written before a note
    // in the same track still applies to it.
    events.sort_by_key(|e| e.tick);
    Ok(Song {
        path: path.to_string(),
        ticks_per_beat,
        events,
    })
}

/// A format-1 Standard MIDI File at 120 bpm playing `tokens` one after another, each `step_beats` long, on channel 1
/// with GM `program`. Track 0 holds the tempo, track 1 the notes.
pub fn write_tokens(tokens: &[String], program: u8, step_beats: f64) -> anyhow::Result<Vec<u8>> {
    let step = (step_beats * f64::from(TICKS_PER_BEAT)).round() as u64;
    anyhow::ensure!(
        step >= 1,
        "a step of {step_beats} beats is shorter than one tick"
    );
    let channel = u4::new(0);
    // (tick, is_note_on, key): note-offs sort before note-ons on the same tick, so repeated notes re-strike.
    let mut events: Vec<(u64, bool, u8)> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let keys = pitches_of(token)
            .ok_or_else(|| anyhow::anyhow!("`{token}` is not a note or chord token"))?;
        let start = i as u64 * step;
        for k in keys {
            events.push((start, true, k));
            events.push((start + step, false, k));
        }
    }
    events.sort();
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
    for (tick, on, key) in events {
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
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(500_000))),
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
