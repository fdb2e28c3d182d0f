//! Process hardening for the service, applied at start: no core dump, and
//! not dumpable (no `ptrace` or `/proc/PID/mem` reading by other processes of
//! the same user). Unsealed keys and batches in flight live in this process's
//! memory; a crash must not write them to disk and a neighbour process must
//! not read them.
//!
//! Memory is not locked (`mlockall`): with `MCL_FUTURE`, allocations fail
//! once the lock limit is reached, which would turn a busy hour into an
//! outage. Run the host without swap instead (see SECURITY.md).

use serde::Serialize;

/// What could be applied (each step is attempted even if another fails).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Hardening {
    /// `RLIMIT_CORE` set to 0.
    pub no_core_dump: bool,
    /// `PR_SET_DUMPABLE` set to 0.
    pub not_dumpable: bool,
}

/// Applies the hardening and says what held.
pub fn harden() -> Hardening {
    use rustix::process::{set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit};
    let no_core_dump = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .is_ok();
    let not_dumpable = set_dumpable_behavior(DumpableBehavior::NotDumpable).is_ok();
    Hardening {
        no_core_dump,
        not_dumpable,
    }
}
