//! Reading MIDI files from the wild into the pipeline's event model ([`Song`]), recovering what other readers drop.
//!
//! Layers, outermost first: containers (gzip, RIFF `RMID`, bytes before the header); the chunk structure (walked
//! here, so unknown chunks, wrong track counts, short or overlong length fields and trailing bytes are noticed and
//! reported instead of silently ending the file); and the events of each track, which midly parses. midly's lenient
//! mode stops a track at its first bad event without an error (data bytes above 127 are common in real files), so
//! every track is checked for an early stop: a channel message with out-of-range data bytes is clamped (as mido's
//! `clip` does) and reading goes on after it. Everything repaired or dropped is listed in [`Ingest::repairs`].
//!
//! Only what the stages read survives: note-ons, note-offs and program changes on absolute ticks, every track merged
//! into one list. Format 0 and 1 tracks play together; format 2 tracks are independent sequences laid end to end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use midly::num::u7;
use midly::{EventIter, Format, MetaMessage, MidiMessage, Timing, TrackEventKind};

use crate::artifact::{DEFAULT_TEMPO, Event, Message, Song};

/// A file that could not be read at all; the message says why, in a few words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MidiError(String);

fn fail<T>(why: impl Into<String>) -> Result<T, MidiError> {
    Err(MidiError(why.into()))
}

/// A file read, with everything that had to be repaired or dropped, and what is unusual but legal.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub song: Song,
    /// One short sentence per problem, e.g. `track 2: 20 data bytes above 127 clamped to 127`.
    pub repairs: Vec<String>,
    /// Unusual but nothing lost: a container unwrapped, an unknown chunk skipped as the standard says, hanging notes.
    pub notes: Vec<String>,
}

/// Where [`read_song`] writes what it finds.
#[derive(Default)]
struct Findings {
    repairs: Vec<String>,
    notes: Vec<String>,
}

/// Decompressed gzip files larger than this are refused: a small file must not make the tool allocate gigabytes.
const MAX_DECOMPRESSED: u64 = 256 << 20;
/// How far into a file the MIDI header is looked for (after e.g. a MacBinary wrapper).
const HEADER_SEARCH: usize = 4096;

/// Parses one file. `path` is only recorded in the result.
pub fn read_song(path: &str, bytes: &[u8]) -> Result<Ingest, MidiError> {
    let mut found = Findings::default();
    let smf = unwrap_container(bytes, &mut found)?;
    let layout = split_chunks(&smf, &mut found)?;
    let ticks_per_beat = match layout.timing {
        Timing::Metrical(t) => Some(t.as_int()),
        Timing::Timecode(..) => None,
    };
    let sequential = layout.format == Format::Sequential;
    let mut events = Vec::new();
    let mut track_start = 0u64;
    let mut wire_bytes = 0usize;
    let mut tempo = FirstTempo::default();
    for (n, data) in layout.tracks.iter().enumerate() {
        let end = read_track(
            data,
            n + 1,
            track_start,
            &mut events,
            &mut tempo,
            &mut found.repairs,
            &mut wire_bytes,
        );
        if sequential {
            track_start = end;
        }
    }
    if tempo.zeros > 0 {
        found.repairs.push(format!(
            "ignored {} tempo event(s) of 0 µs per beat, which no player can play",
            tempo.zeros
        ));
    }
    if wire_bytes > 0 {
        // Once per file: a file from a MIDI recorder can hold thousands of clock bytes.
        found.repairs.push(format!(
            "skipped {wire_bytes} system common or real-time message(s) (status F1–FE), which belong on a MIDI \
             cable, not in a file"
        ));
    }
    // Stable: events on the same tick keep track order, then file order, so a program change written before a note
    // in the same track still applies to it.
    events.sort_by_key(|e| e.tick);
    if let Some(note) = hanging_notes(&events) {
        found.notes.push(note);
    }
    Ok(Ingest {
        song: Song {
            path: path.to_string(),
            ticks_per_beat,
            tempo: tempo.first.map_or(DEFAULT_TEMPO, |(_, t)| t),
            events,
        },
        repairs: found.repairs,
        notes: found.notes,
    })
}

/// The Standard MIDI File inside `bytes`: gunzipped, unwrapped from RIFF, or found after leading bytes.
fn unwrap_container<'a>(bytes: &'a [u8], found: &mut Findings) -> Result<Cow<'a, [u8]>, MidiError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(bytes)
            .take(MAX_DECOMPRESSED + 1)
            .read_to_end(&mut out);
        if let Err(e) = read {
            return fail(format!("gzip-compressed, but it does not decompress: {e}"));
        }
        if out.len() as u64 > MAX_DECOMPRESSED {
            return fail(format!(
                "gzip-compressed and larger than {} MiB once decompressed",
                MAX_DECOMPRESSED >> 20
            ));
        }
        found.notes.push("gzip-compressed: decompressed".into());
        let inner = unwrap_container(&out, found)?.into_owned();
        return Ok(Cow::Owned(inner));
    }
    if bytes.starts_with(b"RIFF") {
        return riff_data(bytes).map(Cow::Borrowed).inspect(|_| {
            found
                .notes
                .push("RIFF (RMID) container: read the MIDI data inside".into());
        });
    }
    match find(&bytes[..bytes.len().min(HEADER_SEARCH)], b"MThd") {
        Some(0) => Ok(Cow::Borrowed(bytes)),
        Some(k) => {
            found
                .repairs
                .push(format!("skipped {k} bytes before the MIDI header"));
            Ok(Cow::Borrowed(&bytes[k..]))
        }
        None if bytes.is_empty() => fail("the file is empty"),
        None => {
            let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02X}")).collect();
            fail(format!(
                "not a MIDI file: no `MThd` header (it starts with {})",
                start.join(" ")
            ))
        }
    }
}

/// The `data` chunk of a RIFF `RMID` file.
fn riff_data(bytes: &[u8]) -> Result<&[u8], MidiError> {
    if bytes.get(8..12) != Some(b"RMID") {
        return fail("a RIFF file, but not RIFF MIDI (`RMID`)");
    }
    let mut pos = 12;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let start = pos + 8;
        let end = start.saturating_add(len).min(bytes.len());
        if &head[..4] == b"data" {
            return Ok(&bytes[start..end]);
        }
        // RIFF chunks are padded to even lengths.
        pos = end + (len & 1);
    }
    fail("a RIFF MIDI file without a `data` chunk")
}

/// Header fields and the byte ranges of the tracks.
struct Layout<'a> {
    format: Format,
    timing: Timing,
    tracks: Vec<&'a [u8]>,
}

/// Walks the chunks of a Standard MIDI File starting at its `MThd`.
fn split_chunks<'a>(smf: &'a [u8], found: &mut Findings) -> Result<Layout<'a>, MidiError> {
    if smf.len() < 14 {
        return fail(format!(
            "the file ends inside its header ({} bytes)",
            smf.len()
        ));
    }
    let header_len = be_u32(&smf[4..8]) as usize;
    let header_end = 8usize.saturating_add(header_len).min(smf.len());
    let (header, _) =
        midly::parse(&smf[..header_end]).map_err(|e| MidiError(format!("bad header: {e}")))?;
    let declared = u16::from_be_bytes([smf[10], smf[11]]) as usize;
    let mut tracks: Vec<(usize, usize)> = Vec::new();
    let mut pos = header_end;
    while pos < smf.len() {
        let rest = &smf[pos..];
        if rest.len() < 8 {
            found
                .repairs
                .push(format!("ignored {} bytes after the last track", rest.len()));
            break;
        }
        let (id, len) = (&rest[..4], be_u32(&rest[4..8]) as usize);
        let start = pos + 8;
        if id == b"MTrk" {
            let end = start.saturating_add(len);
            if end > smf.len() {
                found.repairs.push(format!(
                    "track {} declares {len} bytes but the file ends after {}: read what is there",
                    tracks.len() + 1,
                    smf.len() - start
                ));
            }
            tracks.push((start, end.min(smf.len())));
            pos = end.min(smf.len());
            continue;
        }
        let plausible_id = id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ');
        if plausible_id && start.saturating_add(len) <= smf.len() {
            found.notes.push(format!(
                "skipped an unknown `{}` chunk ({len} bytes)",
                String::from_utf8_lossy(id)
            ));
            pos = start + len;
            continue;
        }
        // Not a chunk: the previous length field was wrong, or this is trailing data.
        match find(rest, b"MTrk") {
            Some(k) => {
                match tracks.last_mut() {
                    Some(last)
                        if last.1 == pos && !ends_with_end_of_track(&smf[last.0..last.1]) =>
                    {
                        last.1 = pos + k;
                        found.repairs.push(format!(
                            "track {}'s length field is {k} bytes short: read on to the next track",
                            tracks.len()
                        ));
                    }
                    _ => found
                        .repairs
                        .push(format!("skipped {k} unreadable bytes at offset {pos}")),
                }
                pos += k;
            }
            None => {
                found
                    .repairs
                    .push(format!("ignored {} bytes after the last track", rest.len()));
                break;
            }
        }
    }
    if tracks.is_empty() {
        return fail(format!("no track chunks (the header declares {declared})"));
    }
    if declared != tracks.len() {
        found.repairs.push(format!(
            "the header declares {declared} tracks; the file holds {}",
            tracks.len()
        ));
    }
    Ok(Layout {
        format: header.format,
        timing: header.timing,
        tracks: tracks.into_iter().map(|(s, e)| &smf[s..e]).collect(),
    })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn ends_with_end_of_track(track: &[u8]) -> bool {
    track.ends_with(&[0xff, 0x2f, 0x00])
}

/// Reads one track's events into `out`, from tick `start`; returns the tick where the track ends. System common and
/// real-time messages skipped on the way are counted in `wire_bytes`.
/// The earliest tempo event of a file, over all its tracks (a format 1 file keeps its tempo map in track 1, but not
/// every writer does).
#[derive(Default)]
struct FirstTempo {
    /// (tick, µs per beat).
    first: Option<(u64, u32)>,
    /// Tempo events of 0 µs per beat, which are skipped.
    zeros: usize,
}

fn read_track(
    data: &[u8],
    n: usize,
    start: u64,
    out: &mut Vec<Event>,
    tempo: &mut FirstTempo,
    repairs: &mut Vec<String>,
    wire_bytes: &mut usize,
) -> u64 {
    let mut tick = start;
    let mut clamped = 0usize;
    let mut it = EventIter::new(data);
    loop {
        let (before, status) = (it.unread(), it.running_status());
        match it.next() {
            Some(Ok(ev)) => {
                tick += u64::from(ev.delta.as_int());
                match ev.kind {
                    TrackEventKind::Midi { channel, message } => {
                        if let Some(message) = message_of(message) {
                            out.push(Event {
                                tick,
                                channel: channel.as_int(),
                                message,
                            });
                        }
                    }
                    TrackEventKind::Meta(MetaMessage::Tempo(t)) => match t.as_int() {
                        0 => tempo.zeros += 1,
                        t if tempo.first.is_none_or(|(at, _)| tick < at) => {
                            tempo.first = Some((tick, t));
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            None if before.is_empty() => break,
            // Lenient midly ends the track at a bad event without saying so; `before` starts at that event.
            Some(Err(_)) | None => {
                // A status byte of the wire (clock, song position, …) where an event should start: skip it by its
                // length and read on. System common messages cancel running status; real-time ones leave it.
                if let Some(skip) = wire_message(before) {
                    tick += u64::from(skip.delta);
                    *wire_bytes += 1;
                    it = EventIter::new(&before[skip.len..]);
                    *it.running_status_mut() = if skip.realtime { status } else { None };
                    continue;
                }
                match repair_channel_event(before, status) {
                    Some(fixed) => {
                        tick += u64::from(fixed.delta);
                        clamped += fixed.clamped;
                        if let Some(message) = fixed.midi().and_then(message_of) {
                            out.push(Event {
                                tick,
                                channel: fixed.status & 0x0f,
                                message,
                            });
                        }
                        it = EventIter::new(&before[fixed.len..]);
                        *it.running_status_mut() = Some(fixed.status);
                    }
                    None => {
                        let at = data.len() - before.len();
                        let what = if at == 0 { "all" } else { "the last" };
                        repairs.push(format!(
                        "track {n}: could not read {what} {} of its {} bytes (from byte {at}): dropped",
                        before.len(),
                        data.len()
                    ));
                        break;
                    }
                }
            }
        }
    }
    if clamped > 0 {
        repairs.push(format!(
            "track {n}: {clamped} data bytes above 127 clamped to 127"
        ));
    }
    tick
}

fn message_of(message: MidiMessage) -> Option<Message> {
    Some(match message {
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
        _ => return None,
    })
}

/// A channel message whose data bytes were out of range, clamped.
struct Repaired {
    delta: u32,
    status: u8,
    data: [u8; 2],
    /// Bytes the event takes in the track.
    len: usize,
    clamped: usize,
}

impl Repaired {
    /// The message as midly would have read it with its data bytes in range; [`message_of`] then keeps what the
    /// stages use, the same way for repaired and intact events.
    fn midi(&self) -> Option<MidiMessage> {
        let [a, b] = self.data.map(u7::new);
        Some(match self.status >> 4 {
            0x8 => MidiMessage::NoteOff { key: a, vel: b },
            0x9 => MidiMessage::NoteOn { key: a, vel: b },
            0xc => MidiMessage::ProgramChange { program: a },
            _ => return None,
        })
    }
}

/// A system common or real-time message at the start of `raw`, after its delta time.
struct WireMessage {
    delta: u32,
    /// Bytes it takes in the track, delta included.
    len: usize,
    realtime: bool,
}

/// The delta-time at the start of `raw` and the number of bytes it takes (at most 4, as the standard says).
fn delta_time(raw: &[u8]) -> Option<(u32, usize)> {
    let mut delta = 0u32;
    for (i, &b) in raw.iter().enumerate().take(4) {
        delta = (delta << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some((delta, i + 1));
        }
    }
    None
}

/// Reads the event at the start of `raw` as a system common (`F1`–`F6`) or real-time (`F8`–`FE`) message, which a
/// file may not hold but files from the wild do. `F1` and `F3` carry one data byte, `F2` two, the rest none (the
/// undefined `F4`, `F5`, `F9`, `FD` are taken as one byte). A data byte missing at the end of the track is not
/// read past.
fn wire_message(raw: &[u8]) -> Option<WireMessage> {
    let (delta, at) = delta_time(raw)?;
    let status = *raw.get(at)?;
    let data = match status {
        0xf1 | 0xf3 => 1,
        0xf2 => 2,
        0xf4..=0xf6 | 0xf8..=0xfe => 0,
        _ => return None,
    };
    // Only data bytes (high bit clear) belong to it; a status byte where one should be starts the next event.
    let data = raw[at + 1..]
        .iter()
        .take(data)
        .take_while(|&&b| b < 0x80)
        .count();
    Some(WireMessage {
        delta,
        len: at + 1 + data,
        realtime: status >= 0xf8,
    })
}

/// Reads the event at the start of `raw` as a channel message (with `running` status if it has none) whose data
/// bytes have the high bit set, clamping them. `None` when the event is anything else: then it cannot be repaired.
fn repair_channel_event(raw: &[u8], running: Option<u8>) -> Option<Repaired> {
    let (delta, mut i) = delta_time(raw)?;
    let status = match *raw.get(i)? {
        b if b >= 0x80 => {
            i += 1;
            b
        }
        _ => running?,
    };
    if !(0x80..0xf0).contains(&status) {
        return None;
    }
    let n = if matches!(status >> 4, 0xc | 0xd) {
        1
    } else {
        2
    };
    let bytes = raw.get(i..i + n)?;
    let clamped = bytes.iter().filter(|&&b| b > 0x7f).count();
    if clamped == 0 {
        return None;
    }
    let mut data = [0u8; 2];
    for (d, &b) in data.iter_mut().zip(bytes) {
        *d = b.min(0x7f);
    }
    Some(Repaired {
        delta,
        status,
        data,
        len: i + n,
        clamped,
    })
}

/// Notes switched on and never off, per channel: tokens only use onsets, so nothing is lost, but it is worth a line.
fn hanging_notes(events: &[Event]) -> Option<String> {
    let mut open: HashMap<(u8, u8), usize> = HashMap::new();
    for e in events {
        match e.message {
            Message::NoteOn { key, .. } => *open.entry((e.channel, key)).or_default() += 1,
            Message::NoteOff { key } => {
                if let Some(n) = open.get_mut(&(e.channel, key)) {
                    *n = n.saturating_sub(1);
                }
            }
            Message::ProgramChange { .. } => {}
        }
    }
    let mut per_channel: std::collections::BTreeMap<u8, usize> = Default::default();
    for ((channel, _), n) in open {
        if n > 0 {
            *per_channel.entry(channel + 1).or_default() += n;
        }
    }
    let total: usize = per_channel.values().sum();
    (total > 0).then(|| {
        let channels: Vec<String> = per_channel.keys().map(|c| c.to_string()).collect();
        format!(
            "{total} notes never end (no note-off) on channel(s) {}; tokens use onsets, so they are kept",
            channels.join(", ")
        )
    })
}
