//! Process hardening for the service, applied at start: no core dump, and
//! not dumpable (no `ptrace` or `/proc/PID/mem` reading by other processes of
//! the same user). Unsealed keys and batches in flight live in this process's
//! memory; a crash must not write them to disk and a neighbour process must
//! not read them.
//!
//! At start, before any thread exists (what a thread restricts itself to,
//! the threads it starts inherit), the service also confines itself:
//! [`confine_files`] (Landlock) leaves it its own files only, and
//! [`filter_syscalls`] (seccomp) takes away the system calls it never makes
//! and an intruder would want (running programs, tracing, mounting, loading
//! kernel code). Each is best effort on kernels without it, and
//! `service_start` records what held.
//!
//! Memory is locked in RAM (`mlockall`, current and future pages, each as
//! it is first touched: `MCL_ONFAULT`) when no lock limit binds it
//! (`RLIMIT_MEMLOCK` unlimited, as `deploy/cstatns.service` sets it, or
//! `CAP_IPC_LOCK`): keys,
//! shares and batches then never reach swap. Under a finite limit it is
//! left unlocked, and said so (`memory_locked: false`): with `MCL_FUTURE`,
//! allocations would fail once the limit is reached, turning a busy hour
//! into an outage. The service's memory is bounded by design (request
//! budgets, connection caps), so locking it all is affordable; core dumps
//! are off altogether (`RLIMIT_CORE` 0, not dumpable), which covers what
//! `MADV_DONTDUMP` would exclude from one.

use serde::Serialize;

/// What could be applied (each step is attempted even if another fails).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Hardening {
    /// `RLIMIT_CORE` set to 0.
    pub no_core_dump: bool,
    /// `PR_SET_DUMPABLE` set to 0.
    pub not_dumpable: bool,
    /// All memory locked in RAM (`mlockall`), so that nothing is swapped.
    #[serde(default)]
    pub memory_locked: bool,
    /// Landlock enforced: the file system is the service's own files only.
    #[serde(default)]
    pub files_confined: bool,
    /// The seccomp filter is installed.
    #[serde(default)]
    pub syscalls_filtered: bool,
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
    let memory_locked = lock_memory();
    Hardening {
        no_core_dump,
        not_dumpable,
        memory_locked,
        files_confined: false,
        syscalls_filtered: false,
    }
}

/// Locks every page of the process, now and to come, as it is first
/// touched — when no lock limit applies only: `RLIMIT_MEMLOCK` unlimited,
/// or `CAP_IPC_LOCK`, which the limit does not bind (see the module's
/// documentation).
fn lock_memory() -> bool {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{getrlimit, Resource};
    use rustix::thread::{capabilities, CapabilitySet};
    let unbound = capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::IPC_LOCK));
    if getrlimit(Resource::Memlock).current.is_some() && !unbound {
        tracing::warn!(
            "memory not locked: RLIMIT_MEMLOCK is finite (LimitMEMLOCK=infinity in the unit locks it)"
        );
        return false;
    }
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT).is_ok()
}

/// The paths the service may use once confined: `read` (and list) only,
/// or `write` too (create, remove, rename files and directories beneath).
/// Directories, not files: a file replaced by a rename (a new CRL, an edited
/// configuration) is a new inode, which a rule on the old one would not
/// cover.
#[derive(Debug, Default, Clone)]
pub struct Paths {
    /// Read-only.
    pub read: Vec<std::path::PathBuf>,
    /// Read and write.
    pub write: Vec<std::path::PathBuf>,
}

/// Restricts the calling thread, and the threads it starts from now on, to
/// `paths` (Landlock). True when the kernel enforces it fully; false where
/// Landlock is missing or off (nothing is restricted then).
#[cfg(target_os = "linux")]
pub fn confine_files(paths: &Paths) -> bool {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    // Nothing may be run, not even from the directories it writes.
    let read = AccessFs::from_read(abi) & !AccessFs::Execute;
    let write = AccessFs::from_all(abi) & !AccessFs::Execute;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&paths.read, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(&paths.write, write)))
        .and_then(|r| r.restrict_self());
    match status {
        // Partly: an older kernel without the newest rights (truncate,
        // ioctl on devices); reading, writing and running are restricted.
        Ok(s) => matches!(
            s.ruleset,
            RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Landlock could not be applied");
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn confine_files(_paths: &Paths) -> bool {
    false
}

/// System calls the service never makes, refused with `EPERM` from now on
/// (to every thread): running another program, tracing or reading another
/// process, mounting, changing namespaces or root, loading kernel code or
/// BPF, keyrings, `userfaultfd`, `io_uring`, setting the clock, rebooting.
/// A deny list rather than an allow list: the calls that tokio, rustls and
/// the standard library make vary with their versions and the kernel, and
/// an allow list that misses one would stop the service in the middle of a
/// batch.
#[cfg(target_os = "linux")]
pub fn filter_syscalls() -> bool {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let mut denied = vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_io_uring_setup,
        libc::SYS_personality,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_adjtimex,
    ];
    #[cfg(target_arch = "x86_64")]
    denied.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        return false;
    };
    let rules = denied.into_iter().map(|n| (n, vec![])).collect();
    let program = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(BpfProgram::try_from);
    match program.map(|p| seccompiler::apply_filter_all_threads(&p)) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the seccomp filter could not be installed");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "the seccomp filter could not be built");
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn filter_syscalls() -> bool {
    false
}
