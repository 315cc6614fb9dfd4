//! Process hardening at start-up, before any key, codename or testimony is in memory:
//! no core files and not dumpable (so neither a crash nor another process of the same
//! user can copy the server's memory to disk or read it through ptrace or /proc), and
//! no running as root unless the operator says so.

/// Why the process may not go on.
#[derive(Debug)]
pub enum HardeningError {
    CoreDumps(rustix::io::Errno),
    Dumpable(rustix::io::Errno),
    Root,
}

impl std::fmt::Display for HardeningError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HardeningError::CoreDumps(e) => {
                write!(f, "cannot turn core dumps off (RLIMIT_CORE 0): {e}")
            }
            HardeningError::Dumpable(e) => {
                write!(f, "cannot make the process not dumpable (PR_SET_DUMPABLE 0): {e}")
            }
            HardeningError::Root => f.write_str(
                "amanat refuses to run as root. Run it as its own unprivileged user \
                 (deploy/amanat.service does), or, only on a throwaway test machine, set \
                 allow_root = true in the configuration or AMANAT_ALLOW_ROOT=1.",
            ),
        }
    }
}

impl std::error::Error for HardeningError {}

/// Makes the process not dumpable and its core file limit zero. Refuses to go on if the
/// kernel will not do it: a server that could leave testimony in a core file must not run.
pub fn harden() -> Result<(), HardeningError> {
    use rustix::process::{setrlimit, DumpableBehavior, Resource, Rlimit};
    setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) })
        .map_err(HardeningError::CoreDumps)?;
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(HardeningError::Dumpable)
}

/// Refuses root: a flaw in the HTTP stack would otherwise own the whole host, and
/// every file written would be root's. `allow_root` is for throwaway demos and test
/// machines only.
pub fn check_user(allow_root: bool) -> Result<(), HardeningError> {
    if rustix::process::geteuid().is_root() {
        if !allow_root {
            return Err(HardeningError::Root);
        }
        tracing::warn!("running as root because allow_root is set: never do this in production");
    }
    Ok(())
}
