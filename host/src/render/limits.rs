//! The plugin sandbox limits of a revision: the host sets ceilings, the repository's
//! `kitsync.yaml` may only lower them.
//!
//! `check`, `render`, `sync` and `serve` all call [`effective_limits`], so a platform file that
//! `serve` refuses is refused by review too, with the same message.

use crate::kit::Discovery;
use crate::plugin::Limits;
use std::time::Duration;

/// The largest memory ceiling a host may set, in MiB: beyond it one plugin instance per kit
/// and worker could exhaust the machine, so a typo (`--plugin-memory 65536`) is refused.
pub const MAX_MEMORY_MIB: u64 = 1024;
/// The longest deadline a host may set: a plugin call is a policy check, not a batch job.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// The host's plugin ceilings, checked against the hard maximums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    memory_mib: u64,
    deadline_ms: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        let limits = Limits::default();
        Ceilings {
            memory_mib: limits.memory_mib,
            deadline_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Ceilings {
    /// Ceilings of `memory_mib` MiB and `deadline_ms` ms per call.
    ///
    /// # Errors
    /// A zero value, or one above [`MAX_MEMORY_MIB`] / [`MAX_DEADLINE`], named with the bound.
    pub fn new(memory_mib: u64, deadline_ms: u64) -> Result<Ceilings, String> {
        let max_ms = u64::try_from(MAX_DEADLINE.as_millis()).unwrap_or(u64::MAX);
        if memory_mib == 0 || deadline_ms == 0 {
            return Err("plugin memory and deadline ceilings must be positive".into());
        }
        if memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "plugin memory ceiling {memory_mib} MiB is above the hard maximum of {MAX_MEMORY_MIB} MiB"
            ));
        }
        if deadline_ms > max_ms {
            return Err(format!(
                "plugin deadline ceiling {deadline_ms} ms is above the hard maximum of {max_ms} ms"
            ));
        }
        Ok(Ceilings {
            memory_mib,
            deadline_ms,
        })
    }

    /// The memory ceiling, MiB.
    pub fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    /// The deadline ceiling.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// The plugin limits for a revision: the platform file's, which may only lower the host's
/// ceilings (a value above one is an error for the whole revision, not a bigger sandbox).
/// A platform file that does not parse leaves the ceilings; its kits are refused for that.
///
/// # Errors
/// A platform limit above the host's ceiling, named with both values.
pub fn effective_limits(ceilings: &Ceilings, discovery: &Discovery) -> Result<Limits, String> {
    let platform = discovery.platform.as_ref().ok();
    let mib = platform
        .and_then(|p| p.plugin_memory_mib)
        .unwrap_or(ceilings.memory_mib);
    let ms = platform
        .and_then(|p| p.plugin_deadline_ms)
        .unwrap_or(ceilings.deadline_ms);
    if mib > ceilings.memory_mib {
        return Err(format!(
            "kitsync.yaml: pluginLimits.memoryMiB {mib} is above the host's ceiling of {}; the platform file may only lower limits",
            ceilings.memory_mib
        ));
    }
    if ms > ceilings.deadline_ms {
        return Err(format!(
            "kitsync.yaml: pluginLimits.deadlineMs {ms} is above the host's ceiling of {}; the platform file may only lower limits",
            ceilings.deadline_ms
        ));
    }
    if mib == 0 || ms == 0 {
        return Err("kitsync.yaml: pluginLimits.memoryMiB and deadlineMs must be positive".into());
    }
    Ok(Limits {
        memory_mib: mib,
        deadline: Duration::from_millis(ms),
        ..Limits::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_refuse_zero_and_values_above_the_hard_maximums() {
        assert!(Ceilings::new(64, 2000).is_ok());
        assert!(Ceilings::new(1024, 60_000).is_ok());
        for (mib, ms, want) in [
            (0, 2000, "positive"),
            (64, 0, "positive"),
            (1025, 2000, "hard maximum of 1024 MiB"),
            (64, 60_001, "hard maximum of 60000 ms"),
        ] {
            let err = Ceilings::new(mib, ms).expect_err("refused");
            assert!(err.contains(want), "{mib} {ms}: {err}");
        }
    }
}
