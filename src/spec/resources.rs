//! Slurm resources as the experiment file declares them (`[executor.slurm]`, and per stage kind under
//! `[executor.slurm.<kind>]`): checked with the rest of the file, and turned into `sbatch` options by the executor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stages::StageKind;

/// `sbatch` resources: under `[executor.slurm]` for every stage, under `[executor.slurm.<kind>]` per stage kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// e.g. `gpu:1`.
    pub gres: Option<String>,
    /// CPUs per task.
    pub cpus: Option<u32>,
    /// e.g. `16G`.
    pub mem: Option<String>,
    /// e.g. `04:00:00`.
    pub time: Option<String>,
    /// Further `sbatch` options, passed as given (e.g. `["--constraint=a100"]`).
    #[serde(default)]
    pub extra: Vec<String>,
}

impl Resources {
    /// `self`, with every setting `over` makes replacing it.
    fn overlaid(&self, over: &Resources) -> Resources {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Resources {
            partition: pick(&self.partition, &over.partition),
            account: pick(&self.account, &over.account),
            qos: pick(&self.qos, &over.qos),
            gres: pick(&self.gres, &over.gres),
            cpus: over.cpus.or(self.cpus),
            mem: pick(&self.mem, &over.mem),
            time: pick(&self.time, &over.time),
            extra: [self.extra.clone(), over.extra.clone()].concat(),
        }
    }

    /// Whether these resources give the job a GPU (`gres = "gpu…"`, or `--gpus…`/`--gres=gpu…` among `extra`).
    pub fn requests_gpu(&self) -> bool {
        let gpu_gres = |g: &str| g.split(',').any(|one| one.trim_start().starts_with("gpu"));
        self.gres.as_deref().is_some_and(gpu_gres)
            || self.extra.iter().any(|a| {
                a.starts_with("--gpus")
                    || a.starts_with("-G")
                    || a.strip_prefix("--gres=").is_some_and(gpu_gres)
            })
    }

    /// What `device = "auto"` means for a training run with these resources: `cuda` when they give it a GPU,
    /// else `cpu`. Decided by the submitter and carried by the job, so both sides fingerprint the same kind whatever
    /// each machine has.
    pub fn auto_device(&self) -> crate::nn::device::DeviceKind {
        use crate::nn::device::DeviceKind;
        if self.requests_gpu() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }
    }

    /// The `sbatch` options these resources stand for.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut opt = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{name}={v}"));
            }
        };
        opt("partition", &self.partition);
        opt("account", &self.account);
        opt("qos", &self.qos);
        opt("gres", &self.gres);
        opt("cpus-per-task", &self.cpus.map(|c| c.to_string()));
        opt("mem", &self.mem);
        opt("time", &self.time);
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// The experiment's `[executor.slurm]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmConfig {
    pub defaults: Resources,
    pub per_kind: BTreeMap<&'static str, Resources>,
}

impl SlurmConfig {
    pub fn resources(&self, kind: StageKind) -> Resources {
        match self.per_kind.get(kind.name()) {
            Some(r) => self.defaults.overlaid(r),
            None => self.defaults.clone(),
        }
    }
}
