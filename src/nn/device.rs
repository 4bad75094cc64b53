//! Where a model trains: `auto`, `cpu`, `cuda`, `cuda:N` or `metal`, checked before anything runs, and which GPU
//! each training takes when several run at once.
//!
//! The GPU backends are cargo features (`cuda`, `metal`); asking for one in a build without it is a validation
//! error that says how to rebuild. `auto` and `cuda` (without an index) lease the least busy GPU, so parallel
//! trainings (`--jobs`) spread over the GPUs of a machine; `cuda:N` pins one.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use candle_core::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA if built in and present, then Metal, then the CPU.
    Auto,
    Cpu,
    /// A given GPU, or (`None`) the least busy one.
    Cuda(Option<usize>),
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(None)),
            "metal" => Ok(Self::Metal),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Self::Cuda(Some(n))),
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
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

/// `auto`, `cpu`, `cuda`, `cuda:N` or `metal`, as [`DeviceChoice::from_str`] reads it.
impl schemars::JsonSchema for DeviceChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceChoice".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(auto|cpu|cuda(:[0-9]+)?|metal)$",
            "description": "Where to train: `auto` (CUDA, else Metal, else CPU), `cpu`, `cuda`, `cuda:N` or `metal`."
        })
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

fn no_cuda(choice: DeviceChoice) -> Problem {
    Problem::new(format!(
        "`device = \"{choice}\"` needs CUDA, but this build has no CUDA support"
    ))
    .hint(
        "rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit), or set \
               `device = \"auto\"` or `\"cpu\"`",
    )
}

fn no_metal(choice: DeviceChoice) -> Problem {
    Problem::new(format!("`device = \"{choice}\"` needs Metal, but this build has no Metal support")).hint("rebuild with `cargo build --release --features metal` (macOS), or set `device = \"auto\"` or \
               `\"cpu\"`")
}

/// GPUs on this machine (probed once).
fn gpu_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        if cfg!(feature = "cuda") {
            (0..64).take_while(|&i| Device::new_cuda(i).is_ok()).count()
        } else {
            0
        }
    })
}

/// How many trainings hold each GPU right now.
static BUSY: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A training's hold on a GPU, released when dropped.
#[derive(Debug)]
pub struct Lease(Option<usize>);

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            let mut busy = BUSY.lock().expect("the lease table is never poisoned");
            if let Some(n) = busy.get_mut(i) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Takes the least busy of `count` GPUs (lowest index on ties) or the given one.
fn lease(count: usize, pinned: Option<usize>) -> Lease {
    let mut busy = BUSY.lock().expect("the lease table is never poisoned");
    if busy.len() < count {
        busy.resize(count, 0);
    }
    let i = pinned.unwrap_or_else(|| (0..count).min_by_key(|&i| (busy[i], i)).unwrap_or(0));
    if i < busy.len() {
        busy[i] += 1;
    }
    Lease(Some(i))
}

/// A kind of device: what fingerprints hold (results differ between kinds, not between two GPUs of one machine), and
/// what `device = "auto"` stands for in an experiment. That is decided once, when the experiment is loaded, and
/// carried in each training's parameters: never read from a process-wide setting, so the order of calls cannot
/// change a cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }

    /// `cpu`, `cuda` or `metal`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            "metal" => Some(Self::Metal),
            _ => None,
        }
    }

    /// What `auto` means on this machine: `PIPELINE_AUTO_DEVICE` (`cpu`, `cuda` or `metal`: what this machine should
    /// count as), else what is present (a CUDA GPU, then Metal, then the CPU). Probed once per process.
    pub fn here() -> Self {
        static PROBED: OnceLock<DeviceKind> = OnceLock::new();
        *PROBED.get_or_init(|| {
            if let Ok(value) = std::env::var("PIPELINE_AUTO_DEVICE") {
                match Self::from_name(&value) {
                    Some(k) => return k,
                    None => eprintln!(
                        "warning: PIPELINE_AUTO_DEVICE=`{value}` is not one of cpu, cuda, metal; ignored"
                    ),
                }
            }
            if gpu_count() > 0 {
                Self::Cuda
            } else if DeviceChoice::metal_present() {
                Self::Metal
            } else {
                Self::Cpu
            }
        })
    }
}

impl DeviceChoice {
    fn metal_present() -> bool {
        cfg!(feature = "metal") && Device::new_metal(0).is_ok()
    }

    /// Checks that this build can use the device, without opening it: validation runs on machines (a Slurm
    /// submitter, a laptop) that need not have the GPU the training will get.
    pub fn check(self) -> Result<(), Problem> {
        match self {
            Self::Cuda(_) if !cfg!(feature = "cuda") => Err(no_cuda(self)),
            Self::Metal if !cfg!(feature = "metal") => Err(no_metal(self)),
            _ => Ok(()),
        }
    }

    /// The device to use, its name (`cuda:1`), and the lease that keeps other trainings off it while it runs.
    pub fn open(self, auto: DeviceKind) -> Result<(Device, String, Lease), Problem> {
        match self {
            Self::Cpu => Ok((Device::Cpu, "cpu".into(), Lease(None))),
            Self::Cuda(pinned) => {
                if !cfg!(feature = "cuda") {
                    return Err(no_cuda(self));
                }
                let count = gpu_count();
                if count == 0 {
                    return Err(Problem::new(format!(
                        "`device = \"{self}\"`: no CUDA device found"
                    ))
                    .hint("check `nvidia-smi`, or set `device = \"auto\"` or `\"cpu\"`"));
                }
                let lease = lease(count, pinned);
                let n = lease.0.unwrap_or(0);
                Device::new_cuda(n)
                    .map(|d| (d, format!("cuda:{n}"), lease))
                    .map_err(|e| {
                        Problem::new(format!("cannot open CUDA device {n}: {e}"))
                            .hint("check `nvidia-smi`, or set `device = \"auto\"` or `\"cpu\"`")
                    })
            }
            Self::Metal => {
                if !cfg!(feature = "metal") {
                    return Err(no_metal(self));
                }
                Device::new_metal(0)
                    .map(|d| (d, "metal".into(), Lease(None)))
                    .map_err(|e| {
                        Problem::new(format!("cannot open the Metal device: {e}"))
                            .hint("set `device = \"auto\"` or `\"cpu\"`")
                    })
            }
            // Exactly the kind the fingerprint says: a GPU that fails to open is an error, never a quiet CPU run
            // cached under `cuda`.
            Self::Auto => {
                let chosen = match auto {
                    DeviceKind::Cuda => Self::Cuda(None),
                    DeviceKind::Metal => Self::Metal,
                    DeviceKind::Cpu => Self::Cpu,
                };
                chosen.open(auto).map_err(|e| Problem {
                    message: format!(
                        "`device = \"auto\"` means `{}` here, but: {}",
                        auto.name(),
                        e.message
                    ),
                    hint: e.hint,
                })
            }
        }
    }

    /// The kind of device this choice is, `auto` standing for `auto`: what goes into fingerprints.
    pub fn kind(self, auto: DeviceKind) -> DeviceKind {
        match self {
            Self::Cpu => DeviceKind::Cpu,
            Self::Cuda(_) => DeviceKind::Cuda,
            Self::Metal => DeviceKind::Metal,
            Self::Auto => auto,
        }
    }
}

/// Memory free on `device` now, in bytes: what the system could give this process for the CPU (Linux's
/// `MemAvailable`), the GPU's free memory for CUDA; `None` where unknown (Metal does not say).
pub fn free_memory(device: &Device) -> Option<u128> {
    match device {
        Device::Cpu => available_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(gpu) => {
            let (free, _total) = gpu.cuda_stream().context().mem_get_info().ok()?;
            Some(free as u128)
        }
        _ => None,
    }
}

/// Memory the system could give this process now (Linux's `MemAvailable`), in bytes; `None` where unknown.
fn available_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for name in ["auto", "cpu", "cuda", "cuda:3", "metal"] {
            assert_eq!(name.parse::<DeviceChoice>().unwrap().to_string(), name);
        }
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    /// Concurrent trainings spread over the GPUs and give them back when done.
    #[test]
    fn leases_take_the_least_busy_gpu() {
        let a = lease(3, None);
        let b = lease(3, None);
        let c = lease(3, None);
        assert_eq!((a.0, b.0, c.0), (Some(0), Some(1), Some(2)));
        drop(b);
        assert_eq!(lease(3, None).0, Some(1));
        assert_eq!(
            lease(3, Some(2)).0,
            Some(2),
            "a pinned GPU is taken even when busy"
        );
    }
}
