//! Where a model trains: `auto`, `cpu`, `cuda`, `cuda:N` or `metal`, checked before anything runs.
//!
//! The GPU backends are cargo features (`cuda`, `metal`); asking for one in a build without it is a validation
//! error that says how to rebuild.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA if built in and present, then Metal, then the CPU.
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "metal" => Ok(Self::Metal),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{other}`; expected \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"metal\""
                )),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Why a device cannot be used, and what to do.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub message: String,
    pub hint: String,
}

impl DeviceChoice {
    /// The device to use, or why there is none.
    pub fn open(self) -> Result<(Device, String), Unavailable> {
        match self {
            Self::Cpu => Ok((Device::Cpu, "cpu".into())),
            Self::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(Unavailable {
                        message: format!("`device = \"{self}\"` needs CUDA, but this build has no CUDA support"),
                        hint: "rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit), \
                               or set `device = \"auto\"` or `\"cpu\"`"
                            .into(),
                    });
                }
                Device::new_cuda(n)
                    .map(|d| (d, format!("cuda:{n}")))
                    .map_err(|e| Unavailable {
                        message: format!("cannot open CUDA device {n}: {e}"),
                        hint: "check `nvidia-smi`, or set `device = \"auto\"` or `\"cpu\"`".into(),
                    })
            }
            Self::Metal => {
                if !cfg!(feature = "metal") {
                    return Err(Unavailable {
                        message: format!(
                            "`device = \"{self}\"` needs Metal, but this build has no Metal support"
                        ),
                        hint:
                            "rebuild with `cargo build --release --features metal` (macOS), or set \
                               `device = \"auto\"` or `\"cpu\"`"
                                .into(),
                    });
                }
                Device::new_metal(0)
                    .map(|d| (d, "metal".into()))
                    .map_err(|e| Unavailable {
                        message: format!("cannot open the Metal device: {e}"),
                        hint: "set `device = \"auto\"` or `\"cpu\"`".into(),
                    })
            }
            Self::Auto => Self::Cuda(0)
                .open()
                .or_else(|_| Self::Metal.open())
                .or_else(|_| Self::Cpu.open()),
        }
    }

    /// The name of the device this choice resolves to on this machine (`cpu`, `cuda:0`, `metal`).
    pub fn resolved_name(self) -> String {
        match self {
            Self::Auto => self
                .open()
                .map(|(_, name)| name)
                .unwrap_or_else(|_| "cpu".into()),
            other => other.to_string(),
        }
    }
}
