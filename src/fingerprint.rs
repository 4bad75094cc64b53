//! Stage fingerprints: what determines a stage's output, hashed with blake3, and why two fingerprints differ.
//!
//! Like cargo's, a fingerprint is a struct, not just a hash: the full struct is stored beside each result so that a
//! miss can be explained field by field ("parameter `seq_len` changed (100 → 64)"). Only content goes into the hash:
//! never modification times or absolute paths, so moving the project keeps its cache.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Change this when the meaning of the encoding below changes; it invalidates every entry.
const SCHEMA: u32 = 1;

/// Everything a stage's output depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub kind: String,
    /// The stage kind's implementation version.
    pub version: u32,
    /// Checked parameters with defaults filled in; key order is the struct's, never the file's.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The content hash of each input's output, in `inputs` order.
    pub inputs: Vec<InputHash>,
    /// Files read from outside the cache (a `midi_source`'s MIDI files): relative path → blake3 of the bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Hash>,
    /// How to show `files` to the user (the source's `path`); not hashed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub files_root: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputHash {
    /// The upstream stage's name; for explanations only, not hashed (renaming a stage keeps its results).
    pub stage: String,
    pub hash: Hash,
}

/// A blake3 hash, shown and stored as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hash(#[serde(with = "hex_hash")] pub blake3::Hash);

impl Hash {
    pub fn of(bytes: &[u8]) -> Self {
        Hash(blake3::hash(bytes))
    }

    pub fn hex(&self) -> String {
        self.0.to_hex().to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &blake3::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blake3::Hash, D::Error> {
        let s = String::deserialize(d)?;
        blake3::Hash::from_hex(s).map_err(serde::de::Error::custom)
    }
}

/// The canonical form that is hashed: the fields that determine the output, in a fixed order.
#[derive(Serialize)]
struct Key<'a> {
    schema: u32,
    kind: &'a str,
    version: u32,
    params: &'a BTreeMap<String, serde_json::Value>,
    inputs: Vec<&'a Hash>,
    files: &'a BTreeMap<String, Hash>,
}

impl Fingerprint {
    /// The cache key.
    pub fn hash(&self) -> Hash {
        let key = Key {
            schema: SCHEMA,
            kind: &self.kind,
            version: self.version,
            params: &self.params,
            inputs: self.inputs.iter().map(|i| &i.hash).collect(),
            files: &self.files,
        };
        let mut hasher = blake3::Hasher::new();
        serde_json::to_writer(&mut hasher, &key).expect("hashing never fails to write");
        Hash(hasher.finalize())
    }

    /// Like [`Fingerprint::hash`], and over `files_root` too: identifies a stage's *configuration* when its inputs
    /// are stand-ins (merging the stages of sweep points, where `files_root` may carry an error).
    pub fn hash_with_root(&self) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.hash().0.as_bytes());
        hasher.update(self.files_root.as_bytes());
        Hash(hasher.finalize())
    }

    /// Why `self` (the new fingerprint) differs from `old` (the one the stage last ran with). Empty when the two
    /// hash the same.
    pub fn diff(&self, old: &Fingerprint) -> Vec<Reason> {
        let mut reasons = Vec::new();
        if self.kind != old.kind {
            reasons.push(Reason::KindChanged {
                old: old.kind.clone(),
                new: self.kind.clone(),
            });
            return reasons;
        }
        if self.version != old.version {
            reasons.push(Reason::VersionChanged {
                kind: self.kind.clone(),
                old: old.version,
                new: self.version,
            });
        }
        let keys: std::collections::BTreeSet<&String> =
            self.params.keys().chain(old.params.keys()).collect();
        for key in keys {
            let (o, n) = (old.params.get(key), self.params.get(key));
            if o != n {
                reasons.push(Reason::ParamChanged {
                    key: key.clone(),
                    old: o.map(show_value),
                    new: n.map(show_value),
                });
            }
        }
        if self.inputs.len() != old.inputs.len() {
            reasons.push(Reason::InputsRewired);
        } else {
            for (n, o) in self.inputs.iter().zip(&old.inputs) {
                if n.hash != o.hash {
                    reasons.push(Reason::InputChanged {
                        stage: n.stage.clone(),
                    });
                }
            }
        }
        let show = |rel: &str| crate::paths::display_path(&self.files_root, rel);
        for (path, hash) in &self.files {
            match old.files.get(path) {
                None => reasons.push(Reason::FileAdded { path: show(path) }),
                Some(h) if h != hash => reasons.push(Reason::FileChanged { path: show(path) }),
                _ => {}
            }
        }
        for path in old.files.keys() {
            if !self.files.contains_key(path) {
                reasons.push(Reason::FileRemoved { path: show(path) });
            }
        }
        reasons
    }
}

fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// Why a stage runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// No result for this stage was ever recorded.
    NeverRan,
    /// `--force` named this stage.
    Forced,
    /// `--force` named a stage upstream.
    UpstreamForced {
        stage: String,
    },
    KindChanged {
        old: String,
        new: String,
    },
    VersionChanged {
        kind: String,
        old: u32,
        new: u32,
    },
    ParamChanged {
        key: String,
        old: Option<String>,
        new: Option<String>,
    },
    InputChanged {
        stage: String,
    },
    InputsRewired,
    FileAdded {
        path: String,
    },
    FileChanged {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    /// The fingerprint is the same as last time but its result is gone from the cache (or damaged).
    EntryMissing,
    /// The result matches an earlier run but with other settings, e.g. after switching back a parameter value.
    Unrecorded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRan => write!(f, "never ran"),
            Reason::Forced => write!(f, "forced with `--force`"),
            Reason::UpstreamForced { stage } => write!(f, "input `{stage}` was forced"),
            Reason::KindChanged { old, new } => write!(f, "kind changed (`{old}` → `{new}`)"),
            Reason::VersionChanged { kind, old, new } => {
                write!(f, "the `{kind}` implementation changed (v{old} → v{new})")
            }
            Reason::ParamChanged { key, old, new } => match (old, new) {
                (Some(o), Some(n)) => write!(f, "parameter `{key}` changed ({o} → {n})"),
                (None, Some(n)) => write!(f, "parameter `{key}` added ({n})"),
                (Some(o), None) => write!(f, "parameter `{key}` removed (was {o})"),
                (None, None) => write!(f, "parameter `{key}` changed"),
            },
            Reason::InputChanged { stage } => write!(f, "input `{stage}` changed"),
            Reason::InputsRewired => write!(f, "its inputs changed"),
            Reason::FileAdded { path } => write!(f, "file `{path}` added"),
            Reason::FileChanged { path } => write!(f, "file `{path}` changed"),
            Reason::FileRemoved { path } => write!(f, "file `{path}` removed"),
            Reason::EntryMissing => write!(f, "its cached result is missing or damaged"),
            Reason::Unrecorded => write!(f, "no cached result for these settings"),
        }
    }
}

/// Joins reasons for one line: the first few, then a count.
pub fn explain(reasons: &[Reason]) -> String {
    const SHOWN: usize = 3;
    let mut parts: Vec<String> = reasons
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect();
    if reasons.len() > SHOWN {
        parts.push(format!("and {} more", reasons.len() - SHOWN));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(params: &[(&str, serde_json::Value)]) -> Fingerprint {
        Fingerprint {
            kind: "window".into(),
            version: 1,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            inputs: vec![InputHash {
                stage: "vocab".into(),
                hash: Hash::of(b"ids"),
            }],
            files: BTreeMap::new(),
            files_root: String::new(),
        }
    }

    /// The hash depends on values, never on the order parameters were given in.
    #[test]
    fn parameter_order_does_not_matter() {
        let a = fp(&[("seq_len", 100.into()), ("seed", 42.into())]);
        let b = fp(&[("seed", 42.into()), ("seq_len", 100.into())]);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(
            a.hash(),
            fp(&[("seq_len", 64.into()), ("seed", 42.into())]).hash()
        );
    }

    #[test]
    fn renaming_an_input_stage_keeps_the_hash_but_a_new_input_hash_does_not() {
        let a = fp(&[]);
        let mut renamed = a.clone();
        renamed.inputs[0].stage = "ids".into();
        assert_eq!(a.hash(), renamed.hash());
        let mut changed = a.clone();
        changed.inputs[0].hash = Hash::of(b"other");
        assert_ne!(a.hash(), changed.hash());
        assert_eq!(
            changed.diff(&a),
            vec![Reason::InputChanged {
                stage: "vocab".into()
            }]
        );
    }

    #[test]
    fn diff_names_the_parameter_and_both_values() {
        let old = fp(&[("seq_len", 100.into())]);
        let new = fp(&[("seq_len", 64.into())]);
        let reasons = new.diff(&old);
        assert_eq!(explain(&reasons), "parameter `seq_len` changed (100 → 64)");
    }

    #[test]
    fn diff_names_changed_files_under_their_source_path() {
        let mut old = fp(&[]);
        old.files_root = "data/openmsx".into();
        old.files.insert("a.mid".into(), Hash::of(b"a"));
        old.files.insert("b.mid".into(), Hash::of(b"b"));
        let mut new = old.clone();
        new.files.insert("a.mid".into(), Hash::of(b"A"));
        new.files.remove("b.mid");
        new.files.insert("c.mid".into(), Hash::of(b"c"));
        assert_eq!(
            explain(&new.diff(&old)),
            "file `data/openmsx/a.mid` changed; file `data/openmsx/c.mid` added; file `data/openmsx/b.mid` removed"
        );
    }
}
