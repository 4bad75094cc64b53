//! Reading Standard MIDI Files into the pipeline's own event model ([`Song`]), with midly.
//!
//! Only what the stages read survives: note-ons, note-offs and program changes, on absolute ticks, every track merged
//! into one list. Format 0 and 1 tracks play together; format 2 tracks are independent sequences and are laid end to
//! end, so none of their notes collide.

use midly::{Format, MidiMessage, Smf, Timing, TrackEventKind};

use crate::artifact::{Event, Message, Song};

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
